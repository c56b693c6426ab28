import { StoreError, type KV, type Watch } from "../contracts/store.js";

/**
 * Prefix semantics shared by every store (`list`, `watch`, `deleteTree`):
 * - ""        matches every key;
 * - "a/b/"    (ends with "/") is a directory: every key starting with "a/b/";
 * - "a/b"     is the key "a/b" itself plus the directory "a/b/" — never "a/bc".
 */
export function isUnderPrefix(key: string, prefix: string): boolean {
  if (prefix === "" || prefix.endsWith("/")) return key.startsWith(prefix);
  return key === prefix || key.startsWith(`${prefix}/`);
}

/** Keys are '/'-separated paths: non-empty, no leading slash. */
export function assertValidKey(op: string, key: string): void {
  if (key === "" || key.startsWith("/")) {
    throw new StoreError(op, key, "invalid key (must be non-empty without a leading '/')");
  }
}

export function compareKeys(a: KV, b: KV): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

export interface Entry {
  value: string;
  modifyIndex: number;
  /** Written by putEphemeral; the embedded store drops these when it reopens. */
  ephemeral?: boolean;
}

/** One key's new state after a mutation; `entry` undefined means deleted. */
export interface Change {
  key: string;
  entry: Entry | undefined;
}

interface Watcher {
  prefix: string;
  onChange: (kvs: KV[]) => void;
  onError: ((err: Error) => void) | undefined;
  stopped: boolean;
}

/**
 * The in-process key space behind the embedded store (and the tests' memory
 * store, test/support/memory-store.ts): entries, a
 * global monotonically increasing index (like Consul's Raft index, every
 * mutation gets the next one) and in-process watchers. Mutations are split in
 * `plan*` (pure: what would change, or undefined if a CAS lost) and `apply`,
 * so the embedded store can persist a plan before committing it.
 */
export class Keyspace {
  private readonly watchers = new Set<Watcher>();

  constructor(
    private readonly entries: Map<string, Entry> = new Map(),
    private index = 0,
    private readonly log?: { warn(obj: object, msg: string): void },
  ) {}

  get lastIndex(): number {
    return this.index;
  }

  get(key: string): KV | undefined {
    const entry = this.entries.get(key);
    return entry && { key, value: entry.value, modifyIndex: entry.modifyIndex };
  }

  list(prefix: string): KV[] {
    const kvs: KV[] = [];
    for (const [key, entry] of this.entries) {
      if (isUnderPrefix(key, prefix)) kvs.push({ key, value: entry.value, modifyIndex: entry.modifyIndex });
    }
    return kvs.sort(compareKeys);
  }

  /** Every entry, including the ephemeral flag, for persistence. */
  entriesAfter(changes: Change[]): Map<string, Entry> {
    const next = new Map(this.entries);
    for (const { key, entry } of changes) {
      if (entry) next.set(key, entry);
      else next.delete(key);
    }
    return next;
  }

  planPut(key: string, value: string, ephemeral = false): Change[] {
    const entry: Entry = { value, modifyIndex: this.index + 1 };
    if (ephemeral) entry.ephemeral = true;
    return [{ key, entry }];
  }

  planCas(key: string, value: string, index: number): Change[] | undefined {
    const current = this.entries.get(key)?.modifyIndex ?? 0;
    return current === index ? this.planPut(key, value) : undefined;
  }

  /**
   * Like Consul: deleting an absent key succeeds (with or without an index) and
   * changes nothing; with an index it loses only if the key exists at another index.
   */
  planDelete(key: string, index?: number): Change[] | undefined {
    const entry = this.entries.get(key);
    if (!entry) return [];
    if (index !== undefined && entry.modifyIndex !== index) return undefined;
    return [{ key, entry: undefined }];
  }

  planDeleteTree(prefix: string): Change[] {
    return [...this.entries.keys()].filter((key) => isUnderPrefix(key, prefix)).map((key) => ({ key, entry: undefined }));
  }

  /** Commits a plan: one index for the whole mutation, then notifies watchers. */
  apply(changes: Change[]): void {
    if (changes.length === 0) return;
    this.index += 1;
    for (const { key, entry } of changes) {
      if (entry) this.entries.set(key, { ...entry, modifyIndex: this.index });
      else this.entries.delete(key);
    }
    for (const watcher of this.watchers) {
      if (changes.some(({ key }) => isUnderPrefix(key, watcher.prefix))) this.deliver(watcher);
    }
  }

  watch(prefix: string, onChange: (kvs: KV[]) => void, onError?: (err: Error) => void): Watch {
    const watcher: Watcher = { prefix, onChange, onError, stopped: false };
    this.watchers.add(watcher);
    // The initial call is deferred so the caller holds the Watch handle first.
    queueMicrotask(() => this.deliver(watcher));
    return {
      stop: () => {
        watcher.stopped = true;
        this.watchers.delete(watcher);
      },
    };
  }

  /** What `watch` gives on a closed store: no throw, the error goes to onError. */
  static closedWatch(prefix: string, onError?: (err: Error) => void): Watch {
    let stopped = false;
    queueMicrotask(() => {
      if (!stopped) onError?.(new StoreError("watch", prefix, "store is closed"));
    });
    return { stop: () => (stopped = true) };
  }

  stopAllWatches(): void {
    for (const watcher of this.watchers) watcher.stopped = true;
    this.watchers.clear();
  }

  private deliver(watcher: Watcher): void {
    if (watcher.stopped) return;
    try {
      watcher.onChange(this.list(watcher.prefix));
    } catch (err) {
      const error = new StoreError("watch", watcher.prefix, err);
      this.log?.warn({ err: error, prefix: watcher.prefix }, "store watch callback threw");
      try {
        watcher.onError?.(error);
      } catch {
        // A throwing error handler must not break the mutation that triggered it.
      }
    }
  }
}
