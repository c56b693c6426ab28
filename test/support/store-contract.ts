/**
 * The Store contract (driver/contracts/store.ts) as one suite, run against every
 * implementation: the in-memory fake (test/unit/memory-store.test.ts), the embedded
 * store (test/unit/embedded-store.test.ts) and Consul (test/e2e/consul-store.test.ts).
 *
 * Why one suite: the domain is unit-tested on the fake and runs on the other two, so
 * the fake is only worth trusting if all three answer the same cases the same way.
 * Three copies of the same tests drift (each had assertions the others lacked); one
 * copy cannot. Where the stores really differ the difference is an option that each
 * caller states (`indexes`, `watchDelivery`), never a silent skip. What only one store
 * has (files on disk, sessions and TTLs, outages, a second independent client) stays
 * in that store's own test file, beside its call of `storeContract`.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { StoreError, type Store } from "../../driver/contracts/store.js";
import { eventually, quiet } from "./eventually.js";
import { incrementWithRetry, keysOf } from "./store-helpers.js";

/** What one case works on. */
export interface StoreUnderTest {
  store: Store;
  /**
   * A second client of the same data, to show that what one writes the other sees.
   * The in-process stores have one client per data set: they pass `store` again.
   */
  other: Store;
  /** Every key of the case lives under this prefix: "" for a store of the case's own, a fresh one on a shared agent. */
  ns: string;
  /** Closes both clients (again, if the case closed one) and removes whatever `open` made. */
  dispose(): Promise<void>;
}

export interface StoreContractOptions {
  /** Called before every case: each case gets a store (or a prefix) no other case touches. */
  open(): Promise<StoreUnderTest>;
  /**
   * How modify indexes advance. "dense": the store counts only its own mutations, so a
   * fresh store's first write has index 1 and each mutation takes the next one (the
   * in-process key space). "increasing": they only grow, with gaps (Consul's Raft index
   * also counts sessions and every other client's writes).
   */
  indexes: "dense" | "increasing";
  /**
   * When a watch hears of a change. "before-the-write-resolves": the in-process stores
   * call watchers inside the mutation, so a check right after `await put(…)` must see
   * the call. `{ withinMs }`: a blocking query (Consul) wakes after the write, and the
   * call must come within that long.
   */
  watchDelivery: "before-the-write-resolves" | { withinMs: number };
  /** Timeout of each case, for a store that answers over the network (default: the project's). */
  timeoutMs?: number;
}

