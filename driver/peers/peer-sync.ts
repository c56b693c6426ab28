import { keys } from "../cluster/keys.js";
import { EndpointRecord, parseRecord } from "../cluster/records.js";
import type { Datapath, PeerEntry } from "../datapath/datapath.js";
import type { HostRegistry } from "../host/host-registry.js";
import type { Logger } from "../log.js";
import type { Store, Watch } from "../store/store.js";

/**
 * Keeps each joined network's neighbor/FDB tables equal to the cluster's
 * endpoints on other live hosts. The kernel tables are a cache of the store:
 * every store change triggers a sync, and a periodic reconcile repairs drift
 * (entries deleted or added behind our back).
 */
export class PeerSync {
  private readonly networks = new Map<string, { watch: Watch; endpoints: EndpointRecord[] }>();
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribeHosts: () => void;

  constructor(
    private readonly store: Store,
    private readonly datapath: Datapath,
    private readonly hosts: HostRegistry,
    private readonly log: Logger,
    reconcileMs: number,
  ) {
    this.timer = setInterval(() => void this.reconcileAll("periodic"), reconcileMs);
    this.timer.unref();
    this.unsubscribeHosts = hosts.onChange(() => void this.reconcileAll("hosts changed"));
  }

  /** Starts following a network's endpoints; resolves after the first sync. */
  async start(subnet: string): Promise<void> {
    if (this.networks.has(subnet)) return;
    await new Promise<void>((resolve) => {
      let first = true;
      const watch = this.store.watch(
        keys.endpoints(subnet),
        (kvs) => {
          const entry = this.networks.get(subnet);
          if (entry === undefined) return;
          entry.endpoints = kvs.flatMap((kv) => parseRecord(EndpointRecord, kv.value) ?? []);
          void this.sync(subnet, "endpoints changed").finally(() => {
            if (first) {
              first = false;
              resolve();
            }
          });
        },
        (err) => this.log.warn({ subnet, err: err.message }, "watching endpoints failed; retrying"),
      );
      this.networks.set(subnet, { watch, endpoints: [] });
    });
  }

  stop(subnet: string): void {
    this.networks.get(subnet)?.watch.stop();
    this.networks.delete(subnet);
  }

  stopAll(): void {
    clearInterval(this.timer);
    this.unsubscribeHosts();
    for (const subnet of [...this.networks.keys()]) this.stop(subnet);
  }

  desired(subnet: string): PeerEntry[] {
    const entry = this.networks.get(subnet);
    if (entry === undefined) return [];
    return entry.endpoints
      .filter((e) => e.hostId !== this.hosts.self.hostId && this.hosts.isAlive(e.hostId))
      .map((e) => ({ ip: e.ip, mac: e.mac, vtep: e.vtep }));
  }

  private async reconcileAll(why: string): Promise<void> {
    for (const subnet of this.networks.keys()) await this.sync(subnet, why);
  }

  private async sync(subnet: string, why: string): Promise<void> {
    if (!this.datapath.hasNetwork(subnet)) return;
    try {
      const r = await this.datapath.syncPeers(subnet, this.desired(subnet));
      if (r.added > 0 || r.removed > 0) {
        const level = why === "periodic" ? "warn" : "info";
        this.log[level]({ subnet, added: r.added, removed: r.removed, why }, why === "periodic" ? "repaired peer drift" : "peers programmed");
      }
    } catch (err) {
      this.log.error({ subnet, err: (err as Error).message, why }, "programming peers failed");
    }
  }
}
