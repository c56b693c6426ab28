/**
 * Records are checked, not trusted (issue 17): whoever can write the cluster
 * store's keys is not believed on their word. Forged endpoint records — an
 * address outside the network, a VTEP that is not its host's, a record in one
 * host's name under another host's prefix — are programmed on no host and
 * answered by no name service, while a valid record written the same way is
 * (the control: the test does see a programmed peer). They are written under
 * the prefix of a stand-in host that runs no plugin, so they stay while the
 * tables are read (a real host removes from its prefix, within a collector
 * period, whatever it did not write: that is checked too). A forged catalog entry
 * for a macvlan network on eth0 creates nothing on any host, checked after a
 * valid catalog change made later has reached every host.
 */
import { afterAll, describe, expect, it } from "vitest";
import { keys } from "../../driver/cluster/keys.js";
import { macFromIpv4 } from "../../lib/net.js";
import { eventually, quiet } from "../support/eventually.js";
import { clusterStatus, forgotten, tables } from "./support/cluster.js";
import { consulHttp, consulKeys, dockerOk, readLab, type LabHost } from "./support/lab.js";
import { createNetworkOn, networkVni, removeContainers, removeNetworkOn, resolve, startContainer } from "./support/overlay.js";

const lab = readLab();
const [h1, h2, h3] = [lab.hosts[0]!, lab.hosts[1]!, lab.hosts[2]!];
const hosts = [h1, h2, h3];
const NET = "fr-net";
const SUBNET = "10.170.0.0/24";
const written: string[] = [];

async function put(key: string, value: unknown): Promise<void> {
  written.push(key);
  const r = await consulHttp(h1, "PUT", `/v1/kv/${key}`, JSON.stringify(value));
  if (r.code !== 0) throw new Error(`writing ${key}: ${r.stderr}`);
}

function endpoint(endpointId: string, hostId: string, ip: string, over: Record<string, unknown> = {}) {
  return { endpointId, networkId: "forged", hostId, vtep: hostId, ip, mac: macFromIpv4(ip), ...over };
}

/** The neighbor entries (ip mac) of every host's tables for the network. */
async function neighborsOf(h: LabHost, vni: number): Promise<string[]> {
  return (await tables(h, vni)).neighbors;
}

afterAll(async () => {
  // Newest first: the stand-in host's endpoints before its liveness key.
  for (const key of written.splice(0).reverse()) await consulHttp(h1, "DELETE", `/v1/kv/${key}`);
  await removeContainers(h1, ["fr-a"]);
  await removeContainers(h2, ["fr-b"]);
  await removeContainers(h3, ["fr-c"]);
  await removeNetworkOn(hosts, NET);
  await removeNetworkOn(hosts, "fr-control");
});

