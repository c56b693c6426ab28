import { afterEach, describe, expect, it, vi } from "vitest";
import { keys, parseByHostKey } from "../../driver/cluster/keys.js";
import { ADDRESS_SPACE } from "../../driver/ipam/pool-records.js";
import { MemoryStore } from "../support/memory-store.js";
import { FlakyStore } from "../support/flaky-store.js";
import { simHost, simVtep, stopSimHost, stopSimHosts, type SimHost } from "../support/sim-host.js";
import { error, value } from "../support/store-helpers.js";
import { eventually, quiet } from "../support/eventually.js";

afterEach(async () => {
  vi.useRealTimers();
  await stopSimHosts();
});
const host = simHost;

async function createOn(h: SimHost, networkId: string, subnet: string, options: Record<string, string> = {}, internal = false) {
  const pool = value(await h.d.ipam.requestPool({ pool: subnet, subPool: "", v6: false }));
  const gw = value(await h.d.ipam.requestAddress({ poolId: pool.poolId, address: "", gateway: true }));
  const r = await h.d.driver.createNetwork({
    networkId,
    addressSpace: ADDRESS_SPACE,
    pool: subnet,
    gatewayCidr: gw.address,
    options,
    internal,
    auxAddresses: {},
  });
  return { pool, r };
}

async function endpointOn(h: SimHost, networkId: string, poolId: string, endpointId: string, address = "") {
  const ip = value(await h.d.ipam.requestAddress({ poolId, address }));
  value(await h.d.driver.createEndpoint({ networkId, endpointId, addressCidr: ip.address, mac: "" }));
  return ip.address.split("/")[0]!;
}

/** Every call the store refused while down, of any kind. */
const refusals = (store: FlakyStore) => [...store.refused.values()].reduce((a, b) => a + b, 0);

/** Every host's endpoint record keys of a subnet. */
async function endpointKeys(store: FlakyStore, subnet: string): Promise<string[]> {
  return (await store.list(keys.byHost())).flatMap((kv) => {
    const k = parseByHostKey(kv.key);
    return k?.kind === "endpoint" && k.subnet === subnet ? [kv.key] : [];
  });
}

