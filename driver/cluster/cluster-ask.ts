import { randomUUID } from "node:crypto";
import { z } from "zod";
import { keys, previousKeys } from "./keys.js";
import { parseRecord } from "./records.js";
import type { HostRegistry } from "../hosts/host-registry.js";
import type { Logger } from "../../lib/log.js";
import type { KV, Store, Watch } from "../contracts/store.js";
import { messageOf } from "../../lib/errors.js";

/**
 * One question to every live host, answered through the cluster store: the
 * CLI reaches only its own host's plugin, yet `tsoverlay peers` must show
 * what every host's kernel holds now. The asker writes `asks/<id>`; every
 * host watches `asks/`, runs the handler for the question's kind, and writes
 * `by-host/<self>/answers/<id>`; the asker reads each live host's answer key
 * until every live host has one or the time is up, then deletes its
 * question, and each host deletes its own answers to questions that are gone.
 *
 * Design note: asks/ is shared, so a question is another host's word and
 * must cost little, whoever wrote it.
 *  - A question is at most 1 KiB of {kind, by, at}, nothing else; its id is
 *    a short token. Only kinds this host has a handler for are answered; the
 *    rest are ignored (no write).
 *  - At most ANSWERS_PER_WINDOW questions are answered per WINDOW_MS, counted
 *    by this host; more wait for the next window while they last.
 *  - Age is never read from `at` (another host's clock: a time in the future
 *    or none at all made a question immortal, and every host worked on it).
 *    The question is an ephemeral key of the asker, so it lapses with the
 *    asker's session if the asker dies; and any host deletes a question it
 *    has seen for longer than STALE_MS by its own clock (a question written
 *    as a plain key, or one whose asker hangs). `at` is still written: hosts
 *    of the previous layout require it.
 *  - Hosts of the previous layout answer at `answers/<id>/<host>` and read
 *    only there: their answers are read there, and while any is alive this
 *    host answers there too.
 */

const Question = z.object({ kind: z.string().max(64), by: z.string().max(64), at: z.string().max(64).optional() }).strict();
/** The largest question read (bytes of JSON). */
const MAX_QUESTION_BYTES = 1_024;
const ASK_ID = /^[A-Za-z0-9-]{1,64}$/;
/** A question seen for longer than this (by this host's clock) is not answered any more, and is deleted. */
const STALE_MS = 60_000;
/** How many questions this host answers per window. */
const ANSWERS_PER_WINDOW = 16;
const WINDOW_MS = 60_000;
/** The question's session TTL (Consul's shortest is 10 s). */
const QUESTION_TTL_S = 10;
const POLL_MS = 100;

export interface Answers {
  /** host → its answer. */
  answers: Map<string, unknown>;
  /** Live hosts that did not answer in time. */
  missing: string[];
}

export class ClusterAsk {
  private watch: Watch | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private lastSeen: KV[] = [];
  /** Deliveries are handled one at a time, each with the latest list (an older one would undo a newer one's work). */
  private handling: Promise<void> = Promise.resolve();
  private readonly handlers = new Map<string, () => Promise<unknown>>();
  /** Question id → when this host first saw it (its monotonic clock). */
  private readonly firstSeen = new Map<string, number>();
  /** Ids this host answered or will never answer; and those it wrote an answer for, to delete when the question goes. */
  private readonly done = new Set<string>();
  private readonly answered = new Set<string>();
  /** When this host answered, within the last window. */
  private answeredAt: number[] = [];
  private throttledWarned = false;
  private swept = false;

