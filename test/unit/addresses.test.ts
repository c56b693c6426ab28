import { describe, expect, it } from "vitest";
import { keys } from "../../driver/cluster/keys.js";
import { createLogger } from "../../lib/log.js";
import type { Result } from "../../lib/result.js";
import { MemoryStore } from "../support/memory-store.js";
import { AddressAllocator, type AddressRecord } from "../../driver/ipam/addresses.js";
import { jittery, value, error } from "../support/store-helpers.js";
import { PoolAllocator } from "../../driver/ipam/pools.js";

const log = createLogger("silent");

/** A store with `pool` created (and held by h1, h2, h3), plus an allocator on it. */
async function setup(pool: string, subPool?: string, { jitter = false } = {}) {
  const store = new MemoryStore();
  const pools = new PoolAllocator(store, { poolRange: "10.213.0.0/16", poolSize: 24 }, log);
  let poolId = "";
  for (const hostId of ["h1", "h2", "h3"]) {
    poolId = value(await pools.requestPool({ hostId, pool, subPool, v6: false })).poolId;
  }
  const addresses = new AddressAllocator(jitter ? jittery(store) : store, log);
  return { store, pools, addresses, poolId };
}

const address = (result: Result<{ address: string }, unknown>): string => value(result).address;

describe("requestAddress", () => {
  it("hands out free addresses in order with the pool's prefix and records who holds it", async () => {
    const { store, addresses, poolId } = await setup("10.10.0.0/24");
    expect(value(await addresses.requestAddress({ hostId: "h1", poolId, gateway: true }))).toEqual({
      address: "10.10.0.1/24",
      data: {},
    });
    expect(address(await addresses.requestAddress({ hostId: "h1", poolId }))).toBe("10.10.0.2/24");
    expect(
      address(
        await addresses.requestAddress({
          hostId: "h2",
          poolId,
          mac: "02:42:0a:0a:00:03",
        }),
      ),
    ).toBe("10.10.0.3/24");
    const record = JSON.parse((await store.get(keys.address("10.10.0.0/24", "10.10.0.3")))?.value ?? "{}") as AddressRecord;
    expect(record).toMatchObject({ host: "h2", kind: "endpoint", mac: "02:42:0a:0a:00:03" });
    expect(Date.parse(record.at)).not.toBeNaN();
  });

  it("refuses pools that do not exist", async () => {
    const { addresses } = await setup("10.10.0.0/24");
    expect(error(await addresses.requestAddress({ hostId: "h1", poolId: "10.99.0.0/24" }))).toBe("pool 10.99.0.0/24 does not exist in the cluster");
    expect(error(await addresses.requestAddress({ hostId: "h1", poolId: "bad" }))).toContain("invalid pool ID bad");
  });

  it("gives a requested address once, and refuses it when taken", async () => {
    const { addresses, poolId } = await setup("10.10.0.0/24");
    expect(address(await addresses.requestAddress({ hostId: "h1", poolId, address: "10.10.0.5" }))).toBe("10.10.0.5/24");
    expect(error(await addresses.requestAddress({ hostId: "h2", poolId, address: "10.10.0.5" }))).toBe(
      "address 10.10.0.5 is already in use in pool 10.10.0.0/24",
    );
    // The lowest-free walk goes around it.
    expect(address(await addresses.requestAddress({ hostId: "h1", poolId }))).toBe("10.10.0.1/24");
  });

  it.each([
    ["10.10.1.5", "address 10.10.1.5 is not in pool 10.10.0.0/24"],
    ["10.10.0.0", "address 10.10.0.0 is the network address of pool 10.10.0.0/24"],
    ["10.10.0.255", "address 10.10.0.255 is the broadcast address of pool 10.10.0.0/24"],
    ["10.10.0", "invalid IPv4 address 10.10.0"],
  ])("refuses the requested address %s", async (wanted, message) => {
    const { addresses, poolId } = await setup("10.10.0.0/24");
    expect(error(await addresses.requestAddress({ hostId: "h1", poolId, address: wanted }))).toBe(message);
  });

  it("exhausts a /30 after its two usable addresses", async () => {
    const { addresses, poolId } = await setup("10.10.0.0/30");
    expect(address(await addresses.requestAddress({ hostId: "h1", poolId }))).toBe("10.10.0.1/30");
    expect(address(await addresses.requestAddress({ hostId: "h2", poolId }))).toBe("10.10.0.2/30");
    expect(error(await addresses.requestAddress({ hostId: "h3", poolId }))).toBe("no available IPv4 addresses in pool 10.10.0.0/30");
  });
});

