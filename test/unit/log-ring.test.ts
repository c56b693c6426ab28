/** The plugin's recent log lines for support bundles: bounded, and only as the logger wrote them (secrets scrubbed). */
import { describe, expect, it } from "vitest";
import { createLogger } from "../../lib/log.js";
import { LogRing } from "../../lib/log-ring.js";

describe("LogRing", () => {
  it("keeps the last maxLines lines, oldest first, without their newlines", () => {
    const ring = new LogRing({ maxLines: 3, maxBytes: 1024 });
    for (let i = 1; i <= 10_000; i++) ring.push(`line ${i}\n`);
    expect(ring.snapshot()).toEqual(["line 9998", "line 9999", "line 10000"]);
    expect(ring.size).toBe("line 9998line 9999line 10000".length);
  });

  it("keeps no more than maxBytes: old lines go first, and one line over the cap is cut to it", () => {
    const ring = new LogRing({ maxLines: 100, maxBytes: 100 });
    for (let i = 0; i < 10; i++) ring.push(`${String(i).repeat(30)}\n`);
    expect(ring.snapshot()).toEqual(["7".repeat(30), "8".repeat(30), "9".repeat(30)]);
    ring.push(`${"é".repeat(80)}\n`); // 160 bytes
    const [only, ...rest] = ring.snapshot();
    expect(rest).toEqual([]);
    expect(Buffer.byteLength(only!)).toBeLessThanOrEqual(100);
    expect(only).toMatch(/^é+…\[cut\]$/);
    expect(ring.size).toBeLessThanOrEqual(100);
  });

  it("holds what the logger writes, after its scrub: the token never reaches the ring", () => {
    const ring = new LogRing({ maxLines: 10, maxBytes: 10_000 });
    const written: string[] = [];
    const token = "5d2c0f1e-acl-token-do-not-leak";
    const log = createLogger("info", { secrets: [token], ring, destination: { write: (l: string) => void written.push(l) } });
    log.info({ header: `X-Consul-Token: ${token}` }, "talking to Consul");
    log.child({ component: "store" }).warn({ token }, "a field named token");
    log.debug("not at this level");
    const lines = ring.snapshot();
    expect(lines).toHaveLength(2);
    expect(lines.map((l) => `${l}\n`)).toEqual(written);
    expect(lines.join("\n")).not.toContain(token);
    expect(JSON.parse(lines[0]!)).toMatchObject({ msg: "talking to Consul", header: "X-Consul-Token: [redacted]" });
    expect(JSON.parse(lines[1]!)).toMatchObject({ component: "store", token: "[redacted]" });
  });
});
