/**
 * Records written straight into the store by whoever can write it (another
 * host's token, or anyone where there are no ACLs) are checked before they are
 * programmed or answered: each forged record below fails one check, and none
 * reaches another host's peer tables or name service, while a valid record
 * written the same way, after them, does (so the test sees a programmed peer).
 */
import { afterEach, describe, expect, it } from "vitest";
import { keys } from "../../driver/cluster/keys.js";
import { macFromIpv4 } from "../../lib/net.js";
import { eventually } from "../support/eventually.js";
import { FlakyStore } from "../support/flaky-store.js";
import { MemoryStore } from "../support/memory-store.js";
import { simHost, stopSimHosts, type SimHost } from "../support/sim-host.js";
import { value } from "../support/store-helpers.js";
import { createNetworkOn } from "../support/docker-calls.js";

afterEach(stopSimHosts);

const SUBNET = "10.95.0.0/24";
const [A, B, C] = ["198.18.0.11", "198.18.0.12", "198.18.0.13"];

async function join(h: SimHost, endpointId: string): Promise<{ ip: string; poolId: string }> {
  const poolId = await createNetworkOn(h.d, "n", SUBNET);
  const ip = value(await h.d.ipam.requestAddress({ poolId, address: "" }));
  value(await h.d.driver.createEndpoint({ networkId: "n", endpointId, addressCidr: ip.address, mac: "" }));
  return { ip: ip.address.split("/")[0]!, poolId };
}

const endpoint = (endpointId: string, hostId: string, over: Record<string, unknown> = {}) =>
  JSON.stringify({ endpointId, networkId: "forged", hostId, vtep: hostId, ip: "10.95.0.200", mac: macFromIpv4("10.95.0.200"), ...over });
const hostRecord = (hostId: string, vtep = hostId) => JSON.stringify({ hostId, vtep, hostname: "forged", startedAt: new Date().toISOString() });

async function resolves(h: SimHost, source: string, name: string): Promise<string[]> {
  const r = await h.d.names.decide({ name, type: "A", class: "IN", source });
  return r.kind === "addresses" ? [...r.ips].sort() : [];
}