describe("OverlayDriver over a shared store (simulated hosts)", () => {
  it("makes one network of the same subnet, programs each host's peers, and releases everything with the last host", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const [a, b] = [await host(cluster, "198.18.0.11"), await host(cluster, "198.18.0.12")];
    const na = await createOn(a, "net-a", "10.30.0.0/24");
    const nb = await createOn(b, "net-b", "10.30.0.0/24");
    expect(na.r.ok && nb.r.ok).toBe(true);

    const ipA = await endpointOn(a, "net-a", na.pool.poolId, "ep-a");
    const ipB = await endpointOn(b, "net-b", nb.pool.poolId, "ep-b");
    expect(ipA).not.toBe(ipB);
    await eventually(
      "each host to program the other's endpoint",
      () => a.datapath.peers("10.30.0.0/24").length === 1 && b.datapath.peers("10.30.0.0/24").length === 1,
    );
    expect(a.datapath.peers("10.30.0.0/24")).toEqual([{ ip: ipB, mac: "02:42:0a:1e:00:03", vtep: "198.18.0.12" }]);
    expect(b.datapath.peers("10.30.0.0/24").map((p) => p.vtep)).toEqual(["198.18.0.11"]);
    expect(a.egress.slots.get("10.30.0.0/24")).toBe(1);

    expect(value(await a.d.driver.join("net-a", "ep-a"))).toEqual({ srcName: "tsoep-a", dstPrefix: "eth", gateway: "10.30.0.1" });

    value(await b.d.driver.deleteEndpoint("net-b", "ep-b"));
    value(await b.d.ipam.releaseAddress(nb.pool.poolId, ipB));
    await eventually("a to drop ep-b", () => a.datapath.peers("10.30.0.0/24").length === 0);
    expect(b.datapath.hasNetwork("10.30.0.0/24")).toBe(false);
    expect(b.egress.slots.size).toBe(0);

    value(await b.d.ipam.releasePool(nb.pool.poolId));
    value(await b.d.driver.deleteNetwork("net-b"));
    expect(await cluster.get(keys.network("10.30.0.0/24"))).toBeDefined();
    value(await a.d.driver.deleteEndpoint("net-a", "ep-a"));
    value(await a.d.ipam.releasePool(na.pool.poolId));
    value(await a.d.driver.deleteNetwork("net-a"));
    expect((await cluster.list("tsoverlay/v1/")).map((kv) => kv.key)).toEqual(
      // Only the hosts' liveness keys are left, and the layout marker.
      [keys.alive("198.18.0.11"), keys.alive("198.18.0.12"), keys.layout()],
    );
  });

  it("refuses the same subnet with a different VNI on another host, foreign IPAM, --aux-address, and a second network of one subnet on one host", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const [a, b] = [await host(cluster, "h1"), await host(cluster, "h2")];
    expect((await createOn(a, "n1", "10.31.0.0/24", { vni: "7001" })).r.ok).toBe(true);
    const clash = await createOn(b, "n2", "10.31.0.0/24", { vni: "7002" });
    expect(clash.r).toMatchObject({ ok: false, error: expect.objectContaining({ message: expect.stringMatching(/vni=7001.*asked for.*vni=7002/) }) });
    const base = { addressSpace: ADDRESS_SPACE, options: {}, internal: false, auxAddresses: {} };
    const foreign = await b.d.driver.createNetwork({
      ...base,
      networkId: "n3",
      addressSpace: "LocalDefault",
      pool: "10.32.0.0/24",
      gatewayCidr: "10.32.0.1/24",
    });
    expect(foreign).toMatchObject({ ok: false, error: expect.objectContaining({ message: expect.stringMatching(/--ipam-driver tsoverlay/) }) });
    const aux = await b.d.driver.createNetwork({
      ...base,
      networkId: "n4",
      pool: "10.33.0.0/24",
      gatewayCidr: "10.33.0.1/24",
      auxAddresses: { r: "10.33.0.5/24" },
    });
    expect(aux).toMatchObject({
      ok: false,
      error: expect.objectContaining({ message: expect.stringMatching(/--aux-address is not supported.*--ip-range.*r=10\.33\.0\.5\/24/) }),
    });
    // The second network is refused by the IPAM already, in Docker's words; the driver refuses it too.
    expect(error(await a.d.ipam.requestPool({ pool: "10.31.0.0/24", subPool: "", v6: false }))).toMatch(
      /^invalid pool request: Pool overlaps with other one on this address space/,
    );
    const twin = await a.d.driver.createNetwork({ ...base, networkId: "n5", pool: "10.31.0.0/24", gatewayCidr: "10.31.0.1/24" });
    expect(twin).toMatchObject({
      ok: false,
      error: expect.objectContaining({ message: expect.stringMatching(/Pool overlaps with other one on this address space/) }),
    });
    // Removing the refused one cannot take the first one's membership: it never existed.
    expect(await a.d.driver.deleteNetwork("n5")).toMatchObject({ ok: false });
    expect(await cluster.get(keys.networkHost("10.31.0.0/24", "h1"))).toBeDefined();
  });

  it("refuses a VNI that another network holds, naming that network, as a conflict", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const a = await host(cluster, "h1");
    expect((await createOn(a, "n1", "10.35.0.0/24", { vni: "7101" })).r.ok).toBe(true);
    const taken = await createOn(a, "n2", "10.36.0.0/24", { vni: "7101" });
    expect(taken.r).toEqual({ ok: false, error: { cause: "conflict", message: "network 10.36.0.0/24: VNI 7101 is already used by network 10.35.0.0/24" } });
  });

  it("rolls back an endpoint whose datapath fails, leaving nothing published", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const a = await host(cluster, "h1");
    const n = await createOn(a, "n1", "10.33.0.0/24");
    const ip = value(await a.d.ipam.requestAddress({ poolId: n.pool.poolId, address: "" }));
    a.datapath.failNext("ensureEndpoint");
    const r = await a.d.driver.createEndpoint({ networkId: "n1", endpointId: "ep", addressCidr: ip.address, mac: "" });
    expect(r.ok).toBe(false);
    await eventually("the rollback to reach the cluster", async () => a.d.outbox.status().pending === 0);
    expect(await endpointKeys(cluster, "10.33.0.0/24")).toEqual([]);
    expect(a.datapath.hasNetwork("10.33.0.0/24")).toBe(false);
  });

  it("an address that moves to another host is programmed there at once, and a lingering record of its old holder never wins over the local endpoint", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const [a, b, c] = [await host(cluster, "h1"), await host(cluster, "h2"), await host(cluster, "h3")];
    const nets = [await createOn(a, "n", "10.34.0.0/24"), await createOn(b, "n", "10.34.0.0/24"), await createOn(c, "n", "10.34.0.0/24")];
    const poolId = nets[0]!.pool.poolId;
    const watcher = await endpointOn(c, "n", poolId, "watcher");
    const x = await endpointOn(a, "n", poolId, "x-on-a", "10.34.0.50");
    await eventually("c to program x on h1", () => c.datapath.peers("10.34.0.0/24").find((p) => p.ip === x)?.vtep === simVtep("h1"));

    // a's withdrawal is stuck (its store is cut off): its record lingers while b takes the address.
    cluster.down();
    value(await a.d.driver.deleteEndpoint("n", "x-on-a"));
    value(await a.d.ipam.releaseAddress(poolId, x));
    await a.d.outbox.close(); // a's queue stays undelivered for now
    await cluster.up();
    await cluster.inner.delete(keys.address("10.34.0.0/24", x)); // as if its release had landed
    await endpointOn(b, "n", poolId, "x-on-b", "10.34.0.50");
    // Both records exist; b programs none of them for x (it is local there), c programs the newer one.
    expect(await endpointKeys(cluster, "10.34.0.0/24")).toHaveLength(3);
    await eventually("c to program x on h2", () => c.datapath.peers("10.34.0.0/24").find((p) => p.ip === x)?.vtep === simVtep("h2"));
    await eventually("b to program its peers", () => b.datapath.peers("10.34.0.0/24").some((p) => p.ip === watcher));
    expect(b.datapath.peers("10.34.0.0/24").map((p) => p.ip)).not.toContain(x);
  });
});

