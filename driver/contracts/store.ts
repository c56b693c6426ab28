/**
 * The cluster state store. Two implementations: Consul (cluster-wide) and an
 * embedded file-backed store (single host, used when no Consul is configured).
 * Every read-modify-write goes through `cas` so concurrent hosts never lose an
 * update. Keys are '/'-separated paths without a leading slash.
 */
import { messageOf } from "../../lib/errors.js";

export interface KV {
  key: string;
  value: string;
  /** Monotonic version of this key; pass it to `cas`/`delete` to act only if unchanged. */
  modifyIndex: number;
}

export interface Watch {
  stop(): void;
}

export interface Store {
  get(key: string): Promise<KV | undefined>;
  /** Unconditional write. */
  put(key: string, value: string): Promise<void>;
  /**
   * Compare-and-set: writes only if the key's modifyIndex still equals `index`.
   * index 0 means "only if the key does not exist". Returns false when it lost.
   */
  cas(key: string, value: string, index: number): Promise<boolean>;
  /** Deletes the key; with `index`, only if unchanged. Returns false when it lost. */
  delete(key: string, index?: number): Promise<boolean>;
  /** Deletes every key under the prefix. */
  deleteTree(prefix: string): Promise<void>;
  /** All keys under the prefix, sorted by key. */
  list(prefix: string): Promise<KV[]>;
  /**
   * Calls `onChange` with the full current list under `prefix` now and after
   * every change (Consul: blocking queries). Errors are retried with backoff
   * and reported through `onError`; the watch never throws.
   */
  watch(prefix: string, onChange: (kvs: KV[]) => void, onError?: (err: Error) => void): Watch;
  /**
   * Writes a key that lives only as long as this process keeps renewing it
   * (Consul: a session with a TTL and behavior=delete). Returns a handle that
   * removes it on release.
   */
  putEphemeral(key: string, value: string, ttlSeconds: number): Promise<EphemeralKey>;
  /** Answers that brought a change to the watches, by prefix, since the store was opened (a store across the network has them; the embedded one has none). */
  watchAnswers?(): ReadonlyMap<string, number>;
  close(): Promise<void>;
}

export interface EphemeralKey {
  readonly key: string;
  /** Deletes the key now. */
  release(): Promise<void>;
  /** Changes the key's value; it stays held (and lapses) as before. */
  update(value: string): Promise<void>;
  /**
   * Stops keeping the key alive without deleting it: it lapses after its TTL
   * unless a successor process takes it over. Used on a plugin stop, which must
   * not look like the host leaving.
   */
  detach(): void;
}

/**
 * Errors from a store carry the operation and key they concern. `unavailable`
 * is set when the store could not be reached or could not answer (no leader,
 * agent down, timeout): it names the condition in words, e.g. "Consul at
 * 127.0.0.1:8500 has no leader", and such an error is worth retrying. Without
 * it the store answered and refused (a bad key, an ACL denial).
 */
export class StoreError extends Error {
  readonly unavailable: string | undefined;

  constructor(
    readonly op: string,
    readonly key: string,
    cause: unknown,
    opts: { unavailable?: string } = {},
  ) {
    super(`store ${op} ${key}: ${messageOf(cause)}`, { cause });
    this.name = "StoreError";
    this.unavailable = opts.unavailable;
  }

  get transient(): boolean {
    return this.unavailable !== undefined;
  }
}

/**
 * The cluster store stayed unavailable for the whole retry budget. Its message
 * is what users see in `docker` errors, the log and the status endpoint.
 */
export class StoreUnavailableError extends StoreError {
  constructor(op: string, key: string, condition: string, retriedMs: number) {
    super(op, key, condition, { unavailable: condition });
    this.name = "StoreUnavailableError";
    const seconds = retriedMs >= 10_000 ? String(Math.round(retriedMs / 1000)) : (retriedMs / 1000).toFixed(1);
    const retried = retriedMs > 0 ? ` (retried for ${seconds} s)` : "";
    this.message = `tsoverlay: cluster store unavailable: ${condition}${retried}`;
  }
}

/** True for a store error that says the store could not be reached or answer. */
export function isStoreUnavailable(err: unknown): err is StoreError {
  return err instanceof StoreError && err.transient;
}

/** True for a store error where the store answered and refused (an ACL denial, a bad key): retrying is no use. */
export function isStoreRefusal(err: unknown): err is StoreError {
  return err instanceof StoreError && !err.transient;
}
