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

function backoffMs(attempt: number, minMs: number, maxMs: number): number {
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

/**
 * The growing pause of a loop that retries on its own schedule (a watch that
 * reconnects, a queue that waits for the store, a worker that is restarted):
 * `next()` gives the pause to take now and doubles the following one up to
 * `maxMs`; `reset()` after a success starts again from `minMs`. Deterministic,
 * unlike `retry`'s jittered pauses: these loops run on one host, and their
 * pauses are logged and asserted on.
 */
export class Backoff {
  private current: number;

  constructor(
    readonly minMs: number,
    readonly maxMs: number,
  ) {
    this.current = minMs;
  }

  /** The pause to take now (the next one will be twice as long, up to maxMs). */
  next(): number {
    const ms = this.current;
    this.current = Math.min(this.current * 2, this.maxMs);
    return ms;
  }

  /** The pause next() would give, without moving on. */
  peek(): number {
    return this.current;
  }

  reset(): void {
    this.current = this.minMs;
  }
}
