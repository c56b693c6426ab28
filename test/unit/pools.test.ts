import { describe, expect, it } from "vitest";
import { keys } from "../../driver/cluster/keys.js";
import { createLogger } from "../../lib/log.js";
import type { Result } from "../../lib/result.js";
import { MemoryStore } from "../support/memory-store.js";
import { AddressAllocator } from "../../driver/ipam/addresses.js";
import { Subnet } from "../../lib/net.js";
import { jittery, value, error } from "../support/store-helpers.js";
import { formatPoolId, parsePoolId, type PoolRecord } from "../../driver/ipam/pool-records.js";
import { PoolAllocator, type RequestPoolArgs } from "../../driver/ipam/pools.js";

const log = createLogger("silent");

function setup(cfg = { poolRange: "10.213.0.0/16", poolSize: 24 }, now: () => number = Date.now) {
  const store = new MemoryStore();
  return { store, pools: new PoolAllocator(store, cfg, log, now), addresses: new AddressAllocator(store, log) };
}

function racingSetup() {
  const store = new MemoryStore();
  return { store, pools: new PoolAllocator(jittery(store), { poolRange: "10.213.0.0/16", poolSize: 24 }, log) };
}

const req = (hostId: string, more: Partial<RequestPoolArgs> = {}): RequestPoolArgs => ({ hostId, v6: false, ...more });

/** Which hosts hold the pool (each reference records when it was taken). */
async function refs(store: MemoryStore, subnet: string): Promise<string[]> {
  const prefix = keys.poolRefs(subnet);
  return (await store.list(prefix)).map((kv) => {
    expect(Date.parse((JSON.parse(kv.value) as { at: string }).at)).not.toBeNaN();
    return kv.key.slice(prefix.length);
  });
}

async function poolSubnets(store: MemoryStore): Promise<string[]> {
  const prefix = keys.pools();
  return (await store.list(prefix)).filter((kv) => !kv.key.slice(prefix.length).includes("/")).map((kv) => (JSON.parse(kv.value) as PoolRecord).subnet);
}

describe("PoolID", () => {
  const s = (text: string) => value(Subnet.parse(text));

  it("is the subnet, or subnet|sub-pool", () => {
    expect(formatPoolId(s("10.10.0.0/24"))).toBe("10.10.0.0/24");
    expect(formatPoolId(s("10.10.0.0/24"), s("10.10.0.128/25"))).toBe("10.10.0.0/24|10.10.0.128/25");
    const id = value(parsePoolId("10.10.0.0/24|10.10.0.128/25"));
    expect(id.pool.toString()).toBe("10.10.0.0/24");
    expect(id.subPool?.toString()).toBe("10.10.0.128/25");
    expect(value(parsePoolId("10.10.0.0/24")).subPool).toBeUndefined();
  });

  it("refuses malformed IDs", () => {
    expect(error(parsePoolId("garbage"))).toContain("invalid pool ID garbage");
    expect(error(parsePoolId("10.10.0.0/24|10.11.0.0/25"))).toBe(
      "invalid pool ID 10.10.0.0/24|10.11.0.0/25: sub-pool 10.11.0.0/25 is not inside pool 10.10.0.0/24",
    );
    expect(error(parsePoolId("a|b|c"))).toContain("expected <subnet> or <subnet>|<sub-pool>");
  });
});

