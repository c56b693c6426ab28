/**
 * Tests wait on conditions, not on the clock. `eventually` polls a probe until it
 * holds and fails with what it was waiting for (and the last thing the probe saw)
 * when it never does; `quiet` is the one sleep left, for the few checks that need a
 * stretch of real time to pass (that something does *not* happen), and it takes the
 * reason as an argument so that every such wait says why.
 */
import { setTimeout as sleep } from "node:timers/promises";

export interface EventuallyOptions {
  /** Give up after this long (default 5 s). */
  timeoutMs?: number;
  /** Time between probes (default 10 ms). */
  everyMs?: number;
}

/**
 * Polls `probe` until it returns something other than `undefined` or `false`, and
 * resolves with that value. A probe that throws counts as "not yet"; its last error
 * is named in the timeout's message.
 */
export async function eventually<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  options: EventuallyOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const everyMs = options.everyMs ?? 10;
  // Not Date.now(): a test may fake Date, and its waits must still end.
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
      last = value;
    } catch (e) {
      last = e;
    }
    if (performance.now() >= deadline) {
      const seen = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last seen: ${seen})`);
    }
    await sleep(everyMs);
  }
}

/**
 * A stretch of real time that a check needs to pass, e.g. to show that something
 * does not happen within it. `reason` is for the reader (and for grep).
 */
export async function quiet(ms: number, reason: string): Promise<void> {
  void reason;
  await sleep(ms);
}