describe("container names (Docker 29 names the container to the IPAM)", () => {
  it("are kept with the endpoint, in the cluster record and on the status endpoint", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const a = await host(cluster, "h1");
    const n = await createOn(a, "n", "10.48.0.0/24");
    const ip = value(await a.d.ipam.requestAddress({ poolId: n.pool.poolId, address: "", name: "web" }));
    value(await a.d.driver.createEndpoint({ networkId: "n", endpointId: "e-web", addressCidr: ip.address, mac: "" }));
    expect(value(await a.d.driver.endpointInfo("n", "e-web"))).toMatchObject({ name: "web" });
    expect(JSON.parse((await cluster.get(keys.hostEndpoint("h1", "10.48.0.0/24", "e-web")))!.value)).toMatchObject({ name: "web", hostId: "h1" });
    expect((await a.d.status()).endpoints).toEqual([
      { endpointId: "e-web", name: "web", subnet: "10.48.0.0/24", ip: ip.address.split("/")[0], mac: "02:42:0a:30:00:02" },
    ]);
    // Older Docker gives no name: none is invented.
    await endpointOn(a, "n", n.pool.poolId, "e-anon");
    expect(value(await a.d.driver.endpointInfo("n", "e-anon")).name).toBeUndefined();
  });
});

describe("when the cluster store is away", () => {
  it("allocations fail within the budget with words that say so, and work again when it is back", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const a = await host(cluster, "h1", undefined, { storeRetryMs: 200 });
    const n = await createOn(a, "n1", "10.40.0.0/24");
    cluster.down("Consul at 127.0.0.1:8500 has no leader");
    const started = Date.now();
    expect(error(await a.d.ipam.requestAddress({ poolId: n.pool.poolId, address: "" }))).toBe(
      "tsoverlay: cluster store unavailable: Consul at 127.0.0.1:8500 has no leader (retried for 0.2 s)",
    );
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(await a.d.status()).toMatchObject({
      store: { available: false, error: "tsoverlay: cluster store unavailable: Consul at 127.0.0.1:8500 has no leader" },
    });
    // Back within the budget: the call rides it out.
    const refused = refusals(cluster);
    const late = a.d.ipam.requestAddress({ poolId: n.pool.poolId, address: "" });
    await eventually("the call to meet the store away", () => refusals(cluster) > refused);
    await cluster.up();
    expect(value(await late).address).toMatch(/^10\.40\.0\.\d+\/24$/);
    expect(await a.d.status()).toMatchObject({ store: { available: true } });
  });

  it("teardown succeeds locally at once, and its cluster part lands in order, once, when the store is back — across a plugin restart", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const [a, b] = [await host(cluster, "h1"), await host(cluster, "h2")];
    const na = await createOn(a, "na", "10.41.0.0/24");
    await createOn(b, "nb", "10.41.0.0/24");
    const ipA = await endpointOn(a, "na", na.pool.poolId, "ep-a");
    await endpointOn(b, "nb", na.pool.poolId, "ep-b");
    await eventually("b to program ep-a", () => b.datapath.peers("10.41.0.0/24").length > 0);
    expect(b.datapath.peers("10.41.0.0/24").map((p) => p.ip)).toEqual([ipA]);

    cluster.down();
    const t0 = Date.now();
    value(await a.d.driver.deleteEndpoint("na", "ep-a"));
    value(await a.d.ipam.releaseAddress(na.pool.poolId, ipA));
    value(await a.d.ipam.releasePool(na.pool.poolId));
    value(await a.d.driver.deleteNetwork("na"));
    expect(Date.now() - t0).toBeLessThan(1_000);
    // Gone from this host at once; still in the cluster, and still programmed by the peer.
    expect(a.datapath.hasNetwork("10.41.0.0/24")).toBe(false);
    expect(a.d.outbox.status().pending).toBe(4);
    expect(await cluster.inner.get(keys.hostEndpoint("h1", "10.41.0.0/24", "ep-a"))).toBeDefined();
    expect(b.datapath.peers("10.41.0.0/24").map((p) => p.ip)).toEqual([ipA]);

    // The plugin restarts while the store is still away: the queue survives.
    await stopSimHost(a);
    const a2 = await host(cluster, "h1", a);
    expect(a2.d.outbox.status().pending).toBe(4);
    await cluster.up();
    await eventually("the queued teardown to land", () => a2.d.outbox.status().pending === 0);
    expect(await cluster.get(keys.hostEndpoint("h1", "10.41.0.0/24", "ep-a"))).toBeUndefined();
    expect(await cluster.get(keys.address("10.41.0.0/24", ipA))).toBeUndefined();
    expect(await cluster.get(keys.networkHost("10.41.0.0/24", "h1"))).toBeUndefined();
    expect(await cluster.get(keys.poolRef("10.41.0.0/24", "h1"))).toBeUndefined();
    // b still has the network; the peer is dropped there.
    expect(await cluster.get(keys.network("10.41.0.0/24"))).toBeDefined();
    await eventually("b to drop the withdrawn peer", () => b.datapath.peers("10.41.0.0/24").length === 0);
  });

  it("an allocation waits for queued releases to land first, so a late release never undoes it", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const a = await host(cluster, "h1", undefined, { storeRetryMs: 2_000 });
    const n = await createOn(a, "n", "10.42.0.0/24");
    const ip = await endpointOn(a, "n", n.pool.poolId, "e1", "10.42.0.9");
    cluster.down();
    value(await a.d.driver.deleteEndpoint("n", "e1"));
    value(await a.d.ipam.releaseAddress(n.pool.poolId, ip));
    const refused = refusals(cluster);
    const again = a.d.ipam.requestAddress({ poolId: n.pool.poolId, address: "10.42.0.9" });
    await eventually("the allocation's flush of the queue to meet the store away", () => refusals(cluster) > refused);
    await cluster.up();
    expect(value(await again).address).toBe("10.42.0.9/24");
    // Nothing is left in the queue that could land later and undo it.
    expect(a.d.outbox.status().pending).toBe(0);
    expect(await cluster.get(keys.address("10.42.0.0/24", "10.42.0.9"))).toBeDefined();
  });

  it("a plugin restart while the store is away restores the datapath and keeps the peers the kernel holds", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const [a, b] = [await host(cluster, "h1"), await host(cluster, "h2")];
    const n = await createOn(a, "n", "10.43.0.0/24");
    await createOn(b, "n", "10.43.0.0/24");
    await endpointOn(a, "n", n.pool.poolId, "ea");
    const ipB = await endpointOn(b, "n", n.pool.poolId, "eb");
    await eventually("a to program eb", () => a.datapath.peers("10.43.0.0/24").length > 0);
    cluster.down();
    await stopSimHost(a);
    const a2 = await host(cluster, "h1", a);
    expect(a2.datapath.hasNetwork("10.43.0.0/24")).toBe(true);
    expect(value(await a2.d.driver.join("n", "ea")).gateway).toBe("10.43.0.1");
    await quiet(50, "nothing may empty the peer tables while the store is away: time for a wrong sync to run");
    expect(a2.datapath.peers("10.43.0.0/24").map((p) => p.ip)).toEqual([ipB]);
    const synced = a2.datapath.calls.filter((c) => c.method === "syncPeers").length;
    await cluster.up();
    await a2.d.hosts.started();
    await eventually("a2 to sync its peers with the store", () => a2.datapath.calls.filter((c) => c.method === "syncPeers").length > synced);
    expect(a2.datapath.peers("10.43.0.0/24").map((p) => p.ip)).toEqual([ipB]);
  });
});