describe("requestPool with a given subnet", () => {
  it("creates the pool and takes one ref for the host", async () => {
    const { store, pools } = setup();
    expect(value(await pools.requestPool(req("h1", { pool: "10.10.0.0/24" })))).toEqual({
      poolId: "10.10.0.0/24",
      pool: "10.10.0.0/24",
      data: {},
    });
    const record = JSON.parse((await store.get(keys.pool("10.10.0.0/24")))?.value ?? "{}") as PoolRecord;
    expect(record).toMatchObject({ subnet: "10.10.0.0/24", state: "ready", host: "h1" });
    expect(await refs(store, "10.10.0.0/24")).toEqual(["h1"]);
  });

  it("refuses invalid subnets, IPv6 and prefixes outside /8../30", async () => {
    const { pools } = setup();
    expect(error(await pools.requestPool(req("h1", { pool: "10.0.0.1/24" })))).toBe("invalid subnet 10.0.0.1/24: it should be 10.0.0.0/24");
    expect(error(await pools.requestPool(req("h1", { pool: "10.0.0.0/31" })))).toContain("between /8 and /30");
    expect(error(await pools.requestPool(req("h1", { pool: "fd00::/64", v6: true })))).toBe(
      "IPv6 pools are not supported yet: tsoverlay allocates IPv4 pools only",
    );
  });

  it("refuses a subnet that overlaps a different pool of the cluster, either way round", async () => {
    const { store, pools } = setup();
    value(await pools.requestPool(req("h1", { pool: "10.0.1.0/24" })));
    expect(error(await pools.requestPool(req("h2", { pool: "10.0.0.0/16" })))).toBe("pool 10.0.0.0/16 overlaps 10.0.1.0/24, already in use in the cluster");
    value(await pools.requestPool(req("h1", { pool: "10.1.0.0/16" })));
    expect(error(await pools.requestPool(req("h2", { pool: "10.1.7.0/24" })))).toBe("pool 10.1.7.0/24 overlaps 10.1.0.0/16, already in use in the cluster");
    expect((await poolSubnets(store)).sort()).toEqual(["10.0.1.0/24", "10.1.0.0/16"]);
  });

  it("refuses a second request for a pool the host already holds with Docker's overlap error, and releases idempotently", async () => {
    const { store, pools } = setup();
    const first = value(await pools.requestPool(req("h1", { pool: "10.10.0.0/24" })));
    expect(error(await pools.requestPool(req("h1", { pool: "10.10.0.0/24" })))).toBe(
      "invalid pool request: Pool overlaps with other one on this address space (10.10.0.0/24 is already in use by a tsoverlay network on this host)",
    );
    expect(await refs(store, "10.10.0.0/24")).toEqual(["h1"]);
    value(await pools.releasePool({ hostId: "h1", poolId: first.poolId }));
    expect(await store.get(keys.pool("10.10.0.0/24"))).toBeUndefined();
    // A replayed release (the teardown queue runs at least once) changes nothing.
    value(await pools.releasePool({ hostId: "h1", poolId: first.poolId }));
    value(await pools.requestPool(req("h1", { pool: "10.10.0.0/24" })));
    expect(await refs(store, "10.10.0.0/24")).toEqual(["h1"]);
  });

  it("keeps the pool for other hosts; the last release deletes pool, refs, addresses and name", async () => {
    const { store, pools, addresses } = setup();
    const a = value(await pools.requestPool(req("h1", { pool: "10.10.0.0/24", name: "blue" })));
    const b = value(await pools.requestPool(req("h2", { pool: "10.10.0.0/24" })));
    expect(b.poolId).toBe(a.poolId);
    expect(await refs(store, "10.10.0.0/24")).toEqual(["h1", "h2"]);
    value(await addresses.requestAddress({ hostId: "h1", poolId: a.poolId, gateway: true }));
    value(await addresses.requestAddress({ hostId: "h2", poolId: b.poolId }));

    value(await pools.releasePool({ hostId: "h1", poolId: a.poolId }));
    expect(await refs(store, "10.10.0.0/24")).toEqual(["h2"]);
    expect(await store.list(keys.addresses("10.10.0.0/24"))).toHaveLength(2);
    expect((await store.get(keys.name("blue")))?.value).toBe("10.10.0.0/24");

    value(await pools.releasePool({ hostId: "h2", poolId: b.poolId }));
    expect(await store.list(keys.pool("10.10.0.0/24"))).toEqual([]);
    expect(await store.list(keys.addresses("10.10.0.0/24"))).toEqual([]);
    expect(await store.get(keys.name("blue"))).toBeUndefined();
  });

  it("releasing an unknown pool or one the host does not hold changes nothing; a malformed ID is refused", async () => {
    const { store, pools } = setup();
    value(await pools.releasePool({ hostId: "h1", poolId: "10.99.0.0/24" }));
    value(await pools.requestPool(req("h1", { pool: "10.10.0.0/24" })));
    value(await pools.releasePool({ hostId: "h2", poolId: "10.10.0.0/24" }));
    expect(await refs(store, "10.10.0.0/24")).toEqual(["h1"]);
    expect(error(await pools.releasePool({ hostId: "h1", poolId: "nonsense" }))).toContain("invalid pool ID nonsense");
  });
});

