/**
 * A blocking-query watch on a Consul KV prefix.
 *
 * Why not the `consul` package's own watch (lib/watch.js): it ends itself
 * for good on a 400 or a validation error and treats a zero index as an
 * error, while a watch in a long-running plugin must outlive anything Consul
 * answers and come back when Consul does; it backs off to 30 s without jitter
 * (ours: 250 ms to 2 s, and woken as soon as any other request of this store
 * is answered, so peers learn of changes made right after an outage); and it reports a change whenever the index moves,
 * including for sibling keys outside a prefix's directory, which we filter.
 * What is left of it to reuse (one HTTP call and a timer) is less than what
 * adapting it would take.
 */
import { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
import type { Logger } from "../../lib/log.js";
import { Backoff } from "../../lib/retry.js";
import type { KV, StoreError, Watch } from "../contracts/store.js";
import { filterUnder, type ConsulClient, type RequestContext } from "./consul-client.js";

const WATCH_BACKOFF_MIN_MS = 250;
// Short: a retry against a local agent that is down costs a refused connection,
// and every second a watch sleeps after Consul is back is a second peers miss.
const WATCH_BACKOFF_MAX_MS = 2_000;

export interface WatchDeps {
  client: ConsulClient;
  log: Logger;
  waitSeconds: number;
  requestTimeoutMs: number;
  toError: (err: unknown) => StoreError;
  onStop: () => void;
  /** This watch was answered after failing: the others may be backing off for nothing. */
  onAnswer: () => void;
  /** An answer that changed something was delivered (counted for the metrics). */
  onDelivered: () => void;
}

/**
 * A blocking-query loop on a prefix. Each request carries its own cancel
 * context; `stop()` aborts the in-flight request and the backoff sleep, and no
 * callback runs after it.
 */
export class ConsulWatch implements Watch {
  private stopped = false;
  private inFlight: RequestContext | undefined;
  private wakeFromBackoff: (() => void) | undefined;
  private lastDelivered: string | undefined;

  constructor(
    private readonly prefix: string,
    private readonly onChange: (kvs: KV[]) => void,
    private readonly onError: ((err: Error) => void) | undefined,
    private readonly deps: WatchDeps,
  ) {
    void this.run();
  }

  /** Consul answered another request of this store: stop backing off and ask now. */
  wake(): void {
    this.wakeFromBackoff?.();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.inFlight?.emit("cancel");
    this.wakeFromBackoff?.();
    this.deps.onStop();
  }

  private async run(): Promise<void> {
    let index = "0";
    const backoff = new Backoff(WATCH_BACKOFF_MIN_MS, WATCH_BACKOFF_MAX_MS);
    const wait = `${this.deps.waitSeconds}s`;
    // Consul adds up to wait/16 of jitter to a blocking query; leave room for it.
    const timeout = this.deps.waitSeconds * 1000 * 1.25 + this.deps.requestTimeoutMs;
    while (!this.stopped) {
      const ctx = Object.assign(new EventEmitter(), { includeResponse: true });
      this.inFlight = ctx;
      try {
        const [res, items] = (await this.deps.client.kv.get({ key: this.prefix, recurse: true, index, wait, timeout, ctx })) as [IncomingMessage, unknown];
        if (this.stopped) return;
        index = nextIndex(index, res.headers["x-consul-index"]);
        if (backoff.peek() !== WATCH_BACKOFF_MIN_MS) this.deps.onAnswer();
        backoff.reset();
        this.deliver(filterUnder(items, this.prefix));
      } catch (err) {
        if (this.stopped) return;
        const error = this.deps.toError(err);
        const retryInMs = backoff.next();
        this.deps.log.warn({ err: error, prefix: this.prefix, retryInMs }, "consul watch failed; retrying");
        this.report(error);
        index = "0";
        await this.sleep(retryInMs);
      } finally {
        this.inFlight = undefined;
      }
    }
  }

  /** A blocking query also returns when `wait` elapses or a sibling prefix ("a/bc" for "a/b") changes: deliver real changes only. */
  private deliver(kvs: KV[]): void {
    const signature = JSON.stringify(kvs.map((kv) => [kv.key, kv.modifyIndex]));
    if (signature === this.lastDelivered) return;
    this.lastDelivered = signature;
    this.deps.onDelivered();
    try {
      this.onChange(kvs);
    } catch (err) {
      this.report(this.deps.toError(err));
    }
  }

  private report(error: StoreError): void {
    try {
      this.onError?.(error);
    } catch (err) {
      this.deps.log.warn({ err, prefix: this.prefix }, "watch onError handler threw");
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined = undefined;
      const done = (): void => {
        clearTimeout(timer);
        this.wakeFromBackoff = undefined;
        resolve();
      };
      timer = setTimeout(done, ms);
      this.wakeFromBackoff = done;
    });
  }
}

/**
 * Per Consul's blocking-query guidance: an index that goes backwards (e.g. the
 * servers' state was restored) resets to 0, and the index is never 0 after a response.
 */
function nextIndex(previous: string, header: string | string[] | undefined): string {
  const value = Number(Array.isArray(header) ? header[0] : header);
  if (!Number.isFinite(value) || value < 1) return "1";
  return value < Number(previous) ? "0" : String(value);
}
