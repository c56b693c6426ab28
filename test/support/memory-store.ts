import { assertValidKey, Keyspace } from "../../driver/store/keyspace.js";
import { StoreError, type EphemeralKey, type KV, type Store, type Watch } from "../../driver/contracts/store.js";

/**
 * In-memory Store for unit tests of pure logic. Every operation completes
 * synchronously inside its promise, so a CAS is atomic and watchers have been
 * called by the time the mutation's promise resolves.
 */
export class MemoryStore implements Store {
  private readonly keyspace = new Keyspace();
  private closed = false;

  /** The global index of the last mutation (0 when nothing was ever written). */
  get lastIndex(): number {
    return this.keyspace.lastIndex;
  }

  async get(key: string): Promise<KV | undefined> {
    this.assertOpen("get", key);
    return this.keyspace.get(key);
  }

  async put(key: string, value: string): Promise<void> {
    this.assertWritable("put", key);
    this.keyspace.apply(this.keyspace.planPut(key, value));
  }

  async cas(key: string, value: string, index: number): Promise<boolean> {
    this.assertWritable("cas", key);
    const changes = this.keyspace.planCas(key, value, index);
    if (!changes) return false;
    this.keyspace.apply(changes);
    return true;
  }

  async delete(key: string, index?: number): Promise<boolean> {
    this.assertWritable("delete", key);
    const changes = this.keyspace.planDelete(key, index);
    if (!changes) return false;
    this.keyspace.apply(changes);
    return true;
  }

  async deleteTree(prefix: string): Promise<void> {
    this.assertOpen("deleteTree", prefix);
    this.keyspace.apply(this.keyspace.planDeleteTree(prefix));
  }

  async list(prefix: string): Promise<KV[]> {
    this.assertOpen("list", prefix);
    return this.keyspace.list(prefix);
  }

  watch(prefix: string, onChange: (kvs: KV[]) => void, onError?: (err: Error) => void): Watch {
    if (this.closed) return Keyspace.closedWatch(prefix, onError);
    return this.keyspace.watch(prefix, onChange, onError);
  }

  async putEphemeral(key: string, value: string, _ttlSeconds: number): Promise<EphemeralKey> {
    this.assertWritable("putEphemeral", key);
    await this.put(key, value);
    let released = false;
    return {
      key,
      release: async () => {
        if (released || this.closed) return;
        released = true;
        await this.delete(key);
      },
      update: async (next: string) => {
        if (!released) await this.put(key, next);
      },
      detach: () => {
        released = true;
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.keyspace.stopAllWatches();
  }

  private assertOpen(op: string, key: string): void {
    if (this.closed) throw new StoreError(op, key, "store is closed");
  }

  private assertWritable(op: string, key: string): void {
    this.assertOpen(op, key);
    assertValidKey(op, key);
  }
}
