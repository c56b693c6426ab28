import { mkdir, open, readFile, readdir, rename, unlink } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import type { Logger } from "../../lib/log.js";
import { Mutex } from "../../lib/keyed-mutex.js";
import { assertValidKey, Keyspace, type Change, type Entry } from "./keyspace.js";
import { StoreError, type EphemeralKey, type KV, type Store, type Watch } from "../contracts/store.js";
import { messageOf } from "../../lib/errors.js";

const STORE_FILE = "kv.json";
const TEMP_MARKER = ".tmp-";
const FORMAT_VERSION = 1;

const storeFileSchema = z.object({
  format: z.literal(FORMAT_VERSION),
  index: z.number().int().nonnegative(),
  keys: z.record(
    z.string(),
    z.object({
      value: z.string(),
      modifyIndex: z.number().int().positive(),
      ephemeral: z.boolean().optional(),
    }),
  ),
});
type StoreFile = z.infer<typeof storeFileSchema>;

/**
 * Single-host Store used when no Consul is configured. All keys live in one
 * JSON file (`<dir>/kv.json`) loaded at open; every mutation rewrites it
 * atomically (temp file in the same dir, fsync, rename, fsync dir) before it is
 * visible in memory. Mutations run one at a time (a Mutex), so a
 * CAS's compare and its write cannot interleave with another mutation. Only one
 * process may open a given directory. Ephemeral keys are persisted with a flag
 * and dropped at the next open: they belonged to a process that is gone.
 */
export class EmbeddedStore implements Store {
  readonly file: string;
  private readonly mutex = new Mutex();
  private readonly liveEphemeralKeys = new Set<EphemeralKey>();
  private tempCounter = 0;
  private closed = false;

  private constructor(
    readonly dir: string,
    private readonly keyspace: Keyspace,
    private readonly log: Logger,
  ) {
    this.file = path.join(dir, STORE_FILE);
  }

  static async open(dir: string, log: Logger): Promise<EmbeddedStore> {
    const storeLog = log.child({ component: "store", backend: "embedded", dir });
    const file = path.join(dir, STORE_FILE);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new StoreError("open", dir, err);
    }
    await removeLeftoverTempFiles(dir, storeLog);
    const loaded = await readStoreFile(file);
    const entries = new Map<string, Entry>(Object.entries(loaded.keys));
    const keyCount = entries.size;
    const store = new EmbeddedStore(dir, new Keyspace(entries, loaded.index, storeLog), storeLog);

