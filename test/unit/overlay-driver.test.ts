import { afterEach, describe, expect, it } from "vitest";
import { keys } from "../../driver/cluster/keys.js";
import type { EgressPort } from "../../driver/datapath/datapath.js";
import { FakeDatapath } from "../../driver/datapath/fake-datapath.js";
import { HostRegistry } from "../../driver/host/host-registry.js";
import { ClusterIpam } from "../../driver/ipam/cluster-ipam.js";
import { LocalState } from "../../driver/local/local-state.js";
import { createLogger } from "../../driver/log.js";
import { ClusterNetworks } from "../../driver/network/cluster-networks.js";
import { ADDRESS_SPACE, OverlayDriver } from "../../driver/overlay-driver.js";
import { PeerSync } from "../../driver/peers/peer-sync.js";
import { PortPublisher } from "../../driver/publish/port-publisher.js";
import { MemoryStore } from "../../driver/store/memory-store.js";
import { ProxyManager } from "../../proxy/index.js";
import { value } from "../support/store-helpers.js";

const log = createLogger("silent");

/** One simulated host: the real domain over a shared in-memory cluster store and a fake kernel. */
async function host(cluster: MemoryStore, hostId: string) {
  const datapath = new FakeDatapath();
  const egress: EgressPort & { slots: Map<string, number> } = {
    slots: new Map(),
    ensure: async (subnet, _vni, slot) => void egress.slots.set(subnet, slot),
    remove: async (subnet) => void egress.slots.delete(subnet),
  };
  const ipam = new ClusterIpam(cluster, { hostId, poolRange: "10.213.0.0/16", poolSize: 24, vniRange: { min: 5000, max: 5100 } }, log);
  const hosts = new HostRegistry(cluster, { hostId, vtep: hostId }, log);
  await hosts.start();
  const peers = new PeerSync(cluster, datapath, hosts, log, 60_000);
  const networks = new ClusterNetworks(
    cluster,
    { claim: (s, r) => ipam.claimVni(s, r), release: async (v, s) => void (await ipam.releaseVni(v, s)) },
    hostId,
    log,
  );
  const driver = new OverlayDriver({
    store: cluster,
    local: new LocalState(new MemoryStore()),
    datapath,
    egress,
    hosts,
    peers,
    networks,
    publisher: new PortPublisher(new ProxyManager(), log),
    settings: { hostId, vtep: hostId, underlayMtu: 1500 },
    log,
  });
  return { driver, ipam, datapath, egress, stop: () => (peers.stopAll(), hosts.stop()) };
}

type Host = Awaited<ReturnType<typeof host>>;
const running: Host[] = [];
afterEach(() => running.splice(0).forEach((h) => h.stop()));

async function createOn(h: Host, hostId: string, networkId: string, subnet: string, options: Record<string, string> = {}) {
  const pool = value(await h.ipam.requestPool({ hostId, pool: subnet, v6: false }));
  const gw = value(await h.ipam.requestAddress({ hostId, poolId: pool.poolId, options: { RequestAddressType: "com.docker.network.gateway" } }));
  const r = await h.driver.createNetwork({ networkId, addressSpace: ADDRESS_SPACE, pool: subnet, gatewayCidr: gw.address, options });
  return { pool, r };
}

const settle = () => new Promise((r) => setTimeout(r, 20));