describe("forged endpoint records", () => {
  it("are neither programmed nor answered: another host's name, a VTEP not its host's, an address outside the subnet or the gateway's; a valid one is", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const [a, b, c] = [await simHost(cluster, A), await simHost(cluster, B), await simHost(cluster, C)];
    const ea = await join(a, "ea");
    await join(b, "eb");
    const ec = await join(c, "ec");
    await c.d.driver.setNames("ec", ["cee"]);
    const real = await eventually("a to program b and c", () => (a.datapath.peers(SUBNET).length === 2 ? a.datapath.peers(SUBNET) : undefined));
    const realC = real.find((p) => p.ip === ec.ip)!;

    // Written under b's prefix (b's token could), each newer than c's own record.
    const forged: [string, string][] = [
      // In c's name, claiming c's address with a MAC and VTEP of the forger's choice.
      ["f-name", endpoint("f-name", C, { ip: ec.ip, mac: "02:00:00:00:66:01", vtep: "198.18.0.66", names: ["hijack1"] })],
      // b's own, but with a VTEP that is not b's.
      ["f-vtep", endpoint("f-vtep", B, { ip: ec.ip, mac: "02:00:00:00:66:02", vtep: "198.18.0.66", names: ["hijack2"] })],
      ["f-vtep-ll", endpoint("f-vtep-ll", B, { ip: "10.95.0.201", vtep: "169.254.169.254", names: ["hijack3"] })],
      // Addresses that are no container's on this network.
      ["f-metadata", endpoint("f-metadata", B, { ip: "169.254.169.254", mac: "02:00:00:00:66:04", names: ["example.org"] })],
      ["f-gateway", endpoint("f-gateway", B, { ip: "10.95.0.1", mac: "02:00:00:00:66:05", names: ["hijack5"] })],
      ["f-broadcast", endpoint("f-broadcast", B, { ip: "10.95.0.255", mac: "02:00:00:00:66:06", names: ["hijack6"] })],
      ["f-mac", endpoint("f-mac", B, { ip: "10.95.0.202", mac: "ff:ff:ff:ff:ff:ff", names: ["hijack7"] })],
      // A key that names another endpoint than its record.
      ["f-id", endpoint("other", B, { ip: "10.95.0.203", names: ["hijack8"] })],
    ];
    for (const [id, rec] of forged) await cluster.put(keys.hostEndpoint(B, SUBNET, id), rec);
    // And the other way round: in b's name under c's prefix.
    await cluster.put(keys.hostEndpoint(C, SUBNET, "f-prefix"), endpoint("f-prefix", B, { ip: "10.95.0.204", names: ["hijack9"] }));
    // The control, written the same way and last: valid, so it is programmed and answered.
    await cluster.put(keys.hostEndpoint(B, SUBNET, "valid"), endpoint("valid", B, { names: ["valid-one"] }));

    await eventually("a to program the valid record", () => a.datapath.peers(SUBNET).some((p) => p.ip === "10.95.0.200"));
    expect(await resolves(a, ea.ip, "valid-one")).toEqual(["10.95.0.200"]);
    const peers = a.datapath.peers(SUBNET);
    expect(peers.map((p) => p.ip).sort()).toEqual([...real.map((p) => p.ip), "10.95.0.200"].sort());
    expect(peers.find((p) => p.ip === ec.ip)).toEqual(realC);
    expect(peers.every((p) => p.vtep === B || p.vtep === C)).toBe(true);
    for (const name of ["hijack1", "hijack2", "hijack3", "example.org", "hijack5", "hijack6", "hijack7", "hijack8", "hijack9"]) {
      expect(await a.d.names.decide({ name, type: "A", class: "IN", source: ea.ip }), name).toEqual({ kind: "forward" });
    }
    expect(await resolves(a, ea.ip, "cee")).toEqual([ec.ip]);
    // The status endpoint names what was refused, and why.
    const status = (await a.d.status()) as { rejectedRecords: { key: string; code: string }[] };
    expect(new Set(status.rejectedRecords.map((r) => r.code))).toEqual(
      new Set(["host-mismatch", "vtep-mismatch", "outside-subnet", "gateway-address", "reserved-address", "bad-mac", "endpoint-mismatch"]),
    );
  });

  it("liveness is keyed by the key: a host record under another host's key, or with a VTEP no host has, makes no host alive", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const a = await simHost(cluster, A);
    const ea = await join(a, "ea");
    const [X, Y, Z, V] = ["198.18.0.77", "198.18.0.78", "198.18.0.79", "198.18.0.80"];
    // Under X's key, in Y's name; each then "has" an endpoint.
    await cluster.put(keys.alive(X), hostRecord(Y));
    await cluster.put(keys.hostEndpoint(X, SUBNET, "fx"), endpoint("fx", X, { ip: "10.95.0.210", names: ["x"] }));
    await cluster.put(keys.hostEndpoint(Y, SUBNET, "fy"), endpoint("fy", Y, { ip: "10.95.0.211", names: ["y"] }));
    // A host whose VTEP is the metadata service.
    await cluster.put(keys.alive(Z), hostRecord(Z, "169.254.169.254"));
    await cluster.put(keys.hostEndpoint(Z, SUBNET, "fz"), endpoint("fz", Z, { ip: "10.95.0.212", vtep: "169.254.169.254", names: ["z"] }));
    // The control: a valid host with a valid endpoint, written last.
    await cluster.put(keys.alive(V), hostRecord(V));
    await cluster.put(keys.hostEndpoint(V, SUBNET, "fv"), endpoint("fv", V, { ip: "10.95.0.213", names: ["v"] }));

    await eventually("a to program the valid host's endpoint", () => a.datapath.peers(SUBNET).some((p) => p.ip === "10.95.0.213"));
    expect([X, Y, Z].map((h) => a.d.hosts.isAlive(h))).toEqual([false, false, false]);
    expect(a.d.hosts.isAlive(V)).toBe(true);
    expect(
      a.d.hosts
        .hosts()
        .map((h) => h.vtep)
        .sort(),
    ).toEqual([A, V]);
    expect(a.datapath.peers(SUBNET).map((p) => p.ip)).toEqual(["10.95.0.213"]);
    for (const name of ["x", "y", "z"]) expect(await a.d.names.decide({ name, type: "A", class: "IN", source: ea.ip }), name).toEqual({ kind: "forward" });
    expect(await resolves(a, ea.ip, "v")).toEqual(["10.95.0.213"]);
    // The cluster view shows the same: no forged host alive, no forged endpoint of a live host.
    const view = await a.d.view.read();
    expect(view.hosts.filter((h) => h.alive).map((h) => h.hostId)).toEqual([A, V]);
    expect(
      view.endpoints
        .filter((e) => e.alive)
        .map((e) => e.ip)
        .sort(),
    ).toEqual([ea.ip, "10.95.0.213"].sort());
  });
});
