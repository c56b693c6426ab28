import { parsePreviousEndpointKey } from "../cluster/keys.js";
import { byHostEndpoints, checkEndpoint, type Checked, type EndpointCandidate, type LiveHost, type RejectionLog } from "../cluster/record-checks.js";
import type { RecordFeed } from "../cluster/record-feed.js";
import type { EndpointRecord } from "../cluster/records.js";
import type { Datapath, PeerEntry } from "../contracts/datapath.js";
import { driftOf, type PeerDrift } from "./peer-drift.js";
import type { HostRegistry } from "../hosts/host-registry.js";
import type { Logger } from "../../lib/log.js";
import { metrics } from "../../lib/metrics.js";
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
  /** The network's gateway (an endpoint record never has its address). */
  gatewayCidr: string;
  /** The network's endpoint records that passed the checks, with their store index (newer = higher). */
  endpoints: { rec: EndpointRecord; index: number }[];
  firstSync: Promise<void>;
  markSynced: () => void;
  /** An encrypted network's: where a host's frames go, given its VTEP (its tunnel address). */
  tunnel: ((vtep: string) => string) | undefined;
  /**
   * Each `by-host/` record's check, by key: kept while the record (its store
   * index) and its host's live record (the same object: the registry makes
   * a new one when a host changes) stay the same, so that a change of one
   * record re-checks one record, not every peer of the network.
   */
  checked: Map<string, { index: number; host: LiveHost | undefined; result: Checked<EndpointRecord> }>;
  /** The last periodic pass: when it started and how long it took (performance.now() ms); Infinity while it runs. */
  lastPeriodic?: { at: number; tookMs: number };
}

/**
 * A network's periodic pass (which reads its three tables back) is skipped
 * until this many times its last duration has passed: at 10,000 peers one
 * pass takes most of a second, and running it every few seconds would keep
 * a core busy repairing nothing. Small networks, whose pass takes a few
 * milliseconds, are checked every period as before.
 */
const PERIODIC_DUTY = 20;

/**
 * Keeps each joined network's neighbor/FDB tables equal to the cluster's
 * endpoints on other live hosts. The kernel tables are a cache of the store:
 * every store change triggers a sync, and a periodic reconcile repairs drift
 * (entries deleted or added behind our back), at most 1/PERIODIC_DUTY of the
 * time per network.
 *
 * Design note. What is desired is derived, never remembered: the records of
 * other live hosts that pass the checks of record-checks.ts (the key names
 * the host, the host is alive, the VTEP is that host's, the address is a host
 * address of this very network), minus anything that collides with an
 * endpoint of this host (an address that moved here while the old holder's
 * record lingers), and for an address or MAC claimed by two records the
 * newest one. A followed network is one this host has joined, so the cluster
 * has its record. Nothing is programmed or removed before the store and the
 * host list have answered once: a plugin that restarts while Consul is away
 * keeps the tables the kernel still holds instead of emptying them.
 */
export class PeerSync {
  private readonly networks = new Map<string, Followed>();
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribeHosts: () => void;
  private readonly unsubscribeFeed: () => void;

  constructor(
    private readonly feed: RecordFeed,
    private readonly datapath: Datapath,
    private readonly hosts: HostRegistry,
    private readonly localOf: LocalEndpointsOf,
    private readonly log: Logger,
    reconcileMs: number,
    private readonly rejections?: RejectionLog,
  ) {
    this.timer = setInterval(() => void this.reconcileAll("periodic"), reconcileMs);
    this.timer.unref();
    this.unsubscribeHosts = hosts.onChange(() => {
      // Which records count depends on the hosts (alive, their VTEPs).
      this.refreshAll();
      void this.reconcileAll("hosts changed");
    });
    this.unsubscribeFeed = feed.onChange((c) => {
      if (!c.endpoints) return;
      this.refreshAll();
      const changedAt = performance.now();
      for (const subnet of this.networks.keys()) void this.sync(subnet, "endpoints changed", changedAt);
    });
  }

