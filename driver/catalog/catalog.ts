import { randomUUID } from "node:crypto";
import { z } from "zod";
import { casRounds, contended } from "../cluster/cas-rounds.js";
import { keys } from "../cluster/keys.js";
import { parseRecord } from "../cluster/records.js";
import type { NetworkSpec } from "../contracts/docker.js";
import type { KV, Store, Watch } from "../contracts/store.js";

/**
 * The cluster's Docker network names: `catalog/<name>` holds how to create the
 * network (what `docker network inspect` showed on the host where a user
 * created it), or a tombstone once a user removed it anywhere.
 *
 * Design note. A name is one record so that its life is decided by CAS on
 * one key: the first host to publish a name wins it, a removal and a
 * re-creation race on the same index. A removal leaves a tombstone rather
 * than deleting the key, because hosts that were down must still learn that
 * their copy is to go; tombstones are swept after a day. `uid` tells one
 * incarnation of a name from the next (removed, then created again).
 */
const StringMap = z.record(z.string(), z.string());
export const CatalogEntry = z.object({
  name: z.string(),
  uid: z.string(),
  state: z.enum(["active", "removed"]),
  /** The host whose user created (or removed) it. */
  host: z.string(),
  at: z.string(),
  spec: z.object({
    driver: z.string(),
    subnet: z.string(),
    gateway: z.string(),
    ipRange: z.string().optional(),
    options: StringMap,
    labels: StringMap,
    ipamDriver: z.string(),
    ipamOptions: StringMap,
    internal: z.boolean(),
    attachable: z.boolean(),
  }),
});
export type CatalogEntry = z.infer<typeof CatalogEntry>;

export interface StoredEntry {
  entry: CatalogEntry;
  index: number;
  /** The name its key gives, and its value as stored: what entry-checks.ts judges before anything is created from it. */
  keyName: string;
  value: string;
}

export class NetworkCatalog {
  constructor(
    private readonly store: Store,
    private readonly now: () => number = Date.now,
  ) {}

  async all(): Promise<StoredEntry[]> {
    return (await this.store.list(keys.catalog())).flatMap((kv) => decode(kv) ?? []);
  }

  async get(name: string): Promise<StoredEntry | undefined> {
    const kv = await this.store.get(keys.catalogEntry(name));
    return kv === undefined ? undefined : decode(kv);
  }

  /**
   * Publishes a name as created on `host`, if it is free or a tombstone
   * (`over`: the index read, 0 for a new key). False if someone else wrote it first.
   */
  publish(spec: NetworkSpec, host: string, over: number): Promise<boolean> {
    const { name, ...rest } = spec;
    const entry: CatalogEntry = { name, uid: randomUUID(), state: "active", host, at: this.timestamp(), spec: rest };
    return this.store.cas(keys.catalogEntry(name), JSON.stringify(entry), over);
  }

  /** Marks the name removed (a tombstone), unless it changed since it was read. */
  remove(current: StoredEntry, host: string): Promise<boolean> {
    const tomb: CatalogEntry = { ...current.entry, state: "removed", host, at: this.timestamp() };
    return this.store.cas(keys.catalogEntry(current.entry.name), JSON.stringify(tomb), current.index);
  }

  /**
   * Marks the name removed if it is active (and, when given, still the
   * network of that subnet); a lost CAS reads again. Returns whether this
   * call removed it.
   */
  async removeName(name: string, subnet: string | undefined, host: string): Promise<boolean> {
    const done = await casRounds(async () => {
      const current = await this.get(name);
      if (current === undefined || current.entry.state !== "active" || (subnet !== undefined && current.entry.spec.subnet !== subnet)) return false;
      return (await this.remove(current, host)) ? true : undefined;
    });
    if (done === undefined) throw new Error(contended(`removing network name ${name}`));
    return done;
  }

  /** Deletes tombstones older than `ageMs`; returns how many went. */
  async sweep(ageMs: number): Promise<number> {
    let swept = 0;
    for (const s of await this.all()) {
      if (s.entry.state !== "removed" || this.now() - Date.parse(s.entry.at) < ageMs) continue;
      if (await this.store.delete(keys.catalogEntry(s.entry.name), s.index)) swept++;
    }
    return swept;
  }

  watch(onChange: (entries: StoredEntry[]) => void, onError: (err: Error) => void): Watch {
    return this.store.watch(keys.catalog(), (kvs) => onChange(kvs.flatMap((kv) => decode(kv) ?? [])), onError);
  }

  private timestamp(): string {
    return new Date(this.now()).toISOString();
  }
}

/** The spec a catalog entry creates, under its name. */
export function specOf(entry: CatalogEntry): NetworkSpec {
  return { name: entry.name, ...entry.spec };
}

function decode(kv: KV): StoredEntry | undefined {
  const entry = parseRecord(CatalogEntry, kv.value);
  return entry === undefined ? undefined : { entry, index: kv.modifyIndex, keyName: kv.key.slice(keys.catalog().length), value: kv.value };
}
