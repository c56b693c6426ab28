import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dockerOk, inOverlayNs, pluginPid, readLab, waitFor, type LabHost } from "./support/lab.js";
import { createNetworkOn, networkVni, ping, removeContainers, removeNetworkOn, startContainer } from "./support/overlay.js";

const lab = readLab();
const [h1, h2, h3] = [lab.hosts[0]!, lab.hosts[1]!, lab.hosts[2]!];
const NET = "ovl-peers";
const SUBNET = "10.33.0.0/24";

async function neighbors(host: LabHost, vni: number): Promise<{ dst: string; lladdr?: string; state: string[] }[]> {
  const r = await inOverlayNs(host, vni, ["ip", "-j", "neigh", "show", "dev", "vxlan0"]);
  if (r.code !== 0) throw new Error(`ip neigh on ${host.name}: ${r.stderr}`);
  return JSON.parse(r.stdout || "[]") as { dst: string; lladdr?: string; state: string[] }[];
}

/**
 * The VXLAN device's own FDB (MAC → remote VTEP). `bridge fdb show dev vxlan0`
 * also lists what br0 learned on its vxlan0 port (no dst, ages out); those
 * are not tunnel entries.
 */
async function fdb(host: LabHost, vni: number): Promise<{ mac: string; dst?: string; state?: string }[]> {
  const r = await inOverlayNs(host, vni, ["bridge", "-j", "fdb", "show", "dev", "vxlan0"]);
  if (r.code !== 0) throw new Error(`bridge fdb on ${host.name}: ${r.stderr}`);
  return (JSON.parse(r.stdout || "[]") as { mac: string; dst?: string; master?: string }[]).filter((e) => e.master === undefined);
}

describe("peer programming (ARP/FDB)", () => {
  let vni = 0;
  const ips: Record<string, string> = {};
  const macs: Record<string, string> = {};

  beforeAll(async () => {
    await createNetworkOn([h1, h2, h3], NET, SUBNET);
    for (const [h, name] of [
      [h1, "peer-1"],
      [h2, "peer-2"],
      [h3, "peer-3"],
    ] as const) {
      ips[name] = await startContainer(lab, h, name, NET);
      macs[name] = (await dockerOk(h, ["exec", name, "cat", "/sys/class/net/eth0/address"])).toLowerCase();
    }
    vni = await networkVni(h1, SUBNET);
  });

  afterAll(async () => {
    await removeContainers(h1, ["peer-1"]);
    await removeContainers(h2, ["peer-2"]);
    await removeContainers(h3, ["peer-3"]);
    await removeNetworkOn([h1, h2, h3], NET);
  });

  it("programs permanent neighbor and FDB entries for remote endpoints only, with no flood entry", async () => {
    const n = await neighbors(h1, vni);
    const f = await fdb(h1, vni);
    for (const name of ["peer-2", "peer-3"]) {
      expect(n.find((e) => e.dst === ips[name])?.lladdr).toBe(macs[name]);
      expect(n.find((e) => e.dst === ips[name])?.state).toContain("PERMANENT");
      const entry = f.find((e) => e.mac === macs[name]);
      expect(entry?.dst).toBe(name === "peer-2" ? h2.addr : h3.addr);
    }
    expect(n.find((e) => e.dst === ips["peer-1"])).toBeUndefined();
    expect(f.find((e) => e.mac === "00:00:00:00:00:00")).toBeUndefined();
    expect(await ping(h1, "peer-1", ips["peer-3"]!)).toBe(true);
  });

  it("removes a stopped container's entries from every other host within 1 s", async () => {
    const ip = ips["peer-3"]!;
    const mac = macs["peer-3"]!;
    await dockerOk(h3, ["stop", "-t", "0", "peer-3"]);
    const stopped = Date.now();
    const gone = async (h: LabHost): Promise<number> => {
      await waitFor(
        `${h.name} to drop ${ip}`,
        async () => ((await neighbors(h, vni)).some((e) => e.dst === ip) || (await fdb(h, vni)).some((e) => e.mac === mac) ? undefined : true),
        5_000,
        10,
      );
      return Date.now() - stopped;
    };
    const elapsed = await Promise.all([gone(h1), gone(h2)]);
    for (const ms of elapsed) expect(ms, `entries dropped ${ms} ms after docker stop returned`).toBeLessThan(1_000);
  });

  it("restores a neighbor and an FDB entry deleted behind its back (reconcile loop)", async () => {
    const ip = ips["peer-2"]!;
    const mac = macs["peer-2"]!;
    expect((await inOverlayNs(h1, vni, ["ip", "neigh", "del", ip, "dev", "vxlan0"])).code).toBe(0);
    expect((await inOverlayNs(h1, vni, ["bridge", "fdb", "del", mac, "dev", "vxlan0", "dst", h2.addr])).code).toBe(0);
    // (No check that they are gone: the loop runs every 2 s on the lab and may already have put them back.)
    await waitFor(
      "the reconcile loop to restore the entries",
      async () =>
        (await neighbors(h1, vni)).some((e) => e.dst === ip && e.lladdr === mac) && (await fdb(h1, vni)).some((e) => e.mac === mac) ? true : undefined,
      15_000,
      200,
    );
    expect(await ping(h1, "peer-1", ip)).toBe(true);
  });

  it("removes a stale entry added behind its back", async () => {
    const bogus = "02:42:0a:21:00:fe";
    expect((await inOverlayNs(h1, vni, ["bridge", "fdb", "add", bogus, "dev", "vxlan0", "dst", h3.addr, "self", "permanent"])).code).toBe(0);
    await waitFor(
      "the reconcile loop to drop the stale entry",
      async () => ((await fdb(h1, vni)).some((e) => e.mac === bogus) ? undefined : true),
      15_000,
      200,
    );
  });

  // A host that dies says nothing: its plugin stops renewing its Consul session and the host key
  // lapses (TTL 15 s; Consul invalidates between 1× and 2× TTL). SIGSTOP plays the dead host, the
  // dataplane and the other hosts keep running; SIGCONT brings it back with a new session.
  it("drops the endpoints of a host whose plugin falls silent, and programs them again when it is back", async () => {
    const ip = ips["peer-2"]!;
    const mac = macs["peer-2"]!;
    const programmed = async (): Promise<boolean> =>
      (await neighbors(h1, vni)).some((e) => e.dst === ip && e.lladdr === mac) && (await fdb(h1, vni)).some((e) => e.mac === mac && e.dst === h2.addr);
    expect(await programmed()).toBe(true);
    const pid = await pluginPid(h2);
    expect(pid).toBeDefined();
    const silent = Date.now();
    process.kill(pid!, "SIGSTOP");
    try {
      await waitFor("h1 to drop the silent host's endpoint", async () => ((await programmed()) ? undefined : true), 60_000, 500);
      expect(Date.now() - silent).toBeGreaterThanOrEqual(14_000); // not before the TTL: silence alone is not death
    } finally {
      process.kill(pid!, "SIGCONT");
    }
    await waitFor("h1 to program the returning host's endpoint", async () => ((await programmed()) ? true : undefined), 30_000, 500);
    expect(await ping(h1, "peer-1", ip)).toBe(true);
  });
});
