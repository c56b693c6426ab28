import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { eventually } from "../support/eventually.js";
import { postPlugin } from "../support/plugin-client.js";

const MAIN = new URL("../../dist/plugin/main.js", import.meta.url).pathname;

// The same program as the managed plugin, run the way a host service (the
// systemd unit in scripts/) runs it.
describe("plugin as a host service", () => {
  it("serves its socket, logs JSON lines, and removes the socket on SIGTERM", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tso-svc-"));
    const sock = join(dir, "plugins", "tsoverlay.sock");
    const child = spawn(process.execPath, [MAIN], {
      env: { PATH: process.env.PATH, TSOVERLAY_SOCKETS: sock, TSOVERLAY_STATE_DIR: join(dir, "state"), TSOVERLAY_RUN_DIR: join(dir, "run"), LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    try {
      await eventually("the plugin's socket", () => existsSync(sock), { timeoutMs: 10_000, everyMs: 50 });
      const r = await postPlugin(sock, "/Plugin.Activate");
      expect(r.body).toEqual({ Implements: ["NetworkDriver", "IpamDriver"] });
      const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      expect(existsSync(sock)).toBe(false);
      const logLines = out.split("\n").filter((l) => l.length > 0);
      expect(logLines.length).toBeGreaterThan(0);
      for (const l of logLines) expect(() => void JSON.parse(l), l).not.toThrow();
      expect(logLines.map((l) => JSON.parse(l) as { msg: string }).map((l) => l.msg)).toContain("serving plugin protocol");
    } finally {
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
