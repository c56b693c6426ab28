/**
 * (Over 300 lines on purpose: one queue with its two kinds of waiting — for the store, and for a step of its own that fails — and the waits callers make on it.)
 *
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
 *  - Ordered within a network, not a set: "release address X" must not
 *    overtake "withdraw the endpoint that had X", or another host could be
 *    given X while peers still point at the old one; the pool reference and
 *    the membership go after the addresses. Every step names one network (its
 *    subnet; a name removal without a subnet: that name), and the steps of one
 *    network run strictly in the order they were queued, one at a time.
 *  - Steps of different networks never depend on each other, so a step that
 *    fails for a reason of its own (anything but the store being away) holds
 *    up only its own network: it is retried with a growing pause (1 s doubling
 *    up to 5 min), logged and counted each time, and shown in the status and
 *    by `tsoverlay doctor`, while the other networks' steps go on. Nothing is
 *    dropped for failing: every step is idempotent and the cluster needs it.
 *    Only an entry that cannot even be read is dropped (nothing could ever run
 *    it), with an error in the log.
 *  - While the store is away (or the host-private store fails) every step
 *    would fail alike: the whole queue waits, with a backoff of its own.
 *  - At least once, and harmless twice: an entry is deleted after its
 *    operation succeeded, so a crash in between replays it. Every operation is
 *    idempotent for that reason (delete a key, drop this host's membership or
 *    pool reference, release an address only if this host still holds it).
 *  - Anything that allocates in the cluster (a pool, an address, a network, an
 *    endpoint record) first waits for the queued steps of its network to be
 *    done (`flush`), so a late release can never undo a newer allocation.
 *  - Nothing here throws out of the background drain: a failure is a state
 *    (waiting, failing), never a rejection that would take the process down.
 */
import { EventEmitter } from "node:events";
import { z } from "zod";
import type { Logger } from "../../lib/log.js";
import { metrics } from "../../lib/metrics.js";
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

/** The network a step belongs to: its subnet (a pool ID's subnet part), or `name:<name>` for a name removal without one. */
export function teardownScope(op: TeardownOp): string {
  switch (op.kind) {
    case "withdraw-endpoint":
    case "leave-network":
      return op.subnet;
    case "release-address":
    case "release-pool":
      return op.poolId.split("|")[0] ?? op.poolId;
    case "remove-name":
      return op.subnet !== "" ? op.subnet : `name:${op.name}`;
  }
}

const PREFIX = "local/outbox/";
const SEQ_DIGITS = 12;

export interface OutboxOptions {
  log: Logger;
  /** First retry pause after the store failed (ms); doubles up to maxRetryMs. */
  minRetryMs?: number;
  maxRetryMs?: number;
  /** First retry pause of a step that failed for a reason of its own (ms); doubles up to maxFailRetryMs. */
  minFailRetryMs?: number;
  maxFailRetryMs?: number;
}

/** A step that failed for a reason of its own, retried on its own schedule. */
export interface FailingStep {
  seq: number;
  op: TeardownOp["kind"];
  /** Its network (see teardownScope): the steps queued after it there wait for it. */
  network: string;
  attempts: number;
  error: string;
  /** Until its next attempt. */
  retryInMs: number;
}

export interface OutboxStatus {
  pending: number;
  /** Why the whole queue is waiting, while the store (or the host-private store) is failing. */
  waitingFor?: string;
  /** Steps failing for reasons of their own (each holds up its network's later steps only). */
  failing?: FailingStep[];
}

interface Failure {
  op: TeardownOp["kind"];
  attempts: number;
  error: string;
  /** Date.now() of its next attempt. */
  nextAt: number;
}

function keyOf(seq: number): string {
  return PREFIX + String(seq).padStart(SEQ_DIGITS, "0");
}

function parseEntry(value: string): TeardownOp | undefined {
  try {
    return TeardownOp.parse(JSON.parse(value));
  } catch {
    return undefined;
  }
}

