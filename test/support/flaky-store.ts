import { StoreError, type EphemeralKey, type KV, type Store, type Watch } from "../../driver/contracts/store.js";

/**
 * A Store that can be switched "unavailable" for unit tests of what the
 * domain does while the cluster store is away: while down, every call fails
 * the way the Consul adapter fails when Consul cannot answer (a StoreError
 * carrying `unavailable`), and watches fall silent; when it comes back,
 * watches are handed the current state, as a blocking query would.
 */
export class FlakyStore implements Store {
  private condition: string | undefined;
  private refusal: string | undefined;
  private readonly watchers = new Set<{ prefix: string; onChange: (kvs: KV[]) => void; missed: boolean; stopped: boolean }>();
  /** Calls refused while down, by operation. */
  readonly refused = new Map<string, number>();

  constructor(readonly inner: Store) {}

  get isDown(): boolean {
    return this.condition !== undefined;
  }

  down(condition = "Consul at test:8500 has no leader"): void {
    this.condition = condition;
  }

  /** Every call is refused (as an ACL would refuse it): the store answers, so retrying is no use. */
  refuse(reason: string): void {
    this.refusal = reason;
  }

  async up(): Promise<void> {
    this.condition = undefined;
    this.refusal = undefined;
    for (const w of this.watchers) {
      if (!w.missed || w.stopped) continue;
      w.missed = false;
      w.onChange(await this.inner.list(w.prefix));
    }
  }

  private check(op: string, key: string): void {
    if (this.refusal !== undefined) throw new StoreError(op, key, this.refusal);
    if (this.condition === undefined) return;
    this.refused.set(op, (this.refused.get(op) ?? 0) + 1);
    throw new StoreError(op, key, this.condition, { unavailable: this.condition });
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
    const w = { prefix, onChange, missed: false, stopped: false };
    this.watchers.add(w);
    const inner = this.inner.watch(prefix, (kvs) => {
      if (w.stopped) return;
      if (this.condition !== undefined) {
        w.missed = true;
        onError?.(new StoreError("watch", prefix, this.condition, { unavailable: this.condition }));
        return;
      }
      onChange(kvs);
    });
    return {
      stop: () => {
        w.stopped = true;
        this.watchers.delete(w);
        inner.stop();
      },
    };
  }

  async putEphemeral(key: string, value: string, ttlSeconds: number): Promise<EphemeralKey> {
    this.check("putEphemeral", key);
    return this.inner.putEphemeral(key, value, ttlSeconds);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
