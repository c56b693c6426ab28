import { setTimeout as sleep } from "node:timers/promises";

/**
 * The one retry helper. `retry` runs `attempt` until it returns a value that
 * is not `undefined` (`undefined` means "not yet, try again"), or throws, or
 * the pauses run out. Pauses grow exponentially from `minMs` to `maxMs` with
 * full jitter, so that contending hosts stop retrying in lockstep.
 */
export interface RetryOptions {
  /** How many attempts in all (≥ 1). */
  attempts: number;
  minMs: number;
  maxMs: number;
  /** Stops early (resolving undefined) when aborted. */
  signal?: AbortSignal;
}

export function backoffMs(attempt: number, minMs: number, maxMs: number): number {
  return Math.random() * Math.min(maxMs, minMs * 2 ** attempt);
}

/** Resolves with the first defined result, or undefined when every attempt said "not yet". */
export async function retry<T>(opts: RetryOptions, attempt: (n: number) => Promise<T | undefined>): Promise<T | undefined> {
  for (let n = 0; n < opts.attempts; n++) {
    if (opts.signal?.aborted) return undefined;
    if (n > 0) await sleep(backoffMs(n, opts.minMs, opts.maxMs), undefined, { signal: opts.signal }).catch(() => undefined);
    const r = await attempt(n);
    if (r !== undefined) return r;
  }
  return undefined;
}