export class Outbox {
  private nextSeq = 1;
  /** Every entry not yet done, with its network ("" while unreadable). */
  private readonly pending = new Map<number, string>();
  private readonly failures = new Map<number, Failure>();
  private draining: Promise<void> | undefined;
  /** Another drain was asked for while one ran (it may have decided there was nothing to do just before). */
  private rerun = false;
  /** The whole queue's pause while the store is away. */
  private retryTimer: NodeJS.Timeout | undefined;
  /** The next attempt of a failing step. */
  private wakeTimer: NodeJS.Timeout | undefined;
  private readonly retry: Backoff;
  private readonly minFailMs: number;
  private readonly maxFailMs: number;
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
    this.minFailMs = opts.minFailRetryMs ?? 1_000;
    this.maxFailMs = opts.maxFailRetryMs ?? 300_000;
    this.events.setMaxListeners(0);
  }

  /** Opens the queue kept in `local` (entries left by a previous process are kept, in order). */
  static async open(local: Store, run: (op: TeardownOp) => Promise<void>, opts: OutboxOptions): Promise<Outbox> {
    const box = new Outbox(local, run, opts.log.child({ component: "outbox" }), opts);
    for (const kv of await local.list(PREFIX)) {
      const seq = Number(kv.key.slice(PREFIX.length));
      if (!Number.isInteger(seq)) continue;
      const op = parseEntry(kv.value);
      box.pending.set(seq, op === undefined ? "" : teardownScope(op));
      box.nextSeq = Math.max(box.nextSeq, seq + 1);
    }
    if (box.pending.size > 0) box.log.info({ pending: box.pending.size }, "teardown left by a previous process: completing it");
    return box;
  }

  status(): OutboxStatus {
    const now = Date.now();
    const failing = [...this.failures].map(([seq, f]) => this.describe(seq, f, now));
    return {
      pending: this.pending.size,
      ...(this.waitingFor === undefined ? {} : { waitingFor: this.waitingFor }),
      ...(failing.length === 0 ? {} : { failing }),
    };
  }

  /**
   * Records `op` durably and starts running the queue. Resolves once the
   * entry is written; `settle` says when it is done.
   */
  async add(op: TeardownOp): Promise<number> {
    if (this.closed) throw new Error("outbox is closed");
    const parsed = TeardownOp.parse(op);
    const seq = this.nextSeq++;
    await this.local.put(keyOf(seq), JSON.stringify(parsed));
    this.pending.set(seq, teardownScope(parsed));
    this.kick();
    return seq;
  }

  /**
   * Waits up to `timeoutMs` for entry `seq` to be done (the steps of its
   * network queued before it are done by then too); false if it is not yet.
   * Does not wait at all while the queue is known to wait for the store, or
   * while a failing step holds up its network.
   */
  async settle(seq: number, timeoutMs: number): Promise<boolean> {
    const done = (): boolean => !this.pending.has(seq);
    const hopeless = (): boolean => this.waitingFor !== undefined || this.heldUp(this.pending.get(seq));
    if (hopeless()) return done();
    return this.until(() => done() || hopeless(), timeoutMs).then(done);
  }

  /**
   * Runs the queue now (a pending pause is cut short, a failing step of the
   * network is tried again) and waits until no step of `network` (its subnet;
   * undefined: of any network) is queued. Throws a StoreUnavailableError if the
   * store kept them from being done within `timeoutMs`, and an Error naming
   * the step at once when one of them fails again.
   */
  async flush(timeoutMs: number, network?: string): Promise<void> {
    const mine = (scope: string): boolean => network === undefined || scope === network;
    const queued = (): number => [...this.pending.values()].filter(mine).length;
    if (queued() === 0) return;
    const attemptsBefore = new Map([...this.failures].map(([seq, f]) => [seq, f.attempts]));
    for (const [seq, f] of this.failures) if (mine(this.pending.get(seq) ?? "")) f.nextAt = 0;
    this.kick(true);
    const failedAgain = (): [number, Failure] | undefined =>
      [...this.failures].find(([seq, f]) => mine(this.pending.get(seq) ?? "") && f.attempts > (attemptsBefore.get(seq) ?? 0));
    if (await this.until(() => queued() === 0 || failedAgain() !== undefined, timeoutMs)) {
      const again = failedAgain();
      if (again === undefined) return;
      const d = this.describe(again[0], again[1], Date.now());
      throw new Error(
        `an earlier teardown step of network ${d.network} (${d.op}) keeps failing: ${d.error} (attempt ${d.attempts}, next in ${Math.ceil(d.retryInMs / 1000)} s); ${queued()} step(s) of it pending`,
      );
    }
    const condition = this.waitingFor ?? "the cluster store did not answer";
    throw new StoreUnavailableError("flush", PREFIX, `${condition}; ${queued()} earlier teardown step(s) still pending`, timeoutMs);
  }

  /** Stops retrying; what is left stays for the next process. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.wakeTimer);
    await this.draining;
  }

  /** Starts a drain unless one runs; `now` also cuts short the queue's pause for the store. */
  kick(now = false): void {
    if (this.closed) return;
    if (this.retryTimer !== undefined) {
      if (!now) return;
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    if (this.draining !== undefined) {
      this.rerun = true;
      return;
    }
    clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    this.draining = this.drain()
      .catch((err: unknown) => this.log.error({ err: messageOf(err) }, "teardown queue stopped unexpectedly; retrying"))
      .finally(() => {
        this.draining = undefined;
        if (this.rerun) {
          this.rerun = false;
          this.kick();
        }
      });
  }

  /** True when a failing step of `network`, not yet due, holds it up. */
  private heldUp(network: string | undefined): boolean {
    if (network === undefined) return false;
    const now = Date.now();
    return [...this.failures].some(([seq, f]) => f.nextAt > now && this.pending.get(seq) === network);
  }

  private describe(seq: number, f: Failure, now: number): FailingStep {
    return { seq, op: f.op, network: this.pending.get(seq) ?? "", attempts: f.attempts, error: f.error, retryInMs: Math.max(0, f.nextAt - now) };
  }

  private async drain(): Promise<void> {
    while (!this.closed) {
      let entries;
      try {
        entries = await this.local.list(PREFIX);
      } catch (err) {
        this.pauseAll(`the host-private store failed: ${messageOf(err)}`);
        return;
      }
      if (entries.length === 0) {
        this.pending.clear();
        this.failures.clear();
        this.waitingFor = undefined;
        this.retry.reset();
        this.events.emit("progress");
        return;
      }
      const now = Date.now();
      const held = new Set<string>();
      let wakeAt: number | undefined;
      let next: { key: string; seq: number; op: TeardownOp | undefined } | undefined;
      for (const kv of entries) {
        const seq = Number(kv.key.slice(PREFIX.length));
        const op = parseEntry(kv.value);
        if (op === undefined) {
          next = { key: kv.key, seq, op };
          break;
        }
        const scope = teardownScope(op);
        if (held.has(scope)) continue;
        const failure = this.failures.get(seq);
        if (failure !== undefined && failure.nextAt > now) {
          held.add(scope);
          wakeAt = Math.min(wakeAt ?? Infinity, failure.nextAt);
          continue;
        }
        next = { key: kv.key, seq, op };
        break;
      }
      if (next === undefined) {
        // Every network with steps left is held up by a failing one: sleep until the first is due.
        this.wakeAt(wakeAt ?? now + this.minFailMs);
        this.events.emit("progress");
        return;
      }
      if (next.op === undefined) {
        this.log.error({ seq: next.seq, raw: entries.find((e) => e.key === next.key)?.value }, "unreadable teardown entry; dropping it");
      } else {
        try {
          await this.run(next.op);
        } catch (err) {
          if (isStoreUnavailable(err)) {
            this.log.warn({ op: next.op, err: err.message, retryMs: this.retry.peek(), pending: this.pending.size }, "teardown waits for the cluster store");
            this.pauseAll(err.unavailable ?? err.message);
            return;
          }
          this.failed(next.seq, next.op, err);
          continue;
        }
      }
      try {
        await this.local.delete(next.key);
      } catch (err) {
        this.pauseAll(`the host-private store failed: ${messageOf(err)}`);
        return;
      }
      this.pending.delete(next.seq);
      this.failures.delete(next.seq);
      this.waitingFor = undefined;
      this.retry.reset();
      if (next.op === undefined) metrics.teardownFailures.inc({ op: "unreadable" });
      else this.log.debug({ op: next.op }, "teardown step done");
      this.events.emit("progress");
    }
  }

  /** A step failed for a reason of its own: its network waits, the others go on. */
  private failed(seq: number, op: TeardownOp, err: unknown): void {
    const attempts = (this.failures.get(seq)?.attempts ?? 0) + 1;
    const retryMs = Math.min(this.maxFailMs, this.minFailMs * 2 ** Math.min(attempts - 1, 30));
    this.failures.set(seq, { op: op.kind, attempts, error: messageOf(err), nextAt: Date.now() + retryMs });
    metrics.teardownFailures.inc({ op: op.kind });
    this.log.error(
      { op, seq, attempts, retryMs, err: messageOf(err) },
      "teardown step failed; retrying it later (its network's later steps wait, other networks' go on)",
    );
    this.events.emit("progress");
  }

  /** The store (or the host-private store) is failing: every step waits. */
  private pauseAll(why: string): void {
    this.waitingFor = why;
    const retryMs = this.retry.next();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, retryMs);
    this.retryTimer.unref();
    this.events.emit("progress");
  }

  private wakeAt(at: number): void {
    clearTimeout(this.wakeTimer);
    this.wakeTimer = setTimeout(
      () => {
        this.wakeTimer = undefined;
        this.kick();
      },
      Math.max(0, at - Date.now()),
    );
    this.wakeTimer.unref();
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