describe("sub-pools (--ip-range)", () => {
  it("encodes a sub-pool inside the pool in the PoolID", async () => {
    const { pools } = setup();
    expect(value(await pools.requestPool(req("h1", { pool: "10.10.0.0/24", subPool: "10.10.0.128/25" })))).toEqual({
      poolId: "10.10.0.0/24|10.10.0.128/25",
      pool: "10.10.0.0/24",
      data: {},
    });
  });

  it("refuses sub-pools outside the pool, malformed, or without a pool", async () => {
    const { store, pools } = setup();
    expect(error(await pools.requestPool(req("h1", { pool: "10.10.0.0/24", subPool: "10.10.1.0/25" })))).toBe(
      "sub-pool 10.10.1.0/25 is not inside pool 10.10.0.0/24",
    );
    expect(error(await pools.requestPool(req("h1", { pool: "10.10.0.0/24", subPool: "10.10.0.0/23" })))).toBe(
      "sub-pool 10.10.0.0/23 is not inside pool 10.10.0.0/24",
    );
    expect(error(await pools.requestPool(req("h1", { pool: "10.10.0.0/24", subPool: "10.10.0.129/25" })))).toBe(
      "invalid sub-pool 10.10.0.129/25: it should be 10.10.0.128/25",
    );
    expect(error(await pools.requestPool(req("h1", { subPool: "10.10.0.0/25" })))).toBe("sub-pool 10.10.0.0/25 needs a pool: give --subnet with --ip-range");
    expect(await poolSubnets(store)).toEqual([]);
  });
});

describe("requestPool without a subnet", () => {
  it("allocates the lowest free block of the range, skipping given pools", async () => {
    const { pools } = setup();
    expect(value(await pools.requestPool(req("h1"))).pool).toBe("10.213.0.0/24");
    value(await pools.requestPool(req("h1", { pool: "10.213.2.0/23" })));
    expect(value(await pools.requestPool(req("h2"))).pool).toBe("10.213.1.0/24");
    expect(value(await pools.requestPool(req("h2"))).pool).toBe("10.213.4.0/24");
  });

  it("gives a different pool to every unnamed request (libnetwork asks again on host-route clashes)", async () => {
    const { pools } = setup();
    const a = value(await pools.requestPool(req("h1")));
    const b = value(await pools.requestPool(req("h1")));
    expect(a.pool).not.toBe(b.pool);
  });

  it("reuses a released block", async () => {
    const { pools } = setup();
    const a = value(await pools.requestPool(req("h1")));
    value(await pools.requestPool(req("h1")));
    value(await pools.releasePool({ hostId: "h1", poolId: a.poolId }));
    expect(value(await pools.requestPool(req("h2"))).pool).toBe(a.pool);
  });

  it("fails clearly when the range is exhausted", async () => {
    const { pools } = setup({ poolRange: "10.213.0.0/23", poolSize: 24 });
    value(await pools.requestPool(req("h1")));
    value(await pools.requestPool(req("h2")));
    expect(error(await pools.requestPool(req("h3")))).toBe("no free /24 pool left in the cluster pool range 10.213.0.0/23");
    expect(error(await pools.requestPool(req("h3", { name: "late" })))).toBe("no free /24 pool left in the cluster pool range 10.213.0.0/23");
  });

  it("gives 20 concurrent requests distinct, non-overlapping pools", async () => {
    const { store, pools } = racingSetup();
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => pools.requestPool(req(`h${i % 3}`))));
    const subnets = results.map((r) => value(Subnet.parse(value(r).pool)));
    expect(new Set(subnets.map(String)).size).toBe(20);
    for (const [i, a] of subnets.entries()) {
      for (const b of subnets.slice(i + 1)) expect(a.overlaps(b)).toBe(false);
    }
    expect(subnets.map(String).sort()).toEqual((await poolSubnets(store)).sort());
  });
});

