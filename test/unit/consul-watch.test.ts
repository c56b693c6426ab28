import { afterEach, describe, expect, it, vi } from "vitest";
import { ConsulWatch } from "../../driver/store/consul-watch.js";
import type { ConsulClient } from "../../driver/store/consul-client.js";
import { StoreError, type KV } from "../../driver/contracts/store.js";
import { createLogger } from "../../lib/log.js";

/** A client whose blocking queries fail while `down` and otherwise answer at once, or hold until `release()`. */
function scriptedClient() {
  const state = { down: true, calls: [] as number[], hold: undefined as undefined | (() => void) };
  const client = {
    kv: {
      get: async (opts: { index?: string }) => {
        state.calls.push(Date.now());
        if (state.down) throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
        if (opts.index !== "0") await new Promise<void>((resolve) => (state.hold = resolve));
        return [{ headers: { "x-consul-index": "7" } }, [{ Key: "p/a", Value: "1", ModifyIndex: 7 }]];
      },
    },
  } as unknown as ConsulClient;
  return { client, state };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("ConsulWatch backoff", () => {
  it("backs off to at most 2 s while Consul is away, and asks again at once when woken", async () => {
    // The pauses and the calls' times on a clock the test moves.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    const { client, state } = scriptedClient();
    const delivered: KV[][] = [];
    const answers: number[] = [];
    const watch = new ConsulWatch("p", (kvs) => delivered.push(kvs), undefined, {
      client,
      log: createLogger("silent"),
      waitSeconds: 1,
      requestTimeoutMs: 1_000,
      toError: (err) => new StoreError("watch", "p", String(err)),
      onStop: () => undefined,
      onAnswer: () => answers.push(Date.now()),
      onDelivered: () => undefined,
    });
    try {
      // Six attempts in 6 s, each pause twice the one before, up to 2 s.
      await vi.advanceTimersByTimeAsync(6_000);
      const gaps = state.calls.slice(1).map((t, i) => t - state.calls[i]!);
      expect(gaps).toEqual([250, 500, 1_000, 2_000, 2_000]);
      // Consul is back and another request of the store went through: the sleeping watch asks now, not at the end of its pause.
      state.down = false;
      const before = state.calls.length;
      const wokenAt = Date.now();
      watch.wake();
      await vi.advanceTimersByTimeAsync(0);
      // One answered at once (index 0), the next one is the blocking query now held by Consul.
      expect(state.calls.length).toBe(before + 2);
      expect(state.calls[before]).toBe(wokenAt);
      expect(delivered).toEqual([[{ key: "p/a", value: "1", modifyIndex: 7 }]]);
      // Answered after failing: it tells the store, which wakes the others.
      expect(answers).toHaveLength(1);
      // A wake while a request is in flight changes nothing.
      watch.wake();
      await vi.advanceTimersByTimeAsync(50);
      expect(state.calls.length).toBe(before + 2);
    } finally {
      watch.stop();
      state.hold?.();
    }
  });
});
