import { describe, expect, it } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
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

describe("ConsulWatch backoff", () => {
  it("backs off to at most 2 s while Consul is away, and asks again at once when woken", async () => {
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
    });
    try {
      // 250 + 500 + 1000 + 2000 + 2000: six attempts in about 5.75 s, none more than 2 s apart after the fourth.
      await sleep(6_000);
      const gaps = state.calls.slice(1).map((t, i) => t - state.calls[i]!);
      expect(state.calls.length).toBeGreaterThanOrEqual(5);
      expect(Math.max(...gaps)).toBeLessThan(2_400);
      expect(Math.max(...gaps)).toBeGreaterThanOrEqual(1_900);
      // Consul is back and another request of the store went through: the sleeping watch asks now, not at the end of its pause.
      state.down = false;
      const before = state.calls.length;
      const wokenAt = Date.now();
      watch.wake();
      await sleep(50);
      // One answered at once (index 0), the next one is the blocking query now held by Consul.
      expect(state.calls.length).toBe(before + 2);
      expect(state.calls[before]! - wokenAt).toBeLessThan(50);
      expect(delivered).toEqual([[{ key: "p/a", value: "1", modifyIndex: 7 }]]);
      // Answered after failing: it tells the store, which wakes the others.
      expect(answers).toHaveLength(1);
      // A wake while a request is in flight changes nothing.
      watch.wake();
      await sleep(50);
      expect(state.calls.length).toBe(before + 2);
    } finally {
      watch.stop();
      state.hold?.();
    }
  }, 15_000);
});
