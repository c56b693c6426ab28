/**
 * The cluster store's layout revision, and this plugin's refusal to take part
 * in a cluster laid out by a newer one.
 *
 * Design note.
 *  - `tsoverlay/v1/layout` holds {"revision":2,"since":…,"by":…}. The first
 *    host of revision 2 creates it (create-only CAS: two hosts starting at
 *    once write it once) and nobody rewrites it; a later revision that moves
 *    records in a way this one cannot follow raises it, when it decides that
 *    hosts of this revision can no longer take part.
 *  - The marker is watched, not read once: a plugin that finds (at start, or
 *    later) a revision it does not know says so in words ("cluster store
 *    layout revision 3 is newer than this plugin understands (2): upgrade
 *    this plugin"), in its log, on its status endpoint and in `tsoverlay
 *    doctor`, and from then on every cluster store call of this host fails
 *    with those words (guard()), so that a `docker network create` says them
 *    too, rather than reading or writing records it would misunderstand. The
 *    cluster part (registration, peers, collector, questions) only starts once
 *    the marker was found fine; it is stopped on a refusal. Only a restart
 *    (an upgrade) lifts a refusal.
 *  - An unreadable marker is refused the same way: it is not this plugin's
 *    to repair. A store that refuses writing the marker (an ACL without the
 *    rule for it) while it is absent is no reason to stop: that is logged,
 *    and the cluster runs at revision 2.
 */
import { z } from "zod";
import type { Logger } from "../../lib/log.js";
import { messageOf } from "../../lib/errors.js";
import { Backoff } from "../../lib/retry.js";
import { isStoreRefusal, StoreError, type EphemeralKey, type KV, type Store, type Watch } from "../contracts/store.js";
import { keys } from "./keys.js";
import { parseRecord } from "./records.js";

/** The layout this plugin reads and writes (keys.ts). */
export const LAYOUT_REVISION = 2;

export const LayoutMarker = z.object({ revision: z.number().int().min(1), since: z.string().max(64).optional(), by: z.string().max(64).optional() });
export type LayoutMarker = z.infer<typeof LayoutMarker>;

export type LayoutState = { state: "unchecked" } | { state: "ok"; revision: number; marker: LayoutMarker | null } | { state: "refused"; problem: string };

/** What a marker's value means to this plugin: its revision, or the words for refusing it. */
export function judgeMarker(value: string): { ok: true; marker: LayoutMarker } | { ok: false; problem: string } {
  const marker = parseRecord(LayoutMarker, value);
  if (marker === undefined) {
    return {
      ok: false,
      problem: `the cluster store's layout marker (${keys.layout()}) is not one this plugin can read: upgrade this plugin, or repair the key`,
    };
  }
  if (marker.revision > LAYOUT_REVISION) {
    return {
      ok: false,
      problem: `cluster store layout revision ${marker.revision} is newer than this plugin understands (${LAYOUT_REVISION}): upgrade this plugin`,
    };
  }
  return { ok: true, marker };
}

export interface LayoutEvents {
  /** The marker is fine (once). */
  ready: () => void;
  /** The marker is refused (once). */
  refused: (problem: string) => void;
}

export class LayoutGate {
  private current: LayoutState = { state: "unchecked" };
  private watch: Watch | undefined;
  private retry: NodeJS.Timeout | undefined;
  private readonly backoff = new Backoff(250, 15_000);
  private events: LayoutEvents | undefined;

  constructor(
    private readonly store: Store,
    private readonly hostId: string,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  status(): LayoutState {
    return this.current;
  }

  start(events: LayoutEvents): void {
    this.events = events;
    this.watch = this.store.watch(
      keys.layout(),
      (kvs) => void this.onMarker(kvs.find((kv) => kv.key === keys.layout())),
      (err) => this.log.debug({ err: err.message }, "watching the layout marker failed; retrying"),
    );
  }

  stop(): void {
    this.watch?.stop();
    clearTimeout(this.retry);
  }

  /** `store`, failing every call with the refusal's words once the layout is refused. */
  guard(store: Store): Store {
    return new LayoutGuardedStore(store, () => (this.current.state === "refused" ? this.current.problem : undefined));
  }

  private async onMarker(kv: KV | undefined): Promise<void> {
    clearTimeout(this.retry);
    if (this.current.state === "refused") return;
    if (kv !== undefined) {
      const verdict = judgeMarker(kv.value);
      if (verdict.ok) this.accept(verdict.marker);
      else this.refuse(verdict.problem);
      return;
    }
    const marker: LayoutMarker = { revision: LAYOUT_REVISION, since: new Date(this.now()).toISOString(), by: this.hostId };
    try {
      // Create-only: of hosts starting at once, one writes it; the watch brings the others what was written.
      if (await this.store.cas(keys.layout(), JSON.stringify(marker), 0)) this.log.info({ revision: LAYOUT_REVISION }, "cluster store layout marker written");
    } catch (err) {
      if (isStoreRefusal(err)) {
        this.log.warn({ key: keys.layout(), err: messageOf(err) }, "the store refuses writing the layout marker; going on at this plugin's revision");
        this.accept(null);
        return;
      }
      const retryMs = this.backoff.next();
      this.log.debug({ err: messageOf(err), retryMs }, "writing the layout marker failed; retrying");
      this.retry = setTimeout(
        () =>
          void this.store.get(keys.layout()).then(
            (again) => this.onMarker(again),
            () => this.onMarker(undefined),
          ),
        retryMs,
      );
      this.retry.unref();
    }
  }

  private accept(marker: LayoutMarker | null): void {
    if (this.current.state === "ok") return;
    this.current = { state: "ok", revision: marker?.revision ?? LAYOUT_REVISION, marker };
    this.events?.ready();
  }

  private refuse(problem: string): void {
    this.current = { state: "refused", problem };
    this.log.error({ key: keys.layout(), problem }, "this plugin takes no part in the cluster");
    this.events?.refused(problem);
  }
}

/** A store whose every call fails with `refusal()`'s words while it has some (see LayoutGate.guard). */
class LayoutGuardedStore implements Store {
  constructor(
    private readonly inner: Store,
    private readonly refusal: () => string | undefined,
  ) {}

  private check(op: string, key: string): void {
    const problem = this.refusal();
    if (problem !== undefined) throw new StoreError(op, key, problem);
  }

  async get(key: string): Promise<KV | undefined> {
    this.check("get", key);
    return this.inner.get(key);
  }

  async put(key: string, value: string): Promise<void> {
    this.check("put", key);
    return this.inner.put(key, value);
  }

  async cas(key: string, value: string, index: number): Promise<boolean> {
    this.check("cas", key);
    return this.inner.cas(key, value, index);
  }

  async delete(key: string, index?: number): Promise<boolean> {
    this.check("delete", key);
    return this.inner.delete(key, index);
  }

  async deleteTree(prefix: string): Promise<void> {
    this.check("deleteTree", prefix);
    return this.inner.deleteTree(prefix);
  }

  async list(prefix: string): Promise<KV[]> {
    this.check("list", prefix);
    return this.inner.list(prefix);
  }

  watch(prefix: string, onChange: (kvs: KV[]) => void, onError?: (err: Error) => void): Watch {
    return this.inner.watch(prefix, (kvs) => (this.refusal() === undefined ? onChange(kvs) : undefined), onError);
  }

  async putEphemeral(key: string, value: string, ttlSeconds: number): Promise<EphemeralKey> {
    this.check("putEphemeral", key);
    return this.inner.putEphemeral(key, value, ttlSeconds);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