describe("sub-pools", () => {
  it("keeps automatic and requested addresses inside the sub-pool", async () => {
    const { addresses, poolId } = await setup("10.10.0.0/24", "10.10.0.252/30");
    expect(poolId).toBe("10.10.0.0/24|10.10.0.252/30");
    expect(address(await addresses.requestAddress({ hostId: "h1", poolId, gateway: true }))).toBe("10.10.0.1/24");
    expect(address(await addresses.requestAddress({ hostId: "h1", poolId }))).toBe("10.10.0.252/24");
    expect(address(await addresses.requestAddress({ hostId: "h2", poolId }))).toBe("10.10.0.253/24");
    expect(address(await addresses.requestAddress({ hostId: "h2", poolId }))).toBe("10.10.0.254/24");
    // .255 is the pool's broadcast even though the sub-pool contains it.
    expect(error(await addresses.requestAddress({ hostId: "h3", poolId }))).toBe("no available IPv4 addresses in range 10.10.0.252/30 of pool 10.10.0.0/24");
    expect(error(await addresses.requestAddress({ hostId: "h3", poolId, address: "10.10.0.9" }))).toBe(
      "address 10.10.0.9 is outside the range 10.10.0.252/30 of pool 10.10.0.0/24",
    );
  });
});

describe("gateway", () => {
  it("is shared by every host of the network", async () => {
    const { store, addresses, poolId } = await setup("10.10.0.0/24");
    expect(address(await addresses.requestAddress({ hostId: "h1", poolId, address: "", gateway: true }))).toBe("10.10.0.1/24");
    expect(address(await addresses.requestAddress({ hostId: "h2", poolId, gateway: true }))).toBe("10.10.0.1/24");
    expect(address(await addresses.requestAddress({ hostId: "h3", poolId, address: "10.10.0.1", gateway: true }))).toBe("10.10.0.1/24");
    expect(await store.list(keys.addresses("10.10.0.0/24"))).toHaveLength(1);
  });

  it("follows the first host's --gateway and refuses a different one", async () => {
    const { addresses, poolId } = await setup("10.10.0.0/24");
    expect(address(await addresses.requestAddress({ hostId: "h1", poolId, address: "10.10.0.254", gateway: true }))).toBe("10.10.0.254/24");
    expect(address(await addresses.requestAddress({ hostId: "h2", poolId, gateway: true }))).toBe("10.10.0.254/24");
    expect(error(await addresses.requestAddress({ hostId: "h3", poolId, address: "10.10.0.1", gateway: true }))).toBe(
      "gateway mismatch in pool 10.10.0.0/24: the cluster's gateway is 10.10.0.254, not 10.10.0.1",
    );
  });

  it("refuses a gateway address an endpoint already holds", async () => {
    const { addresses, poolId } = await setup("10.10.0.0/24");
    value(await addresses.requestAddress({ hostId: "h1", poolId, address: "10.10.0.1" }));
    expect(error(await addresses.requestAddress({ hostId: "h1", poolId, gateway: true }))).toBe(
      "gateway address 10.10.0.1 is already in use in pool 10.10.0.0/24",
    );
  });

  it("ends up single when hosts ask for different gateways at once", async () => {
    for (let round = 0; round < 30; round++) {
      const { store, addresses, poolId } = await setup("10.10.0.0/24", undefined, { jitter: true });
      const results = await Promise.all([
        addresses.requestAddress({ hostId: "h1", poolId, address: "10.10.0.1", gateway: true }),
        addresses.requestAddress({ hostId: "h2", poolId, address: "10.10.0.254", gateway: true }),
        addresses.requestAddress({ hostId: "h3", poolId, gateway: true }),
      ]);
      const kvs = await store.list(keys.addresses("10.10.0.0/24"));
      expect(kvs).toHaveLength(1);
      const gateway = `${(kvs[0]?.key ?? "").split("/").pop()}/24`;
      for (const r of results) {
        if (r.ok) expect(r.value.address).toBe(gateway);
        else expect(r.error).toMatchObject({ cause: "conflict", message: expect.stringMatching(/^gateway mismatch in pool 10\.10\.0\.0\/24/) });
      }
      expect(results[2]?.ok).toBe(true);
    }
  });
});