    const stale = [...entries].filter(([, entry]) => entry.ephemeral).map(([key]) => key);
    if (stale.length > 0) {
      await store.mutate("open", file, () => stale.map((key) => ({ key, entry: undefined })));
      storeLog.info({ keys: stale }, "dropped ephemeral keys left by a previous process");
    }
    storeLog.info({ keys: keyCount - stale.length, index: store.keyspace.lastIndex }, "embedded store opened");
    return store;
  }

  get lastIndex(): number {
    return this.keyspace.lastIndex;
  }

  async get(key: string): Promise<KV | undefined> {
    this.assertOpen("get", key);
    return this.keyspace.get(key);
  }

  async put(key: string, value: string): Promise<void> {
    assertValidKey("put", key);
    await this.mutate("put", key, () => this.keyspace.planPut(key, value));
  }

  async cas(key: string, value: string, index: number): Promise<boolean> {
    assertValidKey("cas", key);
    return this.mutate("cas", key, () => this.keyspace.planCas(key, value, index));
  }

  async delete(key: string, index?: number): Promise<boolean> {
    assertValidKey("delete", key);
    return this.mutate("delete", key, () => this.keyspace.planDelete(key, index));
  }

  async deleteTree(prefix: string): Promise<void> {
    await this.mutate("deleteTree", prefix, () => this.keyspace.planDeleteTree(prefix));
  }

  async list(prefix: string): Promise<KV[]> {
    this.assertOpen("list", prefix);
    return this.keyspace.list(prefix);
  }

  watch(prefix: string, onChange: (kvs: KV[]) => void, onError?: (err: Error) => void): Watch {
    if (this.closed) return Keyspace.closedWatch(prefix, onError);
    return this.keyspace.watch(prefix, onChange, onError);
  }

  async putEphemeral(key: string, value: string, ttlSeconds: number): Promise<EphemeralKey> {
    assertValidKey("putEphemeral", key);
    if (!(ttlSeconds > 0)) throw new StoreError("putEphemeral", key, `invalid ttl ${ttlSeconds}s`);
    await this.mutate("putEphemeral", key, () => this.keyspace.planPut(key, value, true));
    let released = false;
    const handle: EphemeralKey = {
      key,
      release: async () => {
        if (released) return;
        released = true;
        this.liveEphemeralKeys.delete(handle);
        if (!this.closed) await this.delete(key);
      },
      update: async (next: string) => {
        if (!released) await this.mutate("putEphemeral", key, () => this.keyspace.planPut(key, next, true));
      },
      detach: () => {
        released = true;
        this.liveEphemeralKeys.delete(handle);
      },
    };
    this.liveEphemeralKeys.add(handle);
    return handle;
  }

  /** Releases this process's ephemeral keys, waits for queued writes, stops watches. */
  async close(): Promise<void> {
    if (this.closed) return;
    for (const handle of [...this.liveEphemeralKeys]) {
      await handle.release().catch((err: unknown) => this.log.warn({ err, key: handle.key }, "releasing ephemeral key at close failed"));
    }
    this.closed = true;
    await this.mutex.idle();
    this.keyspace.stopAllWatches();
    this.log.info("embedded store closed");
  }

  /**
   * Runs plan → persist → apply as one queued step. Returns false when the plan
   * lost (CAS mismatch); nothing is written then.
   */
  private mutate(op: string, key: string, plan: () => Change[] | undefined): Promise<boolean> {
    return this.mutex.run(async () => {
      this.assertOpen(op, key);
      const changes = plan();
      if (!changes) return false;
      if (changes.length === 0) return true;
      try {
        await this.writeAtomically(this.keyspace.entriesAfter(changes), this.keyspace.lastIndex + 1);
      } catch (err) {
        this.log.error({ err, op, key }, "persisting store file failed");
        throw new StoreError(op, key, err);
      }
      this.keyspace.apply(changes);
      return true;
    });
  }

  private async writeAtomically(entries: Map<string, Entry>, index: number): Promise<void> {
    const content: StoreFile = { format: FORMAT_VERSION, index, keys: Object.fromEntries(entries) };
    const temp = `${this.file}${TEMP_MARKER}${process.pid}-${++this.tempCounter}`;
    try {
      const handle = await open(temp, "w", 0o600);
      try {
        await handle.writeFile(JSON.stringify(content));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, this.file);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
    await syncDirectory(this.dir);
  }

  private assertOpen(op: string, key: string): void {
    if (this.closed) throw new StoreError(op, key, "store is closed");
  }
}

export function openEmbeddedStore(dir: string, log: Logger): Promise<EmbeddedStore> {
  return EmbeddedStore.open(dir, log);
}

async function readStoreFile(file: string): Promise<StoreFile> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { format: FORMAT_VERSION, index: 0, keys: {} };
    throw new StoreError("open", file, err);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new StoreError("open", file, `corrupt store file ${file}: ${messageOf(err)}`);
  }
  const parsed = storeFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue ? `${issue.path.join(".") || "(root)"}: ${issue.message}` : "invalid content";
    throw new StoreError("open", file, `corrupt store file ${file}: ${where}`);
  }
  return parsed.data;
}

/** A crash between write and rename leaves a temp file behind; it never holds committed state. */
async function removeLeftoverTempFiles(dir: string, log: Logger): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(`${STORE_FILE}${TEMP_MARKER}`)) continue;
    await unlink(path.join(dir, name)).catch(() => undefined);
    log.warn({ file: name }, "removed leftover store temp file");
  }
}

/** Makes the rename itself durable. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
