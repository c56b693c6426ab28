/**
 * One host's Consul token cannot rewrite another host's records (issue 17).
 * The lab gives each plugin the token of scripts/consul-policy.hcl: it may
 * write only under `by-host/<its id>/` among the per-host records. This test
 * uses h2's own token file (the one its plugin reads through the consul-tls
 * mount) against Consul itself: writes to h1's liveness and endpoint keys are
 * refused with Consul's 403 and h1's liveness record holds nothing of them after; the same
 * token may read them, and may write under h2's own prefix (the controls that
 * show the refusal is the policy's, not a token Consul does not know).
 *
 * And one tenant cannot exhaust a published UDP port: 45,000 datagrams from
 * distinct source ports to a port published on h1 (through the plugin's
 * proxy, loopback to loopback in h1's namespace), then a new client from
 * another address and one from the flood's own are still forwarded, and the
 * plugin's RSS and open files stay bounded by the proxy's per-source limit.
 */
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { keys } from "../../driver/cluster/keys.js";
import { eventually } from "../support/eventually.js";
import { collect, consulHttp, docker, dockerOk, pluginPid, readLab, run } from "./support/lab.js";
import { createNetworkOn, removeContainers, removeNetworkOn } from "./support/overlay.js";

const lab = readLab();
const [h1, h2] = [lab.hosts[0]!, lab.hosts[1]!];
const h2Token = join(h2.consulDir, "token");
const MARK = "e2e-acl-forged";
const probeKey = `${keys.hostPrefix(h2.addr)}answers/e2e-acl-probe`;

const NET = "sc-net";
const PORT = 18093;

afterAll(async () => {
  await consulHttp(h1, "DELETE", `/v1/kv/${probeKey}`);
  await removeContainers(h1, ["sc-sink"]);
  await removeNetworkOn(lab.hosts, NET);
});

const MiB = 1024 * 1024;
function usage(pid: number): { rss: number; fds: number } {
  const rssKb = Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
  return { rss: rssKb * 1024, fds: readdirSync(`/proc/${pid}/fd`).length };
}

/** Sends `payload` from `from` in h1's namespace to the published port until the sink has printed it. */
async function forwarded(from: string, payload: string): Promise<boolean> {
  return eventually(
    `"${payload}" from ${from} to reach the sink`,
    async () => {
      await run("nsenter", [`--net=/run/netns/${h1.netns}`, "socat", "-u", "-", `UDP:127.0.0.1:${PORT},bind=${from}`], { input: `${payload}\n` });
      const logs = await docker(h1, ["logs", "sc-sink"]);
      return logs.stdout.includes(payload);
    },
    { timeoutMs: 20_000, everyMs: 500 },
  );
}

describe("a published UDP port under a flood of sources", () => {
  it("45,000 datagrams from distinct source ports: a new client is still forwarded, from another address and from the flood's own; the plugin's RSS and files stay bounded", async () => {
    await createNetworkOn([h1], NET, "10.172.0.0/24");
    await dockerOk(h1, ["run", "-d", "--name", "sc-sink", "--network", NET, "-p", `${PORT}:7000/udp`, lab.testImage, "socat", "-u", "UDP-RECV:7000", "STDOUT"]);
    expect(await forwarded("127.0.0.2", "before-the-flood")).toBe(true);
    const pid = await pluginPid(h1);
    if (pid === undefined) throw new Error("no plugin process for h1");
    const before = usage(pid);

    const fixture = new URL("./fixtures/udp-sources.mjs", import.meta.url).pathname;
    const flooder = spawn("nsenter", [`--net=/run/netns/${h1.netns}`, process.execPath, fixture, "127.0.0.1", String(PORT), "45000"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const flood = await collect(flooder, 300_000);
    expect(flood.code, flood.stderr).toBe(0);
    const sent = JSON.parse(flood.stdout) as { sent: number; firstPort: number; lastPort: number };
    const during = usage(pid);

    expect(await forwarded("127.0.0.3", "a-new-client")).toBe(true);
    expect(await forwarded("127.0.0.1", "one-of-the-flood")).toBe(true);
    const after = usage(pid);
    console.log(
      `udp flood on the lab: ${sent.sent} datagrams from 127.0.0.1 ports ${sent.firstPort}-${sent.lastPort}; plugin rss ` +
        `${Math.round(before.rss / MiB)} → ${Math.round(during.rss / MiB)} → ${Math.round(after.rss / MiB)} MiB, open files ${before.fds} → ${during.fds} → ${after.fds}`,
    );
    expect(sent.sent).toBe(45_000);
    // one source holds at most 4,096 flows, each one socket; without the limits 16,384 stayed open for minutes
    expect(Math.max(during.fds, after.fds) - before.fds).toBeLessThanOrEqual(4096 + 64);
    expect(Math.max(during.rss, after.rss) - before.rss).toBeLessThan(160 * MiB);
  }, 420_000);
});

describe("per-host ACL tokens on the lab's Consul", () => {
  it("h2's token cannot write h1's liveness or endpoint keys (Consul answers 403) and h1's liveness record holds nothing of it; it may read them and write its own prefix", async () => {
    const alive = keys.alive(h1.addr);
    const forgedEndpoint = `${keys.hostEndpoints(h1.addr)}10.171.0.0-24/e2e-forged`;
    const before = await consulHttp(h1, "GET", `/v1/kv/${alive}?raw`);
    expect(before.code, `h1's liveness record: ${before.stdout} ${before.stderr}`).toBe(0);

    // The controls: the token is known to Consul and may read the shared tree and write its own prefix.
    const read = await consulHttp(h2, "GET", `/v1/kv/${alive}?raw`, undefined, { tokenFile: h2Token });
    expect(read.code, `${read.stdout} ${read.stderr}`).toBe(0);
    expect(read.stdout.length).toBeGreaterThan(0);
    const own = await consulHttp(h2, "PUT", `/v1/kv/${probeKey}`, "{}", { tokenFile: h2Token });
    expect(own.code, `${own.stdout} ${own.stderr}`).toBe(0);

    for (const key of [alive, forgedEndpoint]) {
      const w = await consulHttp(h2, "PUT", `/v1/kv/${key}`, JSON.stringify({ hostId: h1.addr, vtep: h2.addr, forgedBy: MARK }), { tokenFile: h2Token });
      expect(w.code, `writing ${key} with h2's token`).not.toBe(0);
      expect(w.stdout).toMatch(/Permission denied/);
    }
    const del = await consulHttp(h2, "DELETE", `/v1/kv/${alive}`, undefined, { tokenFile: h2Token });
    expect(del.code, `deleting ${alive} with h2's token`).not.toBe(0);
    expect(del.stdout).toMatch(/Permission denied/);

    const after = await consulHttp(h1, "GET", `/v1/kv/${alive}?raw`);
    expect(after.code).toBe(0);
    expect(after.stdout).not.toContain(MARK);
    const forged = await consulHttp(h1, "GET", `/v1/kv/${forgedEndpoint}`);
    expect(forged.code, "the forged endpoint key must not exist").not.toBe(0);
  });
});