describe("named pools (--ipam-opt name=…)", () => {
  it("gives every host the pool bound to the name", async () => {
    const { store, pools } = setup();
    const a = value(await pools.requestPool(req("h1", { name: "blue" })));
    const b = value(await pools.requestPool(req("h2", { name: "blue" })));
    expect(a).toEqual({ poolId: "10.213.0.0/24", pool: "10.213.0.0/24", data: {} });
    expect(b).toEqual(a);
    // One network per subnet and host: the same name again on h2 is a second network there.
    expect(error(await pools.requestPool(req("h2", { name: "blue" })))).toContain("Pool overlaps with other one on this address space");
    expect(value(await pools.requestPool(req("h1", { name: "red" }))).pool).toBe("10.213.1.0/24");
    expect((await store.get(keys.name("blue")))?.value).toBe("10.213.0.0/24");
    expect(await refs(store, "10.213.0.0/24")).toEqual(["h1", "h2"]);
  });

  it("binds a name given with a subnet, and refuses a name bound elsewhere", async () => {
    const { store, pools } = setup();
    value(await pools.requestPool(req("h1", { pool: "10.10.0.0/24", name: "blue" })));
    expect(value(await pools.requestPool(req("h2", { name: "blue" }))).pool).toBe("10.10.0.0/24");
    expect(error(await pools.requestPool(req("h2", { pool: "10.20.0.0/24", name: "blue" })))).toBe(
      "pool name blue is already bound to pool 10.10.0.0/24 in the cluster, not 10.20.0.0/24",
    );
    // The refused request left nothing behind.
    expect(await poolSubnets(store)).toEqual(["10.10.0.0/24"]);
    expect(error(await pools.requestPool(req("h1", { name: "no/slash" })))).toContain('invalid pool name "no/slash"');
  });

  it("gives concurrent hosts asking for the same new name one pool", async () => {
    const { store, pools } = racingSetup();
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => pools.requestPool(req(`h${i}`, { name: "green" }))));
    expect(new Set(results.map((r) => value(r).pool)).size).toBe(1);
    expect(await poolSubnets(store)).toHaveLength(1);
    expect(await refs(store, value(results[0] as Result<{ pool: string }>).pool)).toHaveLength(6);
  });
});

describe("pool races", () => {
  it("lets exactly one of two concurrent overlapping subnets in", async () => {
    for (let round = 0; round < 40; round++) {
      const { store, pools } = racingSetup();
      const [big, small] = await Promise.all([pools.requestPool(req("h1", { pool: "10.0.0.0/16" })), pools.requestPool(req("h2", { pool: "10.0.1.0/24" }))]);
      expect([big.ok, small.ok].filter(Boolean)).toHaveLength(1);
      const refused = big.ok ? small : big;
      expect(error(refused)).toMatch(/overlaps .*, already in use in the cluster/);
      expect(await poolSubnets(store)).toHaveLength(1);
    }
  });

  it("keeps refs and pool record consistent when a host joins while the last one leaves", async () => {
    for (let round = 0; round < 40; round++) {
      const { store, pools } = racingSetup();
      const pool = "10.10.0.0/24";
      value(await pools.requestPool(req("h1", { pool })));
      const [released, joined] = await Promise.all([pools.releasePool({ hostId: "h1", poolId: pool }), pools.requestPool(req("h2", { pool }))]);
      value(released);
      value(joined);
      expect(await refs(store, pool)).toEqual(["h2"]);
      const record = await store.get(keys.pool(pool));
      expect(record && (JSON.parse(record.value) as PoolRecord).state).toBe("ready");
    }
  });

  it("takes over a claim left behind by a host that died", async () => {
    let clock = Date.parse("2025-01-01T00:00:00Z");
    const { store, pools } = setup(undefined, () => clock);
    const stale: PoolRecord = { subnet: "10.10.0.0/24", state: "claiming", uid: "dead", host: "h9", at: new Date(clock).toISOString() };
    await store.put(keys.pool("10.10.0.0/24"), JSON.stringify(stale));
    clock += 60_000;
    expect(value(await pools.requestPool(req("h1", { pool: "10.10.0.0/24" }))).pool).toBe("10.10.0.0/24");
    const record = JSON.parse((await store.get(keys.pool("10.10.0.0/24")))?.value ?? "{}") as PoolRecord;
    expect(record).toMatchObject({ state: "ready", host: "h1" });
  });
});