  constructor(
    private readonly store: Store,
    private readonly hosts: HostRegistry,
    private readonly log: Logger,
    /** This host's monotonic clock (ms). */
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /** What this host answers to questions of `kind`. */
  handle(kind: string, answer: () => Promise<unknown>): void {
    this.handlers.set(kind, answer);
  }

  start(): void {
    const handle = (kvs: KV[]): void => {
      this.lastSeen = kvs;
      this.handling = this.handling
        .then(() => this.onQuestions(this.lastSeen))
        .catch((err: unknown) => this.log.warn({ err: messageOf(err) }, "handling questions failed"));
    };
    this.watch = this.store.watch(keys.asks(), handle, (err) => this.log.debug({ err: err.message }, "watching questions failed; retrying"));
    // A question that nothing changes after is still found stale.
    this.sweeper = setInterval(() => handle(this.lastSeen), STALE_MS / 2);
    this.sweeper.unref();
  }

  stop(): void {
    this.watch?.stop();
    clearInterval(this.sweeper);
  }

  /** Asks every live host (this one included) and waits up to `timeoutMs` for their answers. */
  async ask(kind: string, timeoutMs: number): Promise<Answers> {
    const id = randomUUID();
    const question = { kind, by: this.hosts.self.hostId, at: new Date().toISOString() };
    const held = await this.store.putEphemeral(keys.ask(id), JSON.stringify(question), QUESTION_TTL_S);
    const answers = new Map<string, unknown>();
    const deadline = this.clock() + timeoutMs;
    try {
      for (;;) {
        const waiting = this.hosts
          .hosts()
          .map((h) => h.hostId)
          .filter((h) => !answers.has(h))
          .sort();
        for (const host of waiting) {
          const previous = this.hosts.host(host)?.layout === "previous";
          const kv = await this.store.get(previous ? previousKeys.answer(id, host) : keys.hostAnswer(host, id));
          if (kv === undefined) continue;
          try {
            answers.set(host, JSON.parse(kv.value) as unknown);
          } catch {
            answers.set(host, { error: "malformed answer" });
          }
        }
        const missing = waiting.filter((h) => !answers.has(h));
        if (missing.length === 0 || this.clock() >= deadline) return { answers, missing };
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    } finally {
      await held.release().catch((err: unknown) => this.log.warn({ id, err: messageOf(err) }, "deleting an answered question failed"));
      // Hosts of the previous layout leave their answers to the asker.
      if (this.hosts.previousOnly().length > 0) await this.store.deleteTree(previousKeys.answers(id)).catch(() => undefined);
    }
  }

  private async onQuestions(kvs: KV[]): Promise<void> {
    const now = this.clock();
    const present = new Set<string>();
    for (const kv of kvs) {
      const id = kv.key.slice(keys.asks().length);
      present.add(id);
      const seen = this.firstSeen.get(id) ?? now;
      this.firstSeen.set(id, seen);
      if (now - seen > STALE_MS) {
        await this.store.delete(kv.key, kv.modifyIndex).catch(() => false);
        continue;
      }
      if (this.done.has(id)) continue;
      const q = ASK_ID.test(id) && kv.value.length <= MAX_QUESTION_BYTES ? parseRecord(Question, kv.value) : undefined;
      const handler = q === undefined ? undefined : this.handlers.get(q.kind);
      if (q === undefined || handler === undefined) {
        // Not a question this host answers: it costs nothing more, and goes when it is stale.
        this.done.add(id);
        continue;
      }
      if (!this.withinBudget(now)) continue;
      this.done.add(id);
      await this.answer(id, q.kind, handler);
    }
    for (const id of [...this.firstSeen.keys()]) if (!present.has(id)) this.firstSeen.delete(id);
    for (const id of [...this.done]) if (!present.has(id)) this.done.delete(id);
    await this.deleteAnswersTo(present);
  }

  /** True if one more answer fits this window (and counts it). */
  private withinBudget(now: number): boolean {
    this.answeredAt = this.answeredAt.filter((t) => now - t < WINDOW_MS);
    if (this.answeredAt.length >= ANSWERS_PER_WINDOW) {
      if (!this.throttledWarned) this.log.warn({ perWindow: ANSWERS_PER_WINDOW, windowMs: WINDOW_MS }, "too many questions: answering more in the next window");
      this.throttledWarned = true;
      return false;
    }
    this.throttledWarned = false;
    this.answeredAt.push(now);
    return true;
  }

  private async answer(id: string, kind: string, handler: () => Promise<unknown>): Promise<void> {
    let answer: unknown;
    try {
      answer = await handler();
    } catch (e) {
      answer = { error: messageOf(e) };
    }
    const self = this.hosts.self.hostId;
    const value = JSON.stringify(answer);
    try {
      this.answered.add(id);
      await this.store.put(keys.hostAnswer(self, id), value);
      if (this.hosts.previousOnly().length > 0) await this.store.put(previousKeys.answer(id, self), value).catch(() => undefined);
    } catch (err) {
      this.log.warn({ id, kind, err: messageOf(err) }, "answering a question failed");
    }
  }

  /** Deletes this host's answers to questions that are gone (and, once, those a previous process left). */
  private async deleteAnswersTo(present: ReadonlySet<string>): Promise<void> {
    const self = this.hosts.self.hostId;
    if (!this.swept) {
      this.swept = true;
      const left = await this.store.list(keys.hostAnswers(self)).catch(() => []);
      for (const kv of left) this.answered.add(kv.key.slice(keys.hostAnswers(self).length));
    }
    for (const id of [...this.answered]) {
      if (present.has(id)) continue;
      await this.store.delete(keys.hostAnswer(self, id)).then(
        () => this.answered.delete(id),
        (err: unknown) => this.log.debug({ id, err: messageOf(err) }, "deleting an answer failed; retried with the next change"),
      );
    }
  }
}
