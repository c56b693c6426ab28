/**
 * Rides out short cluster-store outages on the request path.
 *
 * A Consul leader election takes a second or two, a restarting agent a few
 * more; during that time every request fails with "no leader" or "connection
 * refused". Docker does not retry a failed `docker run`, so each store call made
 * while serving Docker is retried here, with growing pauses, for up to a budget
 * (default 10 s, well inside Docker's own plugin timeout). When the budget runs
 * out the caller gets a StoreUnavailableError whose message says in words what
 * is wrong and where ("Consul at 127.0.0.1:8500 has no leader (retried for
 * 10 s)"). Errors where the store answered and refused (an ACL, a bad key) are
 * not retried. Watches and ephemeral keys retry on their own; they only feed
 * the health that the status endpoint shows.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../../lib/log.js";
import { metrics } from "../../lib/metrics.js";
import { Backoff } from "../../lib/retry.js";
import { isStoreUnavailable, StoreUnavailableError, type EphemeralKey, type KV, type Store, type Watch } from "../contracts/store.js";

export interface StoreHealth {
  available: boolean;
  /** What is wrong, in words, while unavailable. */
  condition?: string;
  /** When it became unavailable (ISO time). */
  since?: string;
}

export interface ResilientStoreOptions {
  /** How long one call keeps retrying before it fails (ms). */
  budgetMs: number;
  log: Logger;
  /** First pause between attempts (ms); doubles up to maxDelayMs. */
  minDelayMs?: number;
  maxDelayMs?: number;
}

export class ResilientStore implements Store {
  /** Shared with the views of withBudget: one store, one health. */
  private health$: { state: StoreHealth } = { state: { available: true } };
  private readonly minDelayMs: number;
  private readonly maxDelayMs: number;

  constructor(
    private readonly inner: Store,
    private readonly opts: ResilientStoreOptions,
  ) {
    this.minDelayMs = opts.minDelayMs ?? 100;
    this.maxDelayMs = opts.maxDelayMs ?? 1_000;
  }

  /**
   * The same store and health with another retry budget. Background work
   * that holds a network's lock uses 0: an outage fails it at once (its next
   * pass retries) instead of keeping Docker's calls waiting for the lock.
   */
  withBudget(budgetMs: number): ResilientStore {
    const view = new ResilientStore(this.inner, { ...this.opts, budgetMs });
    view.health$ = this.health$;
    return view;
  }

  get budgetMs(): number {
    return this.opts.budgetMs;
  }

  health(): StoreHealth {
    return { ...this.health$.state };
  }

  get(key: string): Promise<KV | undefined> {
    return this.attempt("get", key, () => this.inner.get(key));
  }

  put(key: string, value: string): Promise<void> {
    return this.attempt("put", key, () => this.inner.put(key, value));
  }

  cas(key: string, value: string, index: number): Promise<boolean> {
    return this.attempt("cas", key, () => this.inner.cas(key, value, index));
  }

  delete(key: string, index?: number): Promise<boolean> {
    return this.attempt("delete", key, () => this.inner.delete(key, index));
  }

  deleteTree(prefix: string): Promise<void> {
    return this.attempt("deleteTree", prefix, () => this.inner.deleteTree(prefix));
  }

  list(prefix: string): Promise<KV[]> {
    return this.attempt("list", prefix, () => this.inner.list(prefix));
  }

  watch(prefix: string, onChange: (kvs: KV[]) => void, onError?: (err: Error) => void): Watch {
    return this.inner.watch(
      prefix,
      (kvs) => {
        this.up();
        onChange(kvs);
      },
      (err) => {
        if (isStoreUnavailable(err)) this.down(err.unavailable ?? err.message);
        onError?.(err);
      },
    );
  }

  putEphemeral(key: string, value: string, ttlSeconds: number): Promise<EphemeralKey> {
    return this.attempt("putEphemeral", key, () => this.inner.putEphemeral(key, value, ttlSeconds));
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async attempt<T>(op: string, key: string, call: () => Promise<T>): Promise<T> {
    const started = Date.now();
    const backoff = new Backoff(this.minDelayMs, this.maxDelayMs);
    for (;;) {
      const sent = performance.now();
      try {
        const value = await call();
        metrics.storeRequestSeconds.observe({ op }, (performance.now() - sent) / 1000);
        this.up();
        return value;
      } catch (err) {
        metrics.storeRequestSeconds.observe({ op }, (performance.now() - sent) / 1000);
        metrics.storeErrors.inc({ op, kind: isStoreUnavailable(err) ? "unavailable" : "refused" });
        if (!isStoreUnavailable(err)) throw err;
        const condition = err.unavailable ?? err.message;
        this.down(condition);
        const spent = Date.now() - started;
        const delay = backoff.peek();
        if (spent + delay > this.opts.budgetMs) {
          throw new StoreUnavailableError(op, key, condition, this.opts.budgetMs > 0 ? Math.max(spent, this.opts.budgetMs) : 0);
        }
        await sleep(backoff.next());
      }
    }
  }

  private up(): void {
    if (this.health$.state.available) return;
    this.opts.log.info({ was: this.health$.state.condition, since: this.health$.state.since }, "cluster store available again");
    this.health$.state = { available: true };
  }

  private down(condition: string): void {
    if (!this.health$.state.available && this.health$.state.condition === condition) return;
    const message = `tsoverlay: cluster store unavailable: ${condition}`;
    this.opts.log.warn({ err: message }, "cluster store unavailable; retrying");
    this.health$.state = { available: false, condition, since: this.health$.state.since ?? new Date().toISOString() };
  }
}
