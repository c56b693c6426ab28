import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Outbox, type TeardownOp } from "../../driver/local/outbox.js";
import { StoreUnavailableError } from "../../driver/contracts/store.js";
import { createLogger } from "../../lib/log.js";
import { metrics } from "../../lib/metrics.js";
import { MemoryStore } from "../support/memory-store.js";

const log = createLogger("silent");
const withdraw = (subnet: string, endpointId: string): TeardownOp => ({ kind: "withdraw-endpoint", subnet, endpointId });
const release = (subnet: string, address: string): TeardownOp => ({ kind: "release-address", poolId: subnet, address });
const label = (op: TeardownOp): string =>
  op.kind === "withdraw-endpoint" ? `withdraw ${op.endpointId}` : op.kind === "release-address" ? `release ${op.address}` : op.kind;

async function failuresOf(op: string): Promise<number> {
  return (await metrics.teardownFailures.get()).values.find((v) => v.labels.op === op)?.value ?? 0;
}

/** Lets the queue's promises run (the memory store answers within its promise). */
async function settleMicrotasks(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

describe("the teardown queue", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("retries a step that keeps failing with a growing, capped pause, reports it, and lets other networks' steps go on while its own network's wait", async () => {
    const local = new MemoryStore();
    const ran: { what: string; at: number }[] = [];
    let poisoned = true;
    const run = async (op: TeardownOp): Promise<void> => {
      ran.push({ what: label(op), at: Date.now() });
      if (poisoned && op.kind === "withdraw-endpoint" && op.endpointId === "ep-bad") throw new Error("a bug in this step");
    };
    const box = await Outbox.open(local, run, { log, minFailRetryMs: 1_000, maxFailRetryMs: 8_000 });
    const before = await failuresOf("withdraw-endpoint");
    const t0 = Date.now();

    await box.add(withdraw("10.1.0.0/24", "ep-bad"));
    const behind = await box.add(release("10.1.0.0/24", "10.1.0.5")); // must not overtake the withdrawal
    const other = await box.add(withdraw("10.2.0.0/24", "ep-ok"));
    await settleMicrotasks();

    // The other network's step is done; this network's release waits behind its failing withdrawal.
    expect(ran.map((r) => r.what)).toEqual(["withdraw ep-bad", "withdraw ep-ok"]);
    expect(await box.settle(other, 0)).toBe(true);
    expect(await box.settle(behind, 5_000)).toBe(false); // answers at once: nothing to wait for while it is held up
    const st = box.status();
    expect(st.pending).toBe(2);
    expect(st.waitingFor).toBeUndefined();
    expect(st.failing).toEqual([{ seq: 1, op: "withdraw-endpoint", network: "10.1.0.0/24", attempts: 1, error: "a bug in this step", retryInMs: 1_000 }]);
    expect(await failuresOf("withdraw-endpoint")).toBe(before + 1);

    // Retried after 1, 2, 4, 8, then 8 s again (the cap).
    for (let i = 0; i < 5; i++) await vi.advanceTimersByTimeAsync(8_000);
    const attempts = ran.filter((r) => r.what === "withdraw ep-bad").map((r) => r.at - t0);
    const gaps = attempts.slice(1).map((at, i) => at - attempts[i]!);
    expect(gaps.slice(0, 5)).toEqual([1_000, 2_000, 4_000, 8_000, 8_000]);
    expect(ran.some((r) => r.what === "release 10.1.0.5")).toBe(false);
    expect(box.status().failing?.[0]?.attempts).toBe(attempts.length);
    expect(await failuresOf("withdraw-endpoint")).toBe(before + attempts.length);

    // The step works again: it is done, then the release behind it, in that order.
    poisoned = false;
    await vi.advanceTimersByTimeAsync(8_000);
    const order = ran.map((r) => r.what).filter((w) => w !== "withdraw ep-ok");
    expect(order.slice(-2)).toEqual(["withdraw ep-bad", "release 10.1.0.5"]);
    expect(box.status()).toEqual({ pending: 0 });
    expect(await local.list("local/outbox/")).toEqual([]);
    await box.close();
  });

  it("an allocation waits only for its own network's steps: another network's is served, its own is refused at once with the failing step's words", async () => {
    const local = new MemoryStore();
    const box = await Outbox.open(
      local,
      async (op) => {
        if (op.kind === "withdraw-endpoint") throw new Error("permission denied on the endpoint key");
      },
      { log, minFailRetryMs: 60_000 },
    );
    await box.add(withdraw("10.1.0.0/24", "ep-bad"));
    await settleMicrotasks();
    await expect(box.flush(10_000, "10.2.0.0/24")).resolves.toBeUndefined();
    // Its own network: the failing step is tried again now, fails again, and says so (no wait for the budget).
    const t = Date.now();
    await expect(box.flush(10_000, "10.1.0.0/24")).rejects.toThrow(
      /earlier teardown step of network 10\.1\.0\.0\/24 \(withdraw-endpoint\) keeps failing: permission denied on the endpoint key \(attempt 2/,
    );
    await expect(box.flush(10_000)).rejects.toThrow(/keeps failing/);
    expect(Date.now() - t).toBeLessThan(1_000);
    await box.close();
  });

  it("while the store is away every step waits; the store's return lets the queue finish", async () => {
    const local = new MemoryStore();
    let away = true;
    const done: string[] = [];
    const box = await Outbox.open(
      local,
      async (op) => {
        if (away) throw new StoreUnavailableError("delete", "k", "no leader", 0);
        done.push(label(op));
      },
      { log, minRetryMs: 500, maxRetryMs: 2_000 },
    );
    await box.add(withdraw("10.1.0.0/24", "a"));
    await box.add(withdraw("10.2.0.0/24", "b"));
    await settleMicrotasks();
    expect(box.status()).toMatchObject({ pending: 2, waitingFor: expect.stringMatching(/no leader/) });
    expect(box.status().failing).toBeUndefined();
    away = false;
    await vi.advanceTimersByTimeAsync(2_000);
    expect(done).toEqual(["withdraw a", "withdraw b"]);
    expect(box.status()).toEqual({ pending: 0 });
    await box.close();
  });

  it("survives its host-private store failing (no rejection escapes) and drops an entry nobody can read", async () => {
    const local = new MemoryStore();
    await local.put("local/outbox/000000000001", "{not json");
    await local.put("local/outbox/000000000002", JSON.stringify(withdraw("10.1.0.0/24", "a")));
    const done: string[] = [];
    const failingDelete = { broken: true };
    const flaky = Object.assign(Object.create(local) as MemoryStore, {
      delete: async (key: string, index?: number) => {
        if (failingDelete.broken) throw new Error("EROFS: read-only file system");
        return local.delete(key, index);
      },
    });
    const unreadableBefore = await failuresOf("unreadable");
    const box = await Outbox.open(flaky, async (op) => void done.push(label(op)), { log, minRetryMs: 500, maxRetryMs: 500 });
    expect(box.status().pending).toBe(2);
    box.kick();
    await settleMicrotasks();
    expect(box.status()).toMatchObject({ pending: 2, waitingFor: expect.stringMatching(/host-private store failed: EROFS/) });
    failingDelete.broken = false;
    await vi.advanceTimersByTimeAsync(1_000);
    expect(box.status()).toEqual({ pending: 0 });
    expect(done).toContain("withdraw a");
    expect(await failuresOf("unreadable")).toBe(unreadableBefore + 1);
    await box.close();
  });
});
