import { describe, expect, it } from "vitest";
import { isUnderPrefix } from "../../driver/store/keyspace.js";
import { MemoryStore } from "../support/memory-store.js";
import { storeContract } from "../support/store-contract.js";

describe("isUnderPrefix", () => {
  it.each([
    ["a/b", "a/b", true],
    ["a/b/c", "a/b", true],
    ["a/bc", "a/b", false],
    ["a/bc/d", "a/b", false],
    ["a/b", "a/b/", false],
    ["a/b/c", "a/b/", true],
    ["anything", "", true],
  ])("key %s under prefix %s → %s", (key, prefix, expected) => {
    expect(isUnderPrefix(key, prefix)).toBe(expected);
  });
});

storeContract("MemoryStore", {
  open: async () => {
    const store = new MemoryStore();
    return { store, other: store, ns: "", dispose: () => store.close() };
  },
  indexes: "dense",
  watchDelivery: "before-the-write-resolves",
});

describe("MemoryStore's own", () => {
  it("lastIndex is the index of the last mutation, across keys (0 before the first)", async () => {
    const store = new MemoryStore();
    expect(store.lastIndex).toBe(0);
    await store.put("k", "v1");
    await store.put("other", "x");
    await store.put("k", "v2");
    expect(store.lastIndex).toBe(3);
    expect((await store.get("k"))?.modifyIndex).toBe(3);
  });
});