describe("OverlayDriver over a shared store (two simulated hosts)", () => {
  it("makes one network of the same subnet, programs each host's peers, and releases everything with the last host", async () => {
    const cluster = new MemoryStore();
    const [a, b] = [await host(cluster, "198.18.0.11"), await host(cluster, "198.18.0.12")];
    running.push(a, b);
    const na = await createOn(a, "198.18.0.11", "net-a", "10.30.0.0/24");
    const nb = await createOn(b, "198.18.0.12", "net-b", "10.30.0.0/24");
    expect(na.r.ok && nb.r.ok).toBe(true);

    const ipA = value(await a.ipam.requestAddress({ hostId: "198.18.0.11", poolId: na.pool.poolId }));
    const ipB = value(await b.ipam.requestAddress({ hostId: "198.18.0.12", poolId: nb.pool.poolId }));
    expect(ipA.address).not.toBe(ipB.address);
    const epA = value(await a.driver.createEndpoint({ networkId: "net-a", endpointId: "ep-a", addressCidr: ipA.address, mac: "" }));
    value(await b.driver.createEndpoint({ networkId: "net-b", endpointId: "ep-b", addressCidr: ipB.address, mac: "" }));
    expect(epA.mac).toBe("02:42:0a:1e:00:02");
    await settle();
    expect(a.datapath.peers("10.30.0.0/24")).toEqual([{ ip: ipB.address.split("/")[0], mac: "02:42:0a:1e:00:03", vtep: "198.18.0.12" }]);
    expect(b.datapath.peers("10.30.0.0/24").map((p) => p.vtep)).toEqual(["198.18.0.11"]);
    expect(a.egress.slots.get("10.30.0.0/24")).toBe(1);

    const join = value(await a.driver.join("net-a", "ep-a"));
    expect(join.gateway).toBe("10.30.0.1");

    value(await b.driver.deleteEndpoint("net-b", "ep-b"));
    await settle();
    expect(a.datapath.peers("10.30.0.0/24")).toEqual([]);
    expect(b.datapath.hasNetwork("10.30.0.0/24")).toBe(false);
    expect(b.egress.slots.size).toBe(0);

    value(await b.driver.deleteNetwork("net-b"));
    expect(await cluster.get(keys.network("10.30.0.0/24"))).toBeDefined();
    value(await a.driver.deleteEndpoint("net-a", "ep-a"));
    value(await a.driver.deleteNetwork("net-a"));
    expect(await cluster.get(keys.network("10.30.0.0/24"))).toBeUndefined();
    expect(await cluster.list(keys.vnis())).toEqual([]);
    expect(await cluster.list(keys.endpoints("10.30.0.0/24"))).toEqual([]);
  });

  it("refuses the same subnet with a different VNI on another host, and foreign IPAM", async () => {
    const cluster = new MemoryStore();
    const [a, b] = [await host(cluster, "h1"), await host(cluster, "h2")];
    running.push(a, b);
    expect((await createOn(a, "h1", "n1", "10.31.0.0/24", { vni: "7001" })).r.ok).toBe(true);
    const clash = await createOn(b, "h2", "n2", "10.31.0.0/24", { vni: "7002" });
    expect(clash.r).toMatchObject({ ok: false, error: expect.stringMatching(/vni=7001.*asked for.*vni=7002/) });
    const foreign = await b.driver.createNetwork({ networkId: "n3", addressSpace: "LocalDefault", pool: "10.32.0.0/24", gatewayCidr: "10.32.0.1/24", options: {} });
    expect(foreign).toMatchObject({ ok: false, error: expect.stringMatching(/--ipam-driver tsoverlay/) });
  });

  it("rolls back an endpoint whose datapath fails, leaving nothing published", async () => {
    const cluster = new MemoryStore();
    const a = await host(cluster, "h1");
    running.push(a);
    const n = await createOn(a, "h1", "n1", "10.33.0.0/24");
    const ip = value(await a.ipam.requestAddress({ hostId: "h1", poolId: n.pool.poolId }));
    a.datapath.failNext("ensureEndpoint");
    const r = await a.driver.createEndpoint({ networkId: "n1", endpointId: "ep", addressCidr: ip.address, mac: "" });
    expect(r.ok).toBe(false);
    expect(await cluster.list(keys.endpoints("10.33.0.0/24"))).toEqual([]);
    expect(a.datapath.hasNetwork("10.33.0.0/24")).toBe(false);
  });
});