describe("a network's NAT on a host (off every container's start)", () => {
  it("is wanted from the network's creation here, before any endpoint, to its removal; a restart asks again; --internal has none", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const a = await host(cluster, "h1");
    const n = await createOn(a, "n", "10.45.0.0/24");
    const i = await createOn(a, "i", "10.46.0.0/24", {}, true);
    expect(n.r.ok && i.r.ok).toBe(true);
    expect([...a.egress.nat]).toEqual(["10.45.0.0/24"]);
    expect(a.egress.slots.size).toBe(0);
    // The last endpoint takes the uplink; the NAT stays with the network, for the next container.
    await endpointOn(a, "n", n.pool.poolId, "e");
    value(await a.d.driver.deleteEndpoint("n", "e"));
    expect(a.egress.slots.size).toBe(0);
    expect([...a.egress.nat]).toEqual(["10.45.0.0/24"]);
    // A restart (the kernel state kept, or not): the restore asks for it again.
    a.egress.nat.clear();
    const a2 = await host(cluster, "h1", a);
    expect([...a2.egress.nat]).toEqual(["10.45.0.0/24"]);
    value(await a2.d.driver.deleteNetwork("n"));
    expect([...a2.egress.nat]).toEqual([]);
  });
});

describe("--internal", () => {
  it("has no uplink, gives containers no gateway, publishes nothing, and must match on every host", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const [a, b] = [await host(cluster, "h1"), await host(cluster, "h2")];
    const n = await createOn(a, "n", "10.44.0.0/24", {}, true);
    expect(n.r.ok).toBe(true);
    await endpointOn(a, "n", n.pool.poolId, "e");
    expect(a.egress.slots.size).toBe(0);
    expect(value(await a.d.driver.join("n", "e"))).toEqual({ srcName: "tsoe", dstPrefix: "eth" });
    expect(
      value(await a.d.driver.programExternalConnectivity("n", "e", [{ proto: "tcp", hostIp: "", hostPort: 0, hostPortEnd: 0, containerPort: 80 }])),
    ).toEqual([]);
    expect((await createOn(b, "n", "10.44.0.0/24")).r).toMatchObject({
      ok: false,
      error: expect.objectContaining({ message: expect.stringMatching(/internal=true.*asked for.*internal=false/) }),
    });
  });

  it("with the name service on: a host-only uplink, and a route to the name service alone for its containers", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const a = await host(cluster, "h1", undefined, { nameServer: "100.72.0.1" });
    const n = await createOn(a, "n", "10.44.0.0/24", {}, true);
    await endpointOn(a, "n", n.pool.poolId, "e");
    expect([...a.egress.hostOnly]).toEqual(["10.44.0.0/24"]);
    expect(value(await a.d.driver.join("n", "e"))).toEqual({
      srcName: "tsoe",
      dstPrefix: "eth",
      routes: [{ destination: "100.72.0.1/32", nextHop: "10.44.0.1" }],
    });
    // A network with a way out needs no route of its own: its default route reaches the bridge.
    const m = await createOn(a, "m", "10.43.0.0/24");
    await endpointOn(a, "m", m.pool.poolId, "f");
    expect(value(await a.d.driver.join("m", "f"))).toEqual({ srcName: "tsof", dstPrefix: "eth", gateway: "10.43.0.1" });
    expect([...a.egress.hostOnly]).toEqual(["10.44.0.0/24"]);
  });

  it("no way out for names either: a container only on it is not forwarded; joined to a network with a way out too, it is", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const a = await host(cluster, "h1", undefined, { nameServer: "100.72.0.1" });
    const n = await createOn(a, "n", "10.44.0.0/24", {}, true);
    const m = await createOn(a, "m", "10.43.0.0/24");
    const ip = await endpointOn(a, "n", n.pool.poolId, "e");
    value(await a.d.driver.join("n", "e", "/var/run/docker/netns/c1"));
    const outside = () => a.d.names.decide({ name: "outside.lab", type: "A", class: "IN", source: ip });
    expect(await outside()).toEqual({ kind: "not-forwarded" });
    // `docker network connect m c1`: the same sandbox on a network with a way out.
    await endpointOn(a, "m", m.pool.poolId, "f");
    value(await a.d.driver.join("m", "f", "/var/run/docker/netns/c1"));
    expect(await outside()).toEqual({ kind: "forward" });
  });

  it("honours the container interface prefix", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const a = await host(cluster, "h1");
    const n = await createOn(a, "n", "10.45.0.0/24", { "com.docker.network.container_iface_prefix": "ovl" });
    await endpointOn(a, "n", n.pool.poolId, "e");
    expect(value(await a.d.driver.join("n", "e")).dstPrefix).toBe("ovl");
  });
});