  /**
   * Starts following a network's endpoints. Resolves after the first sync, or
   * after `waitMs` if the store has not answered by then (it goes on in the background).
   */
  async start(subnet: string, gatewayCidr: string, waitMs: number, tunnel?: (vtep: string) => string): Promise<void> {
    let entry = this.networks.get(subnet);
    if (entry === undefined) {
      let markSynced!: () => void;
      const firstSync = new Promise<void>((resolve) => (markSynced = resolve));
      entry = { gatewayCidr, endpoints: [], checked: new Map(), firstSync, markSynced, tunnel };
      this.networks.set(subnet, entry);
      this.refresh(subnet, entry);
      if (this.feed.ready) void this.sync(subnet, "network followed");
    }
    if (waitMs <= 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([entry.firstSync, new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
  }

  stop(subnet: string): void {
    this.networks.delete(subnet);
  }

  stopAll(): void {
    clearInterval(this.timer);
    this.unsubscribeHosts();
    this.unsubscribeFeed();
    for (const subnet of [...this.networks.keys()]) this.stop(subnet);
  }

  /** Subnets followed, and whether each has heard from the store. */
  followed(): { subnet: string; delivered: boolean; endpoints: number }[] {
    return [...this.networks].map(([subnet, e]) => ({ subnet, delivered: this.feed.ready, endpoints: e.endpoints.length }));
  }

  /**
   * Every endpoint record of a followed network on a live host that passed
   * the checks, this host's own included; for an address claimed twice, the
   * newest. What the name service answers from.
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
      out.push({ ip: rec.ip, mac: rec.mac, vtep: entry.tunnel === undefined ? rec.vtep : entry.tunnel(rec.vtep) });
    }
    return out;
  }

  /**
   * Compares each followed network's kernel tables with the peers desired,
   * changing nothing (`tsoverlay peers`): what the next reconcile would repair.
   */
  async check(): Promise<PeerCheck[]> {
    const out: PeerCheck[] = [];
    for (const subnet of this.networks.keys()) {
      if (!this.feed.ready || !this.hosts.ready || !this.datapath.hasNetwork(subnet)) {
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

  private refreshAll(): void {
    for (const [subnet, entry] of this.networks) this.refresh(subnet, entry);
  }

  /** The network's records from the feed, checked (record-checks.ts); rejections are logged once each. */
  private refresh(subnet: string, entry: Followed): void {
    if (!this.feed.ready || !this.hosts.ready) return;
    const s = this.feed.current();
    const candidates: EndpointCandidate[] = [
      ...byHostEndpoints(s.byHost),
      ...s.previousEndpoints.flatMap((kv) => {
        const k = parsePreviousEndpointKey(kv.key);
        return k === undefined ? [] : [{ kv, keyHost: undefined, ...k }];
      }),
    ].filter((c) => c.subnet === subnet);
    const ctx = { host: (h: string) => this.hosts.host(h), network: () => ({ gatewayCidr: entry.gatewayCidr }) };
    const checked: Followed["checked"] = new Map();
    entry.endpoints = candidates.flatMap((c) => {
      const host = c.keyHost === undefined ? undefined : this.hosts.host(c.keyHost);
      const before = c.keyHost === undefined ? undefined : entry.checked.get(c.kv.key);
      let r: Checked<EndpointRecord>;
      if (before !== undefined && before.index === c.kv.modifyIndex && before.host === host) r = before.result;
      else {
        r = checkEndpoint(c, ctx);
        if (!r.ok) this.rejections?.note(c.kv, r);
      }
      if (c.keyHost !== undefined) checked.set(c.kv.key, { index: c.kv.modifyIndex, host, result: r });
      return r.ok ? [{ rec: r.value, index: c.kv.modifyIndex }] : [];
    });
    entry.checked = checked;
  }

  private async reconcileAll(why: string): Promise<void> {
    for (const [subnet, entry] of this.networks) {
      if (why !== "periodic") {
        await this.sync(subnet, why);
        continue;
      }
      const last = entry.lastPeriodic;
      const at = performance.now();
      if (last !== undefined && at - last.at < last.tookMs * PERIODIC_DUTY) continue;
      entry.lastPeriodic = { at, tookMs: Number.POSITIVE_INFINITY }; // the timer's next ticks skip a pass under way
      await this.sync(subnet, why);
      entry.lastPeriodic = { at, tookMs: performance.now() - at };
    }
  }

  /** `changedAt`: when a store change reached this host (performance.now()), to measure the time until it is programmed. */
  private async sync(subnet: string, why: string, changedAt?: number): Promise<void> {
    const entry = this.networks.get(subnet);
    if (entry === undefined || !this.feed.ready || !this.hosts.ready || !this.datapath.hasNetwork(subnet)) return;
    const startedAt = performance.now();
    try {
      // A store change writes only what changed; every other sync (periodic, a network followed, a local endpoint) reads the kernel back.
      const changesOnly = why === "endpoints changed" || why === "hosts changed";
      const r = await this.datapath.syncPeers(subnet, await this.desired(subnet), { changesOnly });
      metrics.peerSyncPassSeconds.observe({ trigger: why === "periodic" ? "periodic" : "change" }, (performance.now() - startedAt) / 1000);
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
