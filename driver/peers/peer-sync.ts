import { keys } from "../cluster/keys.js";
import { EndpointRecord, parseRecord } from "../cluster/records.js";
import type { Datapath, PeerEntry } from "../contracts/datapath.js";
import { driftOf, type PeerDrift } from "./peer-drift.js";
import type { HostRegistry } from "../hosts/host-registry.js";
import type { Logger } from "../../lib/log.js";
import { metrics } from "../../lib/metrics.js";
import type { KV, Store, Watch } from "../contracts/store.js";
import { messageOf } from "../../lib/errors.js";

/** One network's tables against its desired peers; `checked` is false until the store has answered (nothing is desired yet). */
export interface PeerCheck extends PeerDrift {
  subnet: string;
  peers: number;
  checked: boolean;
}

/** `tsoverlay peers`: each live host's check of its kernel tables, and the live hosts that did not answer. */
export interface PeerReport {
  hosts: { hostId: string; networks: PeerCheck[] | null; error: string | null }[];
  missing: string[];
}

/** The report from every host's answer to "peers" (see ClusterAsk); an answer is another host's JSON: nothing of its shape is trusted. */
export function peerReportOf(asked: { answers: Map<string, unknown>; missing: string[] }): PeerReport {
  const hosts = [...asked.answers]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([hostId, a]) => {
      if (Array.isArray(a)) return { hostId, networks: a as PeerCheck[], error: null };
      const e = (a as { error?: unknown } | null)?.error;
      return { hostId, networks: null, error: typeof e === "string" ? e : "unreadable answer" };
    });
  return { hosts, missing: asked.missing };
}

/** What this host has on a network itself: its own endpoints win over any record that claims their address or MAC. */
export type LocalEndpointsOf = (subnet: string) => Promise<{ ip: string; mac: string }[]>;

interface Followed {
  watch: Watch;
  /** The network's endpoint records with their store index (newer = higher). */
  endpoints: { rec: EndpointRecord; index: number }[];
  /** The store has answered at least once: until then the kernel tables are left as they are. */
  delivered: boolean;
  firstSync: Promise<void>;
  markSynced: () => void;
}

/**
 * Keeps each joined network's neighbor/FDB tables equal to the cluster's
 * endpoints on other live hosts. The kernel tables are a cache of the store:
 * every store change triggers a sync, and a periodic reconcile repairs drift
 * (entries deleted or added behind our back).
 *
 * Design note. What is desired is derived, never remembered: the records of
 * other live hosts, minus anything that collides with an endpoint of this host
 * (an address that moved here while the old holder's record lingers), and for
 * an address or MAC claimed by two records the newest one. Nothing is
 * programmed or removed before the store and the host list have answered once:
 * a plugin that restarts while Consul is away keeps the tables the kernel
 * still holds instead of emptying them.
 */
export class PeerSync {
  private readonly networks = new Map<string, Followed>();
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribeHosts: () => void;

  constructor(
    private readonly store: Store,
    private readonly datapath: Datapath,
    private readonly hosts: HostRegistry,
    private readonly localOf: LocalEndpointsOf,
    private readonly log: Logger,
    reconcileMs: number,
  ) {
    this.timer = setInterval(() => void this.reconcileAll("periodic"), reconcileMs);
    this.timer.unref();
    this.unsubscribeHosts = hosts.onChange(() => void this.reconcileAll("hosts changed"));
  }