describe("forged endpoint records", () => {
  it("are programmed on no host and answered by no name service; a valid record written the same way is", async () => {
    await createNetworkOn(hosts, NET, SUBNET);
    const vni = await networkVni(h1, SUBNET);
    const ips = [await startContainer(lab, h1, "fr-a", NET), await startContainer(lab, h2, "fr-b", NET), await startContainer(lab, h3, "fr-c", NET)];
    for (const [i, h] of hosts.entries()) {
      const others = ips.filter((_, j) => j !== i);
      await eventually(
        `${h.name} to program the other hosts' containers`,
        async () => {
          const n = await neighborsOf(h, vni);
          return others.every((ip) => n.some((l) => l.startsWith(`${ip} `)));
        },
        { timeoutMs: 15_000, everyMs: 200 },
      );
    }

    // A stand-in host that runs no plugin (as in overlay-vtep.test.ts), alive by its own key: what is
    // written under its prefix stays (no plugin tidies it), so the tables are read while it is there.
    const F = lab.outside.addr;
    await put(keys.alive(F), { hostId: F, vtep: F, hostname: "stand-in", startedAt: new Date().toISOString() });
    const forged = [
      // In h1's name under F's prefix.
      { key: keys.hostEndpoint(F, SUBNET, "fr-name-1"), rec: endpoint("fr-name-1", h1.addr, "10.170.0.240", { names: ["fr-forged-1"] }) },
      // F's own, but with a VTEP that is not F's (h3's).
      { key: keys.hostEndpoint(F, SUBNET, "fr-vtep"), rec: endpoint("fr-vtep", F, "10.170.0.242", { vtep: h3.addr, names: ["fr-forged-3"] }) },
      // An address outside the network: the metadata service, under a name from outside.
      { key: keys.hostEndpoint(F, SUBNET, "fr-outside"), rec: endpoint("fr-outside", F, "169.254.169.254", { names: ["fr-forged-4", "example.com"] }) },
    ];
    // And the other way round: in F's name under h2's prefix (h2 itself removes it soon: nothing of h2's backs it).
    const underH2 = { key: keys.hostEndpoint(h2.addr, SUBNET, "fr-name-2"), rec: endpoint("fr-name-2", F, "10.170.0.241", { names: ["fr-forged-2"] }) };
    for (const f of [...forged, underH2]) await put(f.key, f.rec);
    // The control, written the same way and last.
    const valid = endpoint("fr-valid", F, "10.170.0.250", { names: ["fr-valid"] });
    await put(keys.hostEndpoint(F, SUBNET, "fr-valid"), valid);

    for (const h of hosts) {
      await eventually(`${h.name} to program the valid record`, async () => (await neighborsOf(h, vni)).includes(`10.170.0.250 ${valid.mac}`), {
        timeoutMs: 15_000,
        everyMs: 200,
      });
    }
    await eventually("fr-a to resolve the valid record's name", async () => (await resolve(h1, "fr-a", "fr-valid")).join() === "10.170.0.250", {
      timeoutMs: 15_000,
      everyMs: 500,
    });

    for (const h of hosts) {
      for (const f of forged) expect(await forgotten(h, vni, f.rec.ip, f.rec.mac), `${h.name}: ${f.key}`).toBe(true);
      // F's only FDB entry is the valid record's.
      expect(
        (await tables(h, vni)).fdb.filter((l) => l.endsWith(` ${F}`)),
        h.name,
      ).toEqual([`${valid.mac} ${F}`]);
    }
    const containers: [LabHost, string][] = [
      [h1, "fr-a"],
      [h2, "fr-b"],
      [h3, "fr-c"],
    ];
    for (const [h, c] of containers) {
      for (const name of ["fr-forged-1", "fr-forged-3", "fr-forged-4"]) expect(await resolve(h, c, name), `${c} resolving ${name}`).toEqual([]);
      expect(await resolve(h, c, "example.com"), `${c} resolving example.com`).not.toContain("169.254.169.254");
    }
    // Each host says what it refused, and why.
    const refused = new Map<string, Map<string, string>>();
    for (const h of hosts) {
      const status = (await clusterStatus(h)) as unknown as { rejectedRecords?: { key: string; code: string }[] } | undefined;
      refused.set(h.name, new Map(status?.rejectedRecords?.map((r) => [r.key, r.code])));
      expect(
        forged.map((f) => refused.get(h.name)?.get(f.key)),
        h.name,
      ).toEqual(["host-mismatch", "vtep-mismatch", "outside-subnet"]);
    }
    // The record under h2's prefix in F's name: refused where it was seen (h2 removes it within a collector period, so a
    // host's watch may in principle have missed it), programmed nowhere, and gone.
    expect([...refused.values()].map((m) => m.get(underH2.key)).filter((c) => c !== undefined)).toContain("host-mismatch");
    expect([...refused.values()].every((m) => [undefined, "host-mismatch"].includes(m.get(underH2.key)))).toBe(true);
    for (const h of hosts) expect(await forgotten(h, vni, underH2.rec.ip, underH2.rec.mac), h.name).toBe(true);
    await eventually("h2 to remove what it did not write under its prefix", async () => (await consulKeys(h1, underH2.key)).length === 0, {
      timeoutMs: 30_000,
      everyMs: 500,
    });
  });
});

describe("a forged catalog entry", () => {
  it("for a macvlan network on eth0 (or a tsoverlay one with parent=eth0) creates nothing on any host", async () => {
    const entry = (name: string, spec: Record<string, unknown>) => ({
      name,
      uid: `forged-${name}`,
      state: "active",
      host: "198.18.0.99",
      at: new Date().toISOString(),
      spec: {
        driver: "tsoverlay",
        subnet: "10.171.0.0/24",
        gateway: "10.171.0.1",
        options: {},
        labels: {},
        ipamDriver: "tsoverlay",
        ipamOptions: {},
        internal: false,
        attachable: false,
        ...spec,
      },
    });
    await put(keys.catalogEntry("fr-evil"), entry("fr-evil", { driver: "macvlan", options: { parent: "eth0" }, ipamDriver: "default" }));
    await put(keys.catalogEntry("fr-evil-parent"), entry("fr-evil-parent", { subnet: "10.172.0.0/24", gateway: "10.172.0.1", options: { parent: "eth0" } }));
    // The control: a catalog change made after them, which every host's reconcile brings in.
    await createNetworkOn(hosts, "fr-control", "10.173.0.0/24");
    await quiet(2_000, "a periodic reconcile would have had its chance too");

    for (const h of hosts) {
      const names = (await dockerOk(h, ["network", "ls", "--format", "{{.Name}} {{.Driver}}"])).split("\n");
      expect(
        names.filter((n) => n.startsWith("fr-evil")),
        h.name,
      ).toEqual([]);
      expect(
        names.filter((n) => n.endsWith(" macvlan")),
        h.name,
      ).toEqual([]);
      const status = (await clusterStatus(h)) as unknown as { propagation?: { problems: { name: string; problem: string }[] } } | undefined;
      const problems = new Map(status?.propagation?.problems.map((p) => [p.name, p.problem]));
      expect(problems.get("fr-evil"), h.name).toMatch(/its driver is macvlan, not tsoverlay/);
      expect(problems.get("fr-evil-parent"), h.name).toMatch(/unknown option parent/);
    }
  });
});
