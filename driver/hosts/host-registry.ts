import { hostname } from "node:os";
import { z } from "zod";
import { keys } from "../cluster/keys.js";
import type { Logger } from "../../lib/log.js";
import { Backoff } from "../../lib/retry.js";
import type { EphemeralKey, KV, Store, Watch } from "../contracts/store.js";
import { messageOf } from "../../lib/errors.js";

export const HostRecord = z.object({
  hostId: z.string(),
  vtep: z.string(),
  hostname: z.string(),
  startedAt: z.string(),
  /** The plugin's version, and the Docker daemon's once it has answered (`tsoverlay hosts`). */
  pluginVersion: z.string().optional(),
  dockerVersion: z.string().optional(),
});
export type HostRecord = z.infer<typeof HostRecord>;

/**
 * This host's presence in the cluster (an ephemeral key: it lapses when the
 * host stops renewing it) and the set of hosts currently alive. Peers of a
 * host that is not alive are not programmed.
 *
 * Starting never waits for the store: the plugin must come up and serve from
 * its host-private state while Consul is away. The presence key is taken in
 * the background, retried until it works; `ready` turns true once the host
 * list has been read, and until then nobody should act on `isAlive`.
 */
export class HostRegistry {
  private presence: EphemeralKey | undefined;
  private watch: Watch | undefined;
  private alive = new Map<string, HostRecord>();
  private delivered = false;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;
  private readonly registerBackoff = new Backoff(1_000, 15_000);
  private readonly listeners = new Set<() => void>();
  private readonly startedAt = new Date().toISOString();
  private dockerVersion: string | undefined;

  constructor(
    private readonly store: Store,
    readonly self: { hostId: string; vtep: string; pluginVersion?: string },
    private readonly log: Logger,
    private readonly ttlSeconds = 15,
  ) {}

  /** True once the list of live hosts has been read from the store. */
  get ready(): boolean {
    return this.delivered;
  }

  /** Hosts alive now (this one included). */
  hosts(): HostRecord[] {
    return [...this.alive.values()];
  }

  /** Starts registering and watching; resolves at once. `started()` resolves when the host list is known. */
  start(): void {
    this.alive.set(this.self.hostId, this.record());
    void this.register();
    this.watch = this.store.watch(
      keys.hosts(),
      (kvs) => this.update(kvs),
      (err) => this.log.warn({ err: err.message }, "watching hosts failed; retrying"),
    );
  }

  /** Resolves once the host list has been read (for tests and tools). */
  async started(): Promise<void> {
    while (!this.delivered && !this.stopped) await new Promise((r) => setTimeout(r, 20));
  }

  private record(): HostRecord {
    return {
      ...this.self,
      hostname: hostname(),
      startedAt: this.startedAt,
      ...(this.dockerVersion === undefined ? {} : { dockerVersion: this.dockerVersion }),
    };
  }

  /** The Docker daemon's version, shown in this host's record from now on (best effort: a failed write waits for the next registration). */
  async describeDocker(version: string): Promise<void> {
    if (version === this.dockerVersion) return;
    this.dockerVersion = version;
    this.alive.set(this.self.hostId, this.record());
    await this.presence
      ?.update(JSON.stringify(this.record()))
      .catch((err: unknown) => this.log.warn({ err: messageOf(err) }, "updating this host's record failed"));
  }

  private async register(): Promise<void> {
    if (this.stopped) return;
    try {
      const written = JSON.stringify(this.record());
      this.presence = await this.store.putEphemeral(keys.host(this.self.hostId), written, this.ttlSeconds);
      if (this.stopped) {
        this.presence.detach();
        return;
      }
      this.log.info({ hostId: this.self.hostId, vtep: this.self.vtep }, "host registered");
      // Told the daemon's version while the key was being taken: write it now.
      const now = JSON.stringify(this.record());
      if (now !== written) await this.presence.update(now);
    } catch (err) {
      const retryMs = this.registerBackoff.next();
      this.log.warn({ err: messageOf(err), retryMs }, "registering this host failed; retrying");
      this.retry = setTimeout(() => void this.register(), retryMs);
      this.retry.unref();
    }
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
    this.stopped = true;
    clearTimeout(this.retry);
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
    // This host is alive as long as it runs, whatever its key says meanwhile.
    if (!next.has(this.self.hostId)) next.set(this.self.hostId, this.alive.get(this.self.hostId) ?? this.record());
    const first = !this.delivered;
    this.delivered = true;
    const changed = first || next.size !== this.alive.size || [...next.keys()].some((h) => !this.alive.has(h));
    this.alive = next;
    if (changed) {
      this.log.info({ hosts: [...next.keys()] }, "cluster hosts changed");
      for (const l of this.listeners) l();
    }
  }
}