  /**
   * Starts following a network's endpoints. Resolves after the first sync, or
   * after `waitMs` if the store has not answered by then (it goes on in the background).
   */
  async start(subnet: string, waitMs: number): Promise<void> {
    let entry = this.networks.get(subnet);
    if (entry === undefined) {
      let markSynced!: () => void;
      const firstSync = new Promise<void>((resolve) => (markSynced = resolve));
      const watch = this.store.watch(
        keys.endpoints(subnet),
        (kvs) => this.onEndpoints(subnet, kvs),
        (err) => this.log.warn({ subnet, err: err.message }, "watching endpoints failed; retrying"),
      );
      entry = { watch, endpoints: [], delivered: false, firstSync, markSynced };
      this.networks.set(subnet, entry);
    }
    if (waitMs <= 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([entry.firstSync, new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
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

  /** Subnets followed, and whether each has heard from the store. */
  followed(): { subnet: string; delivered: boolean; endpoints: number }[] {
    return [...this.networks].map(([subnet, e]) => ({ subnet, delivered: e.delivered, endpoints: e.endpoints.length }));
  }

  /**
   * Every endpoint record of a followed network on a live host, this host's
   * own included; for an address claimed twice, the newest. What the name
   * service answers from.
   */
  records(subnet: string): EndpointRecord[] {
    const entry = this.networks.get(subnet);
    if (entry === undefined) return [];
    const self = this.hosts.self.hostId;
    const seen = new Set<string>();
    const out: EndpointRecord[] = [];
    for (const { rec } of [...entry.endpoints].sort((a, b) => b.index - a.index)) {
      if (seen.has(rec.ip) || (rec.hostId !== self && !this.hosts.isAlive(rec.hostId))) continue;
      seen.add(rec.ip);
      out.push(rec);
    }
    return out;
  }

  /** The remote peers this host should program for the network (see the design note). */
  async desired(subnet: string): Promise<PeerEntry[]> {
    const entry = this.networks.get(subnet);
    if (entry === undefined) return [];
    const local = await this.localOf(subnet);
    const localIps = new Set(local.map((l) => l.ip));
    const localMacs = new Set(local.map((l) => l.mac.toLowerCase()));
    const candidates = entry.endpoints
      .filter(({ rec }) => rec.hostId !== this.hosts.self.hostId && this.hosts.isAlive(rec.hostId))
      .filter(({ rec }) => !localIps.has(rec.ip) && !localMacs.has(rec.mac.toLowerCase()))
      .sort((a, b) => b.index - a.index);
    const byIp = new Set<string>();
    const byMac = new Set<string>();
    const out: PeerEntry[] = [];
    for (const { rec } of candidates) {
      const mac = rec.mac.toLowerCase();
      if (byIp.has(rec.ip) || byMac.has(mac)) {
        this.log.warn(
          { subnet, ip: rec.ip, mac, host: rec.hostId, endpointId: rec.endpointId },
          "ignoring an older endpoint record that collides with a newer one",
        );
        continue;
      }
      byIp.add(rec.ip);
      byMac.add(mac);
      out.push({ ip: rec.ip, mac: rec.mac, vtep: rec.vtep });
    }
    return out;
  }

  /**
   * Compares each followed network's kernel tables with the peers desired,
   * changing nothing (`tsoverlay peers`): what the next reconcile would repair.
   */
  async check(): Promise<PeerCheck[]> {
    const out: PeerCheck[] = [];
    for (const [subnet, entry] of this.networks) {
      if (!entry.delivered || !this.hosts.ready || !this.datapath.hasNetwork(subnet)) {
        out.push({ subnet, peers: 0, checked: false, missing: [], stale: [], extra: [] });
        continue;
      }
      const desired = await this.desired(subnet);
      out.push({ subnet, peers: desired.length, checked: true, ...driftOf(desired, await this.datapath.peerTables(subnet)) });
    }
    return out;
  }

  /** Re-syncs one followed network now (e.g. after a local endpoint appeared or went). */
  async resync(subnet: string, why: string): Promise<void> {
    await this.sync(subnet, why);
  }

  private onEndpoints(subnet: string, kvs: KV[]): void {
    const entry = this.networks.get(subnet);
    if (entry === undefined) return;
    entry.endpoints = kvs.flatMap((kv) => {
      const rec = parseRecord(EndpointRecord, kv.value);
      return rec === undefined ? [] : [{ rec, index: kv.modifyIndex }];
    });
    entry.delivered = true;
    void this.sync(subnet, "endpoints changed", performance.now());
  }

  private async reconcileAll(why: string): Promise<void> {
    for (const subnet of this.networks.keys()) await this.sync(subnet, why);
  }

  /** `changedAt`: when a store change reached this host (performance.now()), to measure the time until it is programmed. */
  private async sync(subnet: string, why: string, changedAt?: number): Promise<void> {
    const entry = this.networks.get(subnet);
    if (entry === undefined || !entry.delivered || !this.hosts.ready || !this.datapath.hasNetwork(subnet)) return;
    try {
      const r = await this.datapath.syncPeers(subnet, await this.desired(subnet));
      if (changedAt !== undefined) metrics.peerSyncSeconds.observe((performance.now() - changedAt) / 1000);
      if (why === "periodic") {
        for (const [table, n] of Object.entries(r.tables ?? {})) {
          if (n.added > 0) metrics.reconcileRepairs.inc({ table, action: "added" }, n.added);
          if (n.removed > 0) metrics.reconcileRepairs.inc({ table, action: "removed" }, n.removed);
        }
      }
      if (r.added > 0 || r.removed > 0) {
        const level = why === "periodic" ? "warn" : "info";
        this.log[level]({ subnet, added: r.added, removed: r.removed, why }, why === "periodic" ? "repaired peer drift" : "peers programmed");
      }
    } catch (err) {
      this.log.error({ subnet, err: messageOf(err), why }, "programming peers failed");
    } finally {
      entry.markSynced();
    }
  }
}
