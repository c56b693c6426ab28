/**
 * The cluster half of every teardown, kept until it is done.
 *
 * Docker calls DeleteEndpoint, ReleaseAddress, DeleteNetwork and ReleasePool
 * once and never again: a failure is only logged on its side. So teardown must
 * succeed on this host even while the cluster store is away, and whatever it
 * had to change in the cluster (the endpoint's record that other hosts program
 * as a peer, the address, the membership, the pool reference) is written here
 * first, in the host-private store, and carried out when the store answers.
 *
 * Design note.
 *  - One ordered queue, not a set: "release address X" must not overtake
 *    "withdraw the endpoint that had X", or another host could be given X
 *    while peers still point at the old one. Entries are keyed by a growing
 *    sequence number and run strictly in that order, one at a time.
 *  - At least once, and harmless twice: an entry is deleted after its
 *    operation succeeded, so a crash in between replays it. Every operation is
 *    idempotent for that reason (delete a key, drop this host's membership or
 *    pool reference, release an address only if this host still holds it).
 *  - Anything that allocates in the cluster (a pool, an address, a network, an
 *    endpoint record) first waits for the queue to be empty (`flush`), so a
 *    late release can never undo a newer allocation.
 *  - An operation that fails because the store is unavailable stays and is
 *    retried with backoff; one that fails for any other reason would fail the
 *    same way forever, so it is logged and dropped.
 */
import { EventEmitter } from "node:events";
import { z } from "zod";
import type { Logger } from "../../lib/log.js";
import { Backoff } from "../../lib/retry.js";
import { isStoreUnavailable, StoreUnavailableError, type Store } from "../contracts/store.js";
import { messageOf } from "../../lib/errors.js";

export const TeardownOp = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("withdraw-endpoint"), subnet: z.string(), endpointId: z.string() }),
  z.object({ kind: z.literal("release-address"), poolId: z.string(), address: z.string() }),
  z.object({ kind: z.literal("leave-network"), subnet: z.string() }),
  z.object({ kind: z.literal("release-pool"), poolId: z.string() }),
  /** A user removed this network here: the cluster removes it everywhere (subnet "" when this host did not know it). */
  z.object({ kind: z.literal("remove-name"), name: z.string(), subnet: z.string() }),
]);
export type TeardownOp = z.infer<typeof TeardownOp>;

const PREFIX = "local/outbox/";
const SEQ_DIGITS = 12;

export interface OutboxOptions {
  log: Logger;
  /** First retry pause after the store failed (ms); doubles up to maxRetryMs. */
  minRetryMs?: number;
  maxRetryMs?: number;
}

export interface OutboxStatus {
  pending: number;
  /** Why the head entry is waiting, while the store is failing. */
  waitingFor?: string;
}

function keyOf(seq: number): string {
  return PREFIX + String(seq).padStart(SEQ_DIGITS, "0");
}

export class Outbox {
  private nextSeq = 1;
  /** Every entry with a sequence number up to this one is done. */
  private doneThrough = 0;
  private count = 0;
  private draining: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly retry: Backoff;
  private waitingFor: string | undefined;
  private closed = false;
  private readonly events = new EventEmitter();

  private constructor(
    private readonly local: Store,
    private readonly run: (op: TeardownOp) => Promise<void>,
    private readonly log: Logger,
    opts: OutboxOptions,
  ) {
    this.retry = new Backoff(opts.minRetryMs ?? 500, opts.maxRetryMs ?? 15_000);
    this.events.setMaxListeners(0);
  }

  /** Opens the queue kept in `local` (entries left by a previous process are kept, in order). */
  static async open(local: Store, run: (op: TeardownOp) => Promise<void>, opts: OutboxOptions): Promise<Outbox> {
    const box = new Outbox(local, run, opts.log.child({ component: "outbox" }), opts);
    const seqs = (await local.list(PREFIX)).map((kv) => Number(kv.key.slice(PREFIX.length))).filter((n) => Number.isInteger(n));
    box.count = seqs.length;
    box.nextSeq = Math.max(0, ...seqs) + 1;
    box.doneThrough = seqs.length === 0 ? box.nextSeq - 1 : Math.min(...seqs) - 1;
    if (seqs.length > 0) box.log.info({ pending: seqs.length }, "teardown left by a previous process: completing it");
    return box;
  }

