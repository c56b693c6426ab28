import { randomUUID } from "node:crypto";
import { z } from "zod";
import { keys } from "./keys.js";
import { parseRecord } from "./records.js";
import type { HostRegistry } from "../hosts/host-registry.js";
import type { Logger } from "../../lib/log.js";
import type { KV, Store, Watch } from "../contracts/store.js";
import { messageOf } from "../../lib/errors.js";

/**
 * One question to every live host, answered through the cluster store: the
 * CLI reaches only its own host's plugin, yet `tsoverlay peers` must show
 * what every host's kernel holds now. The asker writes `asks/<id>`; every
 * host watches `asks/`, runs the handler for the question's kind, and
 * writes `answers/<id>/<host>`; the asker reads the answers until every
 * live host has one or the time is up, then deletes both. A question left
 * behind by an asker that died is deleted by whichever host sees it stale.
 */

const Question = z.object({ kind: z.string(), by: z.string(), at: z.string() });
/** A question older than this is not answered any more, and is deleted. */
const STALE_MS = 60_000;
const POLL_MS = 100;

export interface Answers {
  /** host → its answer. */
  answers: Map<string, unknown>;
  /** Live hosts that did not answer in time. */
  missing: string[];
}

export class ClusterAsk {
  private watch: Watch | undefined;
  private readonly handlers = new Map<string, () => Promise<unknown>>();
  private readonly answered = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly hosts: HostRegistry,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** What this host answers to questions of `kind`. */
  handle(kind: string, answer: () => Promise<unknown>): void {
    this.handlers.set(kind, answer);
  }

  start(): void {
    this.watch = this.store.watch(
      keys.asks(),
      (kvs) => void this.onQuestions(kvs),
      (err) => this.log.debug({ err: err.message }, "watching questions failed; retrying"),
    );
  }

  stop(): void {
    this.watch?.stop();
  }

  /** Asks every live host (this one included) and waits up to `timeoutMs` for their answers. */
  async ask(kind: string, timeoutMs: number): Promise<Answers> {
    const id = randomUUID();
    const question = { kind, by: this.hosts.self.hostId, at: new Date(this.now()).toISOString() };
    await this.store.put(keys.ask(id), JSON.stringify(question));
    const answers = new Map<string, unknown>();
    const deadline = this.now() + timeoutMs;
    try {
      for (;;) {
        for (const kv of await this.store.list(keys.answers(id))) {
          const host = kv.key.slice(keys.answers(id).length);
          try {
            answers.set(host, JSON.parse(kv.value) as unknown);
          } catch {
            answers.set(host, { error: "malformed answer" });
          }
        }
        const missing = this.hosts
          .hosts()
          .map((h) => h.hostId)
          .filter((h) => !answers.has(h))
          .sort();
        if (missing.length === 0 || this.now() >= deadline) return { answers, missing };
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    } finally {
      await this.forget(id).catch((err: unknown) => this.log.warn({ id, err: messageOf(err) }, "deleting an answered question failed"));
    }
  }

  private async onQuestions(kvs: KV[]): Promise<void> {
    for (const kv of kvs) {
      const id = kv.key.slice(keys.asks().length);
      const q = parseRecord(Question, kv.value);
      if (q === undefined || this.now() - Date.parse(q.at) > STALE_MS) {
        if (await this.store.delete(kv.key, kv.modifyIndex).catch(() => false)) await this.store.deleteTree(keys.answers(id)).catch(() => undefined);
        continue;
      }
      if (this.answered.has(id)) continue;
      this.answered.add(id);
      const handler = this.handlers.get(q.kind);
      let answer: unknown;
      try {
        answer = handler === undefined ? { error: `this host does not answer ${q.kind}` } : await handler();
      } catch (e) {
        answer = { error: messageOf(e) };
      }
      await this.store
        .put(keys.answer(id, this.hosts.self.hostId), JSON.stringify(answer))
        .catch((err: unknown) => this.log.warn({ id, kind: q.kind, err: messageOf(err) }, "answering a question failed"));
    }
    // Forget ids whose question is gone (the set stays as small as the questions in flight).
    const live = new Set(kvs.map((kv) => kv.key.slice(keys.asks().length)));
    for (const id of this.answered) if (!live.has(id)) this.answered.delete(id);
  }

  private async forget(id: string): Promise<void> {
    await this.store.delete(keys.ask(id));
    await this.store.deleteTree(keys.answers(id));
  }
}