describe("the record collector", () => {
  it("removes this host's records that nothing local backs and writes back those that went missing", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const a = await host(cluster, "h1");
    const n = await createOn(a, "n", "10.46.0.0/24");
    const ip = await endpointOn(a, "n", n.pool.poolId, "e");
    // A ghost of this host (a teardown whose cluster part was lost) and a record that went missing.
    await cluster.put(
      keys.hostEndpoint("h1", "10.46.0.0/24", "ghost"),
      JSON.stringify({ endpointId: "ghost", networkId: "n", hostId: "h1", vtep: simVtep("h1"), ip: "10.46.0.77", mac: "02:42:0a:2e:00:4d" }),
    );
    await cluster.put(keys.address("10.46.0.0/24", "10.46.0.77"), JSON.stringify({ host: "h1", kind: "endpoint", at: new Date(0).toISOString() }));
    await cluster.delete(keys.hostEndpoint("h1", "10.46.0.0/24", "e"));
    await cluster.delete(keys.address("10.46.0.0/24", ip));
    await cluster.delete(keys.networkHost("10.46.0.0/24", "h1"));
    const report = await a.d.collector.pass();
    expect(report).toMatchObject({ removed: 2, restored: 3, conflicts: [] });
    expect(await cluster.get(keys.hostEndpoint("h1", "10.46.0.0/24", "ghost"))).toBeUndefined();
    expect(await cluster.get(keys.address("10.46.0.0/24", "10.46.0.77"))).toBeUndefined();
    expect(await cluster.get(keys.hostEndpoint("h1", "10.46.0.0/24", "e"))).toBeDefined();
    expect(await cluster.get(keys.address("10.46.0.0/24", ip))).toBeDefined();
    expect(await cluster.get(keys.networkHost("10.46.0.0/24", "h1"))).toBeDefined();
    expect(await a.d.collector.pass()).toMatchObject({ removed: 0, restored: 0 });
  });

  it("reports, in words, an address this host uses that another host now holds, and leaves the other's record alone", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const a = await host(cluster, "h1");
    const n = await createOn(a, "n", "10.49.0.0/24");
    const ip = await endpointOn(a, "n", n.pool.poolId, "e");
    const theirs = JSON.stringify({ host: "h2", kind: "endpoint", at: new Date().toISOString() });
    await cluster.put(keys.address("10.49.0.0/24", ip), theirs);
    const report = await a.d.collector.pass();
    expect(report?.conflicts).toEqual([`network 10.49.0.0/24: address ${ip} in pool 10.49.0.0/24 is held by host h2, but this host uses it`]);
    expect((await cluster.get(keys.address("10.49.0.0/24", ip)))?.value).toBe(theirs);
  });

  it("collects a host gone for longer than the grace, once, by one host, and leaves a host that comes back alone", async () => {
    // The collectors read the grace off Date, faked before the hosts exist (they keep Date.now) and moved past it below.
    vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
    const cluster = new FlakyStore(new MemoryStore());
    const [a, b, c] = [
      await host(cluster, "h1", undefined, { gcGraceMs: 200 }),
      await host(cluster, "h2", undefined, { gcGraceMs: 200 }),
      await host(cluster, "h3"),
    ];
    const n = await createOn(a, "n", "10.47.0.0/24");
    await createOn(b, "n", "10.47.0.0/24");
    await createOn(c, "n", "10.47.0.0/24");
    await endpointOn(a, "n", n.pool.poolId, "ea");
    await endpointOn(c, "n", n.pool.poolId, "ec");
    // h3 dies: its process stops renewing and its liveness key lapses.
    await stopSimHost(c);
    await cluster.delete(keys.alive("h3"));
    await eventually("h3 to be seen gone", () => !a.d.hosts.isAlive("h3") && !b.d.hosts.isAlive("h3"));
    await eventually("a to drop h3's endpoint", () => a.datapath.peers("10.47.0.0/24").length === 0);

    // First passes only mark it; after the grace exactly one host collects.
    const first = await Promise.all([a.d.collector.pass(), b.d.collector.pass()]);
    expect(first.flatMap((r) => r?.collectedHosts ?? [])).toEqual([]);
    expect(await cluster.get(keys.goneHost("h3"))).toBeDefined();
    vi.advanceTimersByTime(250);
    const second = await Promise.all([a.d.collector.pass(), b.d.collector.pass()]);
    expect(second.flatMap((r) => r?.collectedHosts ?? [])).toEqual(["h3"]);
    expect(await cluster.get(keys.hostEndpoint("h3", "10.47.0.0/24", "ec"))).toBeUndefined();
    expect(await cluster.get(keys.networkHost("10.47.0.0/24", "h3"))).toBeUndefined();
    expect(await cluster.get(keys.poolRef("10.47.0.0/24", "h3"))).toBeUndefined();
    expect((await a.d.clusterIpam.addressRecords()).filter((x) => x.record.host === "h3" && x.record.kind === "endpoint")).toEqual([]);
    expect(await cluster.get(keys.goneHost("h3"))).toBeUndefined();
    expect(await cluster.get(keys.network("10.47.0.0/24"))).toBeDefined();

    // h3 comes back with its state: it writes its records again.
    const c2 = await host(cluster, "h3", c);
    const back = await c2.d.collector.pass();
    expect(back).toMatchObject({ conflicts: [] });
    expect(await cluster.get(keys.hostEndpoint("h3", "10.47.0.0/24", "ec"))).toBeDefined();
    expect(await cluster.get(keys.networkHost("10.47.0.0/24", "h3"))).toBeDefined();
    expect(await cluster.get(keys.poolRef("10.47.0.0/24", "h3"))).toBeDefined();
  });
});