export function storeContract(name: string, options: StoreContractOptions): void {
  const dense = options.indexes === "dense";
  const delivery = options.watchDelivery;
  const sync = delivery === "before-the-write-resolves";
  const timeout = options.timeoutMs;

  /** The first call of a watch: one microtask after `watch()` returns, or within 5 s over the network. */
  async function firstCall(calls: unknown[], what: string): Promise<void> {
    if (sync) await Promise.resolve();
    else await eventually(what, () => calls.length > 0, { timeoutMs: 5_000 });
    expect(calls, what).toHaveLength(1);
  }

  /** The watch's `n`th call: already made when the write resolved, or made soon after. */
  async function nthCall(calls: unknown[], n: number, what: string): Promise<void> {
    if (!sync) await eventually(what, () => calls.length >= n, { timeoutMs: 5_000 });
    expect(calls, what).toHaveLength(n);
  }

  describe(`${name} keeps the Store contract`, () => {
    let t: StoreUnderTest;
    const opened: StoreUnderTest[] = [];
    beforeEach(async () => {
      t = await options.open();
      opened.push(t);
    }, timeout);
    afterEach(async () => {
      for (const each of opened.splice(0)) await each.dispose();
    }, timeout);

    it(
      "get returns what was put, empty values too, with a modify index that grows with every write to any key",
      async () => {
        const { store, other, ns } = t;
        expect(await store.get(`${ns}missing`)).toBeUndefined();
        await store.put(`${ns}k`, "v1");
        const first = (await store.get(`${ns}k`))!;
        await other.put(`${ns}other`, "x");
        await store.put(`${ns}k`, "v2");
        const between = (await other.get(`${ns}other`))!;
        const second = (await other.get(`${ns}k`))!;
        await other.put(`${ns}k`, "");
        const third = (await store.get(`${ns}k`))!;
        expect(first).toEqual({ key: `${ns}k`, value: "v1", modifyIndex: first.modifyIndex });
        expect(between).toEqual({ key: `${ns}other`, value: "x", modifyIndex: between.modifyIndex });
        expect(second).toEqual({ key: `${ns}k`, value: "v2", modifyIndex: second.modifyIndex });
        expect(third).toEqual({ key: `${ns}k`, value: "", modifyIndex: third.modifyIndex });
        expect(between.modifyIndex).toBeGreaterThan(first.modifyIndex);
        expect(second.modifyIndex).toBeGreaterThan(between.modifyIndex);
        expect(third.modifyIndex).toBeGreaterThan(second.modifyIndex);
        if (dense) expect([first, between, second, third].map((kv) => kv.modifyIndex)).toEqual([1, 2, 3, 4]);
      },
      timeout,
    );

    it(
      "cas: 0 creates only if absent, a stale index loses, the current index wins",
      async () => {
        const { store, other, ns } = t;
        const key = `${ns}k`;
        expect(await store.cas(key, "first", 0)).toBe(true);
        expect(await other.cas(key, "again", 0)).toBe(false);
        expect((await store.get(key))?.value).toBe("first");
        const seen = (await store.get(key))!;
        await other.put(key, "second");
        expect(await store.cas(key, "stale", seen.modifyIndex)).toBe(false);
        expect((await store.get(key))?.value).toBe("second");
        const current = (await store.get(key))!;
        expect(await store.cas(key, "third", current.modifyIndex)).toBe(true);
        const after = (await other.get(key))!;
        expect(after).toEqual({ key, value: "third", modifyIndex: after.modifyIndex });
        expect(after.modifyIndex).toBeGreaterThan(current.modifyIndex);
        if (dense) expect(after.modifyIndex).toBe(current.modifyIndex + 1);
      },
      timeout,
    );

    it(
      "delete with an index acts only if unchanged; deleting an absent key succeeds, with or without an index",
      async () => {
        const { store, ns } = t;
        const key = `${ns}k`;
        await store.put(key, "v1");
        const seen = (await store.get(key))!;
        await store.put(key, "v2");
        expect(await store.delete(key, seen.modifyIndex)).toBe(false);
        expect(await store.get(key)).toBeDefined();
        expect(await store.delete(key, (await store.get(key))!.modifyIndex)).toBe(true);
        expect(await store.get(key)).toBeUndefined();
        expect(await store.delete(key)).toBe(true);
        expect(await store.delete(key, 42)).toBe(true);
      },
      timeout,
    );

    it(
      "list is sorted by key with directory prefix semantics, and deleteTree removes exactly what list shows",
      async () => {
        const { store, ns } = t;
        for (const key of ["a/b/y/z", "a/bc/x", "a/b", "a/b/x", "a/c", "b"]) await store.put(`${ns}${key}`, key);
        const under = (prefix: string): Promise<string[]> => store.list(`${ns}${prefix}`).then(keysOf);
        const keys = (...names: string[]): string[] => names.map((key) => `${ns}${key}`);
        expect(await under("a/b")).toEqual(keys("a/b", "a/b/x", "a/b/y/z"));
        expect(await under("a/b/")).toEqual(keys("a/b/x", "a/b/y/z"));
        expect(await under("")).toEqual(keys("a/b", "a/b/x", "a/b/y/z", "a/bc/x", "a/c", "b"));
        expect((await store.list(`${ns}a/c`)).map((kv) => [kv.key, kv.value])).toEqual([[`${ns}a/c`, "a/c"]]);
        expect(await store.list(`${ns}nothing`)).toEqual([]);
        await store.deleteTree(`${ns}a/b`);
        expect(await under("")).toEqual(keys("a/bc/x", "a/c", "b"));
        await store.deleteTree(`${ns}a/`);
        expect(await under("")).toEqual(keys("b"));
        await store.deleteTree(ns);
        expect(await store.list(ns)).toEqual([]);
      },
      timeout,
    );

    it(
      "50 concurrent CAS-retry increments, alternating between two clients, all land",
      async () => {
        const { store, other, ns } = t;
        const key = `${ns}counter`;
        await Promise.all(Array.from({ length: 50 }, (_, i) => incrementWithRetry(i % 2 ? store : other, key)));
        expect((await store.get(key))?.value).toBe("50");
      },
      timeout,
    );

    it(
      "watch delivers the full list at once, then after every change under the prefix by any client, until stopped",
      async () => {
        const { store, other, ns } = t;
        await store.put(`${ns}net/1`, "one");
        const calls: { at: number; keys: string[] }[] = [];
        const errors: Error[] = [];
        const watch = store.watch(
          `${ns}net`,
          (kvs) => calls.push({ at: Date.now(), keys: keysOf(kvs) }),
          (err) => errors.push(err),
        );
        expect(calls).toEqual([]); // the caller holds the handle before the first call
        try {
          await firstCall(calls, "the initial watch call");
          expect(calls[0]!.keys).toEqual([`${ns}net/1`]);
          if (!sync) await quiet(300, "the watch parks in its blocking query, so the next write is seen by a query that wakes up");

          const writtenAt = Date.now();
          await other.put(`${ns}net/2`, "two");
          await nthCall(calls, 2, "the watch to see net/2");
          expect(calls[1]!.keys).toEqual([`${ns}net/1`, `${ns}net/2`]);
          if (!sync) expect(calls[1]!.at - writtenAt).toBeLessThan(delivery.withinMs);

          await other.put(`${ns}network/x`, "a sibling, not under the prefix");
          await other.put(`${ns}netx`, "a sibling, not under the prefix");
          await other.put(`${ns}other`, "unrelated");
          await other.delete(`${ns}net/1`);
          await nthCall(calls, 3, "the watch to see the delete");

          await other.deleteTree(`${ns}net/`);
          await nthCall(calls, 4, "the watch to see the deleteTree");
          expect(calls.map((call) => call.keys)).toEqual([[`${ns}net/1`], [`${ns}net/1`, `${ns}net/2`], [`${ns}net/2`], []]);
        } finally {
          watch.stop();
        }
        await other.put(`${ns}net/3`, "after stop");
        if (!sync) await quiet(delivery.withinMs, "a stopped watch must stay silent as long as a change takes to arrive");
        expect(calls).toHaveLength(4);
        expect(errors).toEqual([]);
      },
      timeout,
    );

    it(
      "a throwing watch callback is reported through onError as a StoreError and does not fail the write",
      async () => {
        const { store, other, ns } = t;
        const onError = vi.fn<(err: Error) => void>();
        const watch = store.watch(
          `${ns}k`,
          () => {
            throw new Error("boom");
          },
          onError,
        );
        try {
          await firstCall(onError.mock.calls, "the initial call's error");
          await other.put(`${ns}k`, "v");
          await nthCall(onError.mock.calls, 2, "the error of the call after the put");
        } finally {
          watch.stop();
        }
        const error = onError.mock.calls[0]![0];
        expect(error).toBeInstanceOf(StoreError);
        expect(error.message).toMatch(new RegExp(`^store watch ${ns}k: .*boom$`));
        expect((error as StoreError).transient).toBe(false);
      },
      timeout,
    );

    it(
      "an ephemeral key is visible to other clients, takes updates, disappears on release (twice is fine) and stays on detach",
      async () => {
        const { store, other, ns } = t;
        const released = await store.putEphemeral(`${ns}hosts/a`, "alive", 15);
        const detached = await store.putEphemeral(`${ns}hosts/b`, "alive", 15);
        expect(released.key).toBe(`${ns}hosts/a`);
        expect((await other.get(`${ns}hosts/a`))?.value).toBe("alive");
        await detached.update("busy");
        expect((await other.get(`${ns}hosts/b`))?.value).toBe("busy");

        await released.release();
        await released.release();
        expect(await other.get(`${ns}hosts/a`)).toBeUndefined();
        expect(keysOf(await other.list(`${ns}hosts/`))).toEqual([`${ns}hosts/b`]);

        // A stopping plugin detaches: the key must not vanish with it (it lapses later, where the store has TTLs).
        detached.detach();
        expect((await other.get(`${ns}hosts/b`))?.value).toBe("busy");
      },
      timeout,
    );

    it(
      "every write rejects an empty key and a leading '/' with a StoreError naming the operation",
      async () => {
        const { store } = t;
        const writes: [string, (key: string) => Promise<unknown>][] = [
          ["put", (key) => store.put(key, "v")],
          ["cas", (key) => store.cas(key, "v", 0)],
          ["delete", (key) => store.delete(key)],
          ["putEphemeral", (key) => store.putEphemeral(key, "v", 15)],
        ];
        for (const [op, write] of writes) {
          for (const key of ["/abs", ""]) {
            const error = await write(key).then(
              () => "succeeded",
              (err: unknown) => err,
            );
            expect(error, `${op} ${JSON.stringify(key)}`).toBeInstanceOf(StoreError);
            expect((error as StoreError).message).toMatch(new RegExp(`^store ${op} ${key}: invalid key`));
          }
        }
      },
      timeout,
    );

    it(
      "after close every call fails with a StoreError saying so, and a watch reports it instead of throwing",
      async () => {
        const { store, ns } = t;
        const key = `${ns}k`;
        await store.close();
        const calls: [string, () => Promise<unknown>][] = [
          ["get", () => store.get(key)],
          ["put", () => store.put(key, "v")],
          ["cas", () => store.cas(key, "v", 0)],
          ["delete", () => store.delete(key)],
          ["deleteTree", () => store.deleteTree(key)],
          ["list", () => store.list(key)],
          ["putEphemeral", () => store.putEphemeral(key, "v", 15)],
        ];
        for (const [op, call] of calls) {
          const error = await call().then(
            () => "succeeded",
            (err: unknown) => err,
          );
          expect(error, op).toBeInstanceOf(StoreError);
          expect((error as StoreError).message).toBe(`store ${op} ${key}: store is closed`);
        }

        const onChange = vi.fn();
        const onError = vi.fn<(err: Error) => void>();
        const watch = store.watch(key, onChange, onError);
        await firstCall(onError.mock.calls, "the closed store's watch to report");
        watch.stop();
        expect(onError).toHaveBeenCalledWith(expect.objectContaining({ message: `store watch ${key}: store is closed` }));
        expect(onChange).not.toHaveBeenCalled();
      },
      timeout,
    );
  });
}