describe("releaseAddress", () => {
  it("hands a freed address out again only after the rest of the pool (serial, wrapping round, like Docker's IPAM)", async () => {
    const { store, addresses, poolId } = await setup("10.10.0.0/29");
    // .1-.6 are the host addresses of a /29.
    expect(address(await addresses.requestAddress({ hostId: "h1", poolId }))).toBe("10.10.0.1/29");
    expect(address(await addresses.requestAddress({ hostId: "h1", poolId }))).toBe("10.10.0.2/29");
    value(await addresses.releaseAddress({ hostId: "h1", poolId, address: "10.10.0.1" }));
    expect(await store.get(keys.address("10.10.0.0/29", "10.10.0.1"))).toBeUndefined();
    // Not .1 again at once, whichever host asks next.
    expect(address(await addresses.requestAddress({ hostId: "h2", poolId }))).toBe("10.10.0.3/29");
    value(await addresses.releaseAddress({ hostId: "h2", poolId, address: "10.10.0.3" }));
    for (const want of ["10.10.0.4/29", "10.10.0.5/29", "10.10.0.6/29", "10.10.0.1/29", "10.10.0.3/29"]) {
      expect(address(await addresses.requestAddress({ hostId: "h1", poolId }))).toBe(want);
    }
    expect(error(await addresses.requestAddress({ hostId: "h1", poolId }))).toContain("no available IPv4 addresses");
    // A requested address does not move the cursor.
    value(await addresses.releaseAddress({ hostId: "h1", poolId, address: "10.10.0.5" }));
    value(await addresses.releaseAddress({ hostId: "h1", poolId, address: "10.10.0.2" }));
    expect(address(await addresses.requestAddress({ hostId: "h1", poolId, address: "10.10.0.2" }))).toBe("10.10.0.2/29");
    expect(address(await addresses.requestAddress({ hostId: "h1", poolId }))).toBe("10.10.0.5/29");
  });

  it("is idempotent, leaves the gateway with the pool and other hosts' addresses alone", async () => {
    const { store, addresses, poolId } = await setup("10.10.0.0/24");
    value(await addresses.requestAddress({ hostId: "h1", poolId, gateway: true }));
    value(await addresses.requestAddress({ hostId: "h2", poolId }));
    value(await addresses.releaseAddress({ hostId: "h1", poolId, address: "10.10.0.77" }));
    value(await addresses.releaseAddress({ hostId: "h1", poolId, address: "10.10.0.1" }));
    value(await addresses.releaseAddress({ hostId: "h1", poolId, address: "10.10.0.2" }));
    expect(await store.list(keys.addresses("10.10.0.0/24"))).toHaveLength(2);
    value(await addresses.releaseAddress({ hostId: "h2", poolId, address: "10.10.0.2" }));
    value(await addresses.releaseAddress({ hostId: "h2", poolId, address: "10.10.0.2" }));
    expect(await store.list(keys.addresses("10.10.0.0/24"))).toHaveLength(1);
  });

  it("refuses addresses that cannot be in the pool", async () => {
    const { addresses, poolId } = await setup("10.10.0.0/24");
    expect(error(await addresses.releaseAddress({ hostId: "h1", poolId, address: "10.20.0.1" }))).toBe("address 10.20.0.1 is not in pool 10.10.0.0/24");
    expect(error(await addresses.releaseAddress({ hostId: "h1", poolId, address: "nope" }))).toBe("invalid IPv4 address nope");
  });
});

describe("concurrency", () => {
  it("3 hosts × 30 containers at once: all 90 addresses distinct", async () => {
    const { store, addresses, poolId } = await setup("10.10.0.0/24", undefined, { jitter: true });
    value(await addresses.requestAddress({ hostId: "h1", poolId, gateway: true }));
    const requests = ["h1", "h2", "h3"].flatMap((hostId) => Array.from({ length: 30 }, () => addresses.requestAddress({ hostId, poolId })));
    const got = (await Promise.all(requests)).map(address);
    expect(new Set(got).size).toBe(90);
    expect(got).not.toContain("10.10.0.1/24");
    // Lowest first: exactly .2 … .91.
    expect(got.map((a) => Number(a.split("/")[0]?.split(".")[3])).sort((a, b) => a - b)).toEqual(Array.from({ length: 90 }, (_, i) => i + 2));
    const records = await store.list(keys.addresses("10.10.0.0/24"));
    expect(records).toHaveLength(91);
    const byHost = new Map<string, number>();
    for (const kv of records) {
      const record = JSON.parse(kv.value) as AddressRecord;
      if (record.kind === "endpoint") byHost.set(record.host, (byHost.get(record.host) ?? 0) + 1);
    }
    expect(Object.fromEntries(byHost)).toEqual({ h1: 30, h2: 30, h3: 30 });
  });

  it("fills a small pool exactly under contention, then refuses the rest", async () => {
    const { addresses, poolId } = await setup("10.10.0.0/28", undefined, { jitter: true });
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => addresses.requestAddress({ hostId: `h${i % 3}`, poolId })));
    const granted = results.filter((r) => r.ok).map(address);
    expect(new Set(granted).size).toBe(14);
    for (const r of results.filter((r) => !r.ok)) expect(error(r)).toBe("no available IPv4 addresses in pool 10.10.0.0/28");
  });
});
