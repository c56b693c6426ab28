import { hostname } from "node:os";
import { z } from "zod";
import { keys } from "../cluster/keys.js";
import type { Logger } from "../log.js";
import type { EphemeralKey, KV, Store, Watch } from "../store/store.js";

export const HostRecord = z.object({ hostId: z.string(), vtep: z.string(), hostname: z.string(), startedAt: z.string() });
export type HostRecord = z.infer<typeof HostRecord>;

/**
 * This host's presence in the cluster (an ephemeral key: it lapses when the
 * host stops renewing it) and the set of hosts currently alive. Peers of a
 * host that is not alive are not programmed.
 */
export class HostRegistry {
  private presence: EphemeralKey | undefined;
  private watch: Watch | undefined;
  private alive = new Map<string, HostRecord>();
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly store: Store,
    readonly self: { hostId: string; vtep: string },
    private readonly log: Logger,
    private readonly ttlSeconds = 15,
  ) {}

  async start(): Promise<void> {
    const rec: HostRecord = { ...this.self, hostname: hostname(), startedAt: new Date().toISOString() };
    this.presence = await this.store.putEphemeral(keys.host(this.self.hostId), JSON.stringify(rec), this.ttlSeconds);
    this.alive.set(this.self.hostId, rec);
    await new Promise<void>((resolve) => {
      let first = true;
      this.watch = this.store.watch(
        keys.hosts(),
        (kvs) => {
          this.update(kvs);
          if (first) {
            first = false;
            resolve();
          }
        },
        (err) => this.log.warn({ err: err.message }, "watching hosts failed; retrying"),
      );
    });
    this.log.info({ hostId: this.self.hostId, vtep: this.self.vtep, hosts: [...this.alive.keys()] }, "host registered");
  }

  isAlive(hostId: string): boolean {
    return this.alive.has(hostId);
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stops watching; the presence key is left to lapse (a restart takes it over). */
  stop(): void {
    this.watch?.stop();
    this.presence?.detach();
  }

  private update(kvs: KV[]): void {
    const next = new Map<string, HostRecord>();
    for (const kv of kvs) {
      try {
        const rec = HostRecord.parse(JSON.parse(kv.value));
        next.set(rec.hostId, rec);
      } catch {
        this.log.warn({ key: kv.key }, "ignoring malformed host record");
      }
    }
    const changed = next.size !== this.alive.size || [...next.keys()].some((h) => !this.alive.has(h));
    this.alive = next;
    if (changed) {
      this.log.info({ hosts: [...next.keys()] }, "cluster hosts changed");
      for (const l of this.listeners) l();
    }
  }
}
