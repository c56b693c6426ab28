import { hostname } from "node:os";
import { previousKeys, keys } from "../cluster/keys.js";
import { livenessOf, type LiveHost, type RejectionLog } from "../cluster/record-checks.js";
import type { RecordFeed } from "../cluster/record-feed.js";
import type { HostRecord } from "../cluster/records.js";
import type { Logger } from "../../lib/log.js";
import type { Store } from "../contracts/store.js";
import { Presence } from "./presence.js";

export { HostRecord } from "../cluster/records.js";

/**
 * This host's presence in the cluster (an ephemeral key: it lapses when the
 * host stops renewing it) and the set of hosts currently alive. Peers of a
 * host that is not alive are not programmed.
 *
 * Liveness is keyed by the key (record-checks.ts): `by-host/<h>/alive` says
 * host <h> is alive, if its record agrees; the previous layout's `hosts/<h>`
 * says so for hosts not upgraded yet, which are told apart (`previousOnly`)
 * because their records are read, and this host's written, at the previous
 * layout too (previous-layout.ts).
 *
 * Starting never waits for the store: the plugin must come up and serve from
 * its host-private state while Consul is away. The presence key is taken in
 * the background, retried until it works; `ready` turns true once the host
 * list has been read, and until then nobody should act on `isAlive`.
 */
export class HostRegistry {
  private readonly presence: Presence;
  private previousPresence: Presence | undefined;
  private alive = new Map<string, LiveHost>();
  private delivered = false;
  private stopped = false;
  private unsubscribe: (() => void) | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly startedAt = new Date().toISOString();
  private dockerVersion: string | undefined;

  constructor(
    private readonly store: Store,
    private readonly feed: RecordFeed,
    readonly self: { hostId: string; vtep: string; pluginVersion?: string; wireguardKey?: string },
    private readonly log: Logger,
    private readonly ttlSeconds = 15,
    private readonly rejections?: RejectionLog,
  ) {
    this.presence = new Presence(store, keys.alive(self.hostId), () => JSON.stringify(this.record()), log, { ttlSeconds });
  }

  /** True once the list of live hosts has been read from the store. */
  get ready(): boolean {
    return this.delivered;
  }

  /** Hosts alive now (this one included). */
  hosts(): HostRecord[] {
    return [...this.alive.values()].map((h) => h.record);
  }

  /** A live host with where its liveness key is; undefined when it is not alive. */
  host(hostId: string): LiveHost | undefined {
    return this.alive.get(hostId);
  }

  isAlive(hostId: string): boolean {
    return this.alive.has(hostId);
  }

  /** Hosts alive at the previous layout only (not upgraded yet), sorted. */
  previousOnly(): string[] {
    return [...this.alive.values()]
      .filter((h) => h.layout === "previous")
      .map((h) => h.record.hostId)
      .sort();
  }

  /** Starts registering and following the hosts' records (the feed must be started too); resolves at once. `started()` resolves when the host list is known. */
  start(): void {
    this.alive.set(this.self.hostId, { record: this.record(), layout: "by-host" });
    void this.presence.take();
    this.unsubscribe = this.feed.onChange((c) => {
      if (c.hosts) this.update();
    });
    if (this.feed.ready) this.update();
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
    this.alive.set(this.self.hostId, { record: this.record(), layout: "by-host" });
    await Promise.all([this.presence.refresh(), this.previousPresence?.refresh()]);
  }

  /** This host's new WireGuard public key, published at once in its record (a key rotation). */
  async describeWireGuard(publicKey: string): Promise<void> {
    this.self.wireguardKey = publicKey;
    this.alive.set(this.self.hostId, { record: this.record(), layout: "by-host" });
    await Promise.all([this.presence.refresh(), this.previousPresence?.refresh()]);
  }

  /**
   * Holds (or lets go of) this host's liveness key at the previous layout,
   * `hosts/<self>`, which hosts not upgraded yet read. Under a per-host ACL
   * policy the store refuses it; that is fine (see previous-layout.ts).
   */
  async holdPreviousPresence(on: boolean): Promise<void> {
    if (this.stopped) return;
    if (on && this.previousPresence === undefined) {
      this.previousPresence = new Presence(this.store, previousKeys.host(this.self.hostId), () => JSON.stringify(this.record()), this.log, {
        ttlSeconds: this.ttlSeconds,
        optional: true,
      });
      await this.previousPresence.take();
    } else if (!on && this.previousPresence !== undefined) {
      const p = this.previousPresence;
      this.previousPresence = undefined;
      await p.release();
    }
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stops following; the presence keys are left to lapse (a restart takes them over). */
  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.presence.detach();
    this.previousPresence?.detach();
  }

  private update(): void {
    const s = this.feed.current();
    const next = livenessOf(s.byHost, s.previousHosts, this.rejections);
    // This host is alive as long as it runs, whatever its key says meanwhile.
    next.set(this.self.hostId, this.alive.get(this.self.hostId) ?? { record: this.record(), layout: "by-host" });
    const first = !this.delivered;
    this.delivered = true;
    const changed =
      first ||
      next.size !== this.alive.size ||
      [...next].some(([h, l]) => this.alive.get(h)?.layout !== l.layout || this.alive.get(h)?.record.vtep !== l.record.vtep);
    this.alive = next;
    if (changed) {
      this.log.info({ hosts: [...next.keys()], previousLayout: this.previousOnly() }, "cluster hosts changed");
      for (const l of this.listeners) l();
    }
  }
}