  status(): OutboxStatus {
    return { pending: this.count, ...(this.waitingFor === undefined ? {} : { waitingFor: this.waitingFor }) };
  }

  /**
   * Records `op` durably and starts running the queue. Resolves once the
   * entry is written; `settle` says when it is done.
   */
  async add(op: TeardownOp): Promise<number> {
    if (this.closed) throw new Error("outbox is closed");
    const seq = this.nextSeq++;
    await this.local.put(keyOf(seq), JSON.stringify(TeardownOp.parse(op)));
    this.count++;
    this.kick();
    return seq;
  }

  /**
   * Waits up to `timeoutMs` for entry `seq` (and everything before it) to be
   * done; false if it is not yet. Does not wait at all while the queue is
   * already known to be waiting for the store.
   */
  async settle(seq: number, timeoutMs: number): Promise<boolean> {
    if (this.waitingFor !== undefined) return this.doneThrough >= seq;
    return this.until(() => this.doneThrough >= seq || this.waitingFor !== undefined, timeoutMs).then(() => this.doneThrough >= seq);
  }

  /**
   * Runs the queue to the end now (a pending retry is not waited for). Throws
   * a StoreUnavailableError if it could not be emptied within `timeoutMs`.
   */
  async flush(timeoutMs: number): Promise<void> {
    if (this.count === 0) return;
    this.kick(true);
    if (await this.until(() => this.count === 0, timeoutMs)) return;
    const condition = this.waitingFor ?? "the cluster store did not answer";
    throw new StoreUnavailableError("flush", PREFIX, `${condition}; ${this.count} earlier teardown step(s) still pending`, timeoutMs);
  }

  /** Stops retrying; what is left stays for the next process. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    await this.draining;
  }

  /** Starts a drain unless one runs; `now` also cuts short a pending retry pause. */
  kick(now = false): void {
    if (this.closed) return;
    if (this.retryTimer !== undefined) {
      if (!now) return;
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    if (this.draining !== undefined) return;
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
    });
  }

  private async drain(): Promise<void> {
    while (!this.closed) {
      const head = (await this.local.list(PREFIX))[0];
      if (head === undefined) {
        this.count = 0;
        this.doneThrough = this.nextSeq - 1;
        this.waitingFor = undefined;
        this.retry.reset();
        this.events.emit("progress");
        return;
      }
      const seq = Number(head.key.slice(PREFIX.length));
      let op: TeardownOp | undefined;
      try {
        op = TeardownOp.parse(JSON.parse(head.value));
        await this.run(op);
      } catch (err) {
        if (isStoreUnavailable(err)) {
          this.waitingFor = err.unavailable ?? err.message;
          const retryMs = this.retry.next();
          this.log.warn({ op, err: err.message, retryMs, pending: this.count }, "teardown waits for the cluster store");
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            this.kick();
          }, retryMs);
          this.retryTimer.unref();
          this.events.emit("progress");
          return;
        }
        this.log.error({ op, raw: op === undefined ? head.value : undefined, err: messageOf(err) }, "teardown step failed for good; dropping it");
      }
      await this.local.delete(head.key);
      this.count = Math.max(0, this.count - 1);
      this.doneThrough = Math.max(this.doneThrough, seq);
      this.waitingFor = undefined;
      this.retry.reset();
      if (op !== undefined) this.log.debug({ op }, "teardown step done");
      this.events.emit("progress");
    }
  }

  private until(done: () => boolean, timeoutMs: number): Promise<boolean> {
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = (): void => {
        if (!done()) return;
        finish(true);
      };
      const finish = (result: boolean): void => {
        clearTimeout(timer);
        this.events.off("progress", check);
        resolve(result);
      };
      const timer = setTimeout(() => finish(done()), timeoutMs);
      this.events.on("progress", check);
    });
  }
}