describe("names for the name service", () => {
  it("Join keeps the container's sandbox; names from the Docker API reach the endpoint's cluster record, and other hosts' name services", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const [a, b] = [await host(cluster, "h1"), await host(cluster, "h2")];
    const na = await createOn(a, "n", "10.50.0.0/24");
    await createOn(b, "n", "10.50.0.0/24");
    const ipA = await endpointOn(a, "n", na.pool.poolId, "ea");
    const ipB = await endpointOn(b, "n", na.pool.poolId, "eb");
    value(await a.d.driver.join("n", "ea", "/var/run/docker/netns/abc"));
    expect((await a.local.list("")).some((kv) => kv.value.includes('"endpointId":"ea"') && kv.value.includes('"sandbox":"/var/run/docker/netns/abc"'))).toBe(
      true,
    );
    expect(await b.d.driver.setNames("eb", ["Web", "api", "web"])).toBe(true);
    expect(await a.d.driver.setNames("nope", ["x"])).toBe(false);
    const rec = JSON.parse((await cluster.get(keys.hostEndpoint("h2", "10.50.0.0/24", "eb")))!.value) as { names: string[] };
    expect(rec.names).toEqual(["web", "api"]); // Docker's order (the container's name first), lower-cased, once each
    await eventually("h1's name service to know web", async () => {
      const r = await a.d.names.decide({ name: "web", type: "A", class: "IN", source: ipA });
      return r.kind === "addresses" && r.ips.join() === ipB;
    });
  });
});
