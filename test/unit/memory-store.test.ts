import { describe, expect, it, vi } from "vitest";
import { isUnderPrefix } from "../../driver/store/keyspace.js";
import { MemoryStore } from "../support/memory-store.js";
import { StoreError, type KV, type Store } from "../../driver/contracts/store.js";

async function incrementWithRetry(store: Store, key: string): Promise<void> {
  for (;;) {
    const current = await store.get(key);
    const next = String(Number(current?.value ?? "0") + 1);
    if (await store.cas(key, next, current?.modifyIndex ?? 0)) return;
  }
}

const keysOf = (kvs: KV[]): string[] => kvs.map((kv) => kv.key);

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

describe("MemoryStore", () => {
  it("gets what was put, with a global index that increases across keys", async () => {
    const store = new MemoryStore();
    expect(await store.get("k")).toBeUndefined();
    await store.put("k", "v1");
    await store.put("other", "x");
    await store.put("k", "v2");
    expect(await store.get("k")).toEqual({ key: "k", value: "v2", modifyIndex: 3 });
    expect((await store.get("other"))?.modifyIndex).toBe(2);
    expect(store.lastIndex).toBe(3);
  });

  it("cas with index 0 creates only if absent", async () => {
    const store = new MemoryStore();
    expect(await store.cas("k", "first", 0)).toBe(true);
    expect(await store.cas("k", "second", 0)).toBe(false);
    expect((await store.get("k"))?.value).toBe("first");
  });

  it("cas with a stale index loses and the current index wins", async () => {
    const store = new MemoryStore();
    await store.put("k", "v1");
    const seen = await store.get("k");
    await store.put("k", "v2");
    expect(await store.cas("k", "from-stale", seen!.modifyIndex)).toBe(false);
    const current = await store.get("k");
    expect(await store.cas("k", "v3", current!.modifyIndex)).toBe(true);
    const after = await store.get("k");
    expect(after?.value).toBe("v3");
    expect(after!.modifyIndex).toBeGreaterThan(current!.modifyIndex);
  });

  it("delete with an index acts only if unchanged; deleting an absent key succeeds", async () => {
    const store = new MemoryStore();
    await store.put("k", "v1");
    const seen = await store.get("k");
    await store.put("k", "v2");
    expect(await store.delete("k", seen!.modifyIndex)).toBe(false);
    expect(await store.get("k")).toBeDefined();
    expect(await store.delete("k", (await store.get("k"))!.modifyIndex)).toBe(true);
    expect(await store.get("k")).toBeUndefined();
    expect(await store.delete("k")).toBe(true);
    expect(await store.delete("k", 42)).toBe(true);
  });

  it("lists sorted by key with directory prefix semantics", async () => {
    const store = new MemoryStore();
    for (const key of ["a/b/y/z", "a/bc/x", "a/b", "a/b/x", "a/c", "b"]) await store.put(key, key);
    expect(keysOf(await store.list("a/b"))).toEqual(["a/b", "a/b/x", "a/b/y/z"]);
    expect(keysOf(await store.list("a/b/"))).toEqual(["a/b/x", "a/b/y/z"]);
    expect(keysOf(await store.list(""))).toEqual(["a/b", "a/b/x", "a/b/y/z", "a/bc/x", "a/c", "b"]);
    expect(await store.list("nope")).toEqual([]);
  });

  it("deleteTree removes only the prefix's subtree", async () => {
    const store = new MemoryStore();
    for (const key of ["a/b", "a/b/x", "a/bc/x", "a/c"]) await store.put(key, "v");
    await store.deleteTree("a/b");
    expect(keysOf(await store.list(""))).toEqual(["a/bc/x", "a/c"]);
    await store.deleteTree("a/");
    expect(await store.list("")).toEqual([]);
  });

  it("watch delivers the full list now and after every change under the prefix, until stopped", async () => {
    const store = new MemoryStore();
    await store.put("net/1", "one");
    const calls: string[][] = [];
    const watch = store.watch("net", (kvs) => calls.push(keysOf(kvs)));
    await Promise.resolve();
    expect(calls).toEqual([["net/1"]]);

    await store.put("net/2", "two");
    await store.put("network/x", "sibling, not under net");
    await store.put("other", "unrelated");
    await store.delete("net/1");
    expect(calls).toEqual([["net/1"], ["net/1", "net/2"], ["net/2"]]);

    watch.stop();
    await store.put("net/3", "three");
    expect(calls).toHaveLength(3);
  });

  it("a throwing watch callback is reported through onError and does not fail the write", async () => {
    const store = new MemoryStore();
    const onError = vi.fn();
    store.watch(
      "k",
      () => {
        throw new Error("boom");
      },
      onError,
    );
    await Promise.resolve();
    await store.put("k", "v");
    expect(onError).toHaveBeenCalledTimes(2);
    expect(onError.mock.calls[0]![0]).toBeInstanceOf(StoreError);
  });

  it("putEphemeral writes the key and release deletes it", async () => {
    const store = new MemoryStore();
    const handle = await store.putEphemeral("hosts/h1", "alive", 15);
    expect((await store.get("hosts/h1"))?.value).toBe("alive");
    await handle.release();
    await handle.release();
    expect(await store.get("hosts/h1")).toBeUndefined();
  });

  it("50 concurrent CAS-retry increments all land", async () => {
    const store = new MemoryStore();
    await Promise.all(Array.from({ length: 50 }, () => incrementWithRetry(store, "counter")));
    expect((await store.get("counter"))?.value).toBe("50");
  });

  it("rejects invalid keys and use after close with StoreError; a watch after close reports instead of throwing", async () => {
    const store = new MemoryStore();
    await expect(store.put("/abs", "v")).rejects.toBeInstanceOf(StoreError);
    await expect(store.put("", "v")).rejects.toThrow(/invalid key/);
    await store.close();
    await expect(store.get("k")).rejects.toThrow(/store get k: store is closed/);
    const onError = vi.fn();
    store.watch("k", () => undefined, onError);
    await Promise.resolve();
    expect(onError).toHaveBeenCalledWith(expect.objectContaining({ message: "store watch k: store is closed" }));
  });
});
