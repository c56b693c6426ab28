import { describe, expect, it } from "vitest";
import { keys } from "../../driver/cluster/keys.js";
import { MemoryStore } from "../support/memory-store.js";
import { jittery, value, error } from "../support/store-helpers.js";
import { claimVni, releaseVni, validateVniRange } from "../../driver/ipam/vnis.js";

const range = { min: 4096, max: 16777215 };

describe("claimVni", () => {
  it("claims the lowest free VNI of the range, one per subnet, idempotently", async () => {
    const store = new MemoryStore();
    expect(value(await claimVni(store, { subnet: "10.1.0.0/24", range }))).toBe(4096);
    expect(value(await claimVni(store, { subnet: "10.2.0.0/24", range }))).toBe(4097);
    expect(value(await claimVni(store, { subnet: "10.1.0.0/24", range }))).toBe(4096);
    expect((await store.get(keys.vni(4097)))?.value).toBe("10.2.0.0/24");
    expect(await store.list(keys.vnis())).toHaveLength(2);
  });

  it("claims exactly a requested VNI, even outside the range", async () => {
    const store = new MemoryStore();
    expect(value(await claimVni(store, { subnet: "10.1.0.0/24", requested: 42, range }))).toBe(42);
    expect(value(await claimVni(store, { subnet: "10.1.0.0/24", requested: 42, range }))).toBe(42);
    expect(value(await claimVni(store, { subnet: "10.1.0.0/24", range }))).toBe(42);
    expect(error(await claimVni(store, { subnet: "10.2.0.0/24", requested: 42, range }))).toBe("VNI 42 is already used by network 10.1.0.0/24");
    expect(error(await claimVni(store, { subnet: "10.1.0.0/24", requested: 43, range }))).toBe("network 10.1.0.0/24 already uses VNI 42, not 43");
  });

  it("refuses invalid VNIs and ranges", async () => {
    const store = new MemoryStore();
    expect(error(await claimVni(store, { subnet: "10.1.0.0/24", requested: 0, range }))).toBe(
      "invalid VNI 0 for network 10.1.0.0/24: VNIs are integers in 1..16777215",
    );
    expect(error(await claimVni(store, { subnet: "10.1.0.0/24", requested: 16777216, range }))).toContain("invalid VNI 16777216");
    expect(error(await claimVni(store, { subnet: "10.1.0.0/24", range: { min: 10, max: 5 } }))).toBe("invalid VNI range 10-5: min is above max");
    expect(validateVniRange({ min: 1, max: 16777215 }).ok).toBe(true);
    expect(validateVniRange({ min: 1.5, max: 100 }).ok).toBe(false);
  });

  it("fails clearly when the range is exhausted", async () => {
    const store = new MemoryStore();
    const small = { min: 100, max: 101 };
    value(await claimVni(store, { subnet: "10.1.0.0/24", range: small }));
    value(await claimVni(store, { subnet: "10.2.0.0/24", range: small }));
    expect(error(await claimVni(store, { subnet: "10.3.0.0/24", range: small }))).toBe("no free VNI left in range 100-101 for network 10.3.0.0/24");
  });

  it("gives concurrent claims for different subnets distinct VNIs", async () => {
    const store = new MemoryStore();
    const shaky = jittery(store);
    const vnis = await Promise.all(Array.from({ length: 30 }, (_, i) => claimVni(shaky, { subnet: `10.${i}.0.0/24`, range })));
    expect(new Set(vnis.map(value)).size).toBe(30);
    expect(await store.list(keys.vnis())).toHaveLength(30);
  });

  it("gives concurrent claims for one subnet one VNI", async () => {
    for (let round = 0; round < 20; round++) {
      const store = new MemoryStore();
      const shaky = jittery(store);
      const vnis = await Promise.all(Array.from({ length: 5 }, () => claimVni(shaky, { subnet: "10.1.0.0/24", range })));
      expect(new Set(vnis.map(value)).size).toBe(1);
      expect(await store.list(keys.vnis())).toHaveLength(1);
    }
  });

  it("lets only one of two subnets requesting the same VNI at once have it", async () => {
    for (let round = 0; round < 20; round++) {
      const store = new MemoryStore();
      const shaky = jittery(store);
      const [a, b] = await Promise.all([
        claimVni(shaky, { subnet: "10.1.0.0/24", requested: 7, range }),
        claimVni(shaky, { subnet: "10.2.0.0/24", requested: 7, range }),
      ]);
      expect([a?.ok, b?.ok].filter(Boolean)).toHaveLength(1);
      const refused = a?.ok ? b : a;
      expect(refused && error(refused)).toMatch(/^VNI 7 is already used by network 10\.[12]\.0\.0\/24$/);
    }
  });
});

describe("releaseVni", () => {
  it("deletes the claim only for the subnet that owns it", async () => {
    const store = new MemoryStore();
    const vni = value(await claimVni(store, { subnet: "10.1.0.0/24", range }));
    expect(await releaseVni(store, vni, "10.2.0.0/24")).toBe(false);
    expect(await store.get(keys.vni(vni))).toBeDefined();
    expect(await releaseVni(store, vni, "10.1.0.0/24")).toBe(true);
    expect(await releaseVni(store, vni, "10.1.0.0/24")).toBe(false);
    expect(value(await claimVni(store, { subnet: "10.3.0.0/24", range }))).toBe(vni);
  });
});
