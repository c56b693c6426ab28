// Over 300 lines on purpose: the collector's two halves (this host's own
// records, gone hosts' records) share one pass, one lock order and one report.
/**
 * Keeps the cluster's records honest about hosts: this host's own, and those
 * of hosts that are gone for good.
 *
 * Design note.
 *  - Own records are level-triggered, like peers: at start and then
 *    periodically, this host's local state (its networks and endpoints) is the
 *    truth, and its records in the cluster are made to match it. A record of
 *    this host that nothing local backs is removed (a teardown whose cluster
 *    part was lost, a crash between two writes); one that local state needs
 *    and the cluster lacks is written again (collected while this host was
 *    cut off, a store restored from an old snapshot). Address and pool records
 *    are only removed after `ownGraceMs`, because Docker allocates them a
 *    moment before it creates the endpoint or network that uses them. Each
 *    network is checked under the driver's lock for it, so a concurrent
 *    create or delete is never undone.
 *  - Dead hosts: a host whose liveness key is gone but whose records remain
 *    gets a marker (`gone/<host>`, created once, with the time it was first
 *    seen gone). After `deadHostGraceMs` one live host claims the marker with
 *    a CAS and removes that host's endpoints, addresses, memberships and pool
 *    references; the last member or holder out deletes the network or pool as
 *    usual. A host that comes back deletes its marker, and re-asserts its own
 *    records if they were collected after all.
 */
import type { Logger } from "../../lib/log.js";
import type { ClusterIpam } from "../ipam/cluster-ipam.js";
import type { HostRegistry } from "../hosts/host-registry.js";
import type { LocalEndpoint, LocalNetwork, LocalState } from "../local/local-state.js";
import type { Outbox } from "../local/outbox.js";
import { ClusterNetworks } from "../network/cluster-networks.js";
import type { KV, Store } from "../contracts/store.js";
import { keys, subnetFromKey } from "./keys.js";
import { EndpointRecord, GoneMarker, parseRecord } from "./records.js";
import { addressOf } from "../../lib/net.js";
import { messageOf } from "../../lib/errors.js";

/** A collector that claimed a marker and then vanished is replaced after this long. */
const CLAIM_TIMEOUT_MS = 60_000;

export interface CollectorDeps {
  store: Store;
  local: LocalState;
  outbox: Outbox;
  hosts: HostRegistry;
  ipam: ClusterIpam;
  networks: ClusterNetworks;
  /** The record peers program for a local endpoint. */
  endpointRecord: (ep: LocalEndpoint) => EndpointRecord;
  /** Runs `work` under the driver's lock for the network. */
  exclusive: <T>(subnet: string, work: () => Promise<T>) => Promise<T>;
  log: Logger;
}

export interface CollectorOptions {
  hostId: string;
  /** How often a pass runs (ms). */
  periodMs: number;
  /** How long a host must have been gone before its records are collected (ms). */
  deadHostGraceMs: number;
  /** How old an unbacked address or pool record of this host must be before it is removed (ms). */
  ownGraceMs: number;
  now?: () => number;
}

export interface CollectorReport {
  /** Records of this host removed because nothing local backs them. */
  removed: number;
  /** Records of this host written again because local state needs them. */
  restored: number;
  /** Hosts whose records this pass collected. */
  collectedHosts: string[];
  /** Problems that need a person (an address now held by someone else, …). */
  conflicts: string[];
}

interface EndpointKv {
  subnet: string;
  endpointId: string;
  rec: EndpointRecord | undefined;
  kv: KV;
}

export class RecordCollector {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<CollectorReport | undefined> | undefined;
  private stopped = false;
  private readonly now: () => number;
  private last: { at: string; report?: CollectorReport; error?: string } | undefined;

  constructor(
    private readonly d: CollectorDeps,
    private readonly opts: CollectorOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  /** Runs a pass now and then every periodMs. */
  start(): void {
    const tick = (): void => {
      void this.pass().finally(() => {
        if (this.stopped) return;
        this.timer = setTimeout(tick, this.opts.periodMs);
        this.timer.unref();
      });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  status(): { at: string; report?: CollectorReport; error?: string } | undefined {
    return this.last;
  }

  /** One pass; passes never overlap. Resolves undefined when the store could not be read. */
  pass(): Promise<CollectorReport | undefined> {
    if (this.running) return this.running;
    this.running = this.run().finally(() => (this.running = undefined));
    return this.running;
  }

  private async run(): Promise<CollectorReport | undefined> {
    const report: CollectorReport = { removed: 0, restored: 0, collectedHosts: [], conflicts: [] };
    try {
      // Teardown still on its way to the cluster would look like drift: let it land first.
      if (this.d.outbox.status().pending === 0) await this.ownRecords(report);
      if (this.d.hosts.ready) await this.deadHosts(report);
    } catch (err) {
      this.last = { at: new Date(this.now()).toISOString(), error: messageOf(err) };
      this.d.log.warn({ err: messageOf(err) }, "collecting records failed; next pass retries");
      return undefined;
    }
    this.last = { at: new Date(this.now()).toISOString(), report };
    if (report.removed > 0 || report.restored > 0 || report.collectedHosts.length > 0) {
      this.d.log.info(report, "cluster records collected");
    }
    for (const c of report.conflicts) this.d.log.error({ conflict: c }, "cluster record conflict");
    return report;
  }

  // ---------------------------------------------------------------- own

  private async ownRecords(report: CollectorReport): Promise<void> {
    const self = this.opts.hostId;
    const [endpoints, memberships, addresses, refs] = await Promise.all([
      this.endpointKvs(),
      this.d.networks.memberships(),
      this.d.ipam.addressRecords(),
      this.d.ipam.poolReferences(),
    ]);
    const localNets = await this.d.local.networks();
    const subnets = new Set<string>([
      ...localNets.map((n) => n.subnet),
      ...endpoints.filter((e) => e.rec?.hostId === self).map((e) => e.subnet),
      ...memberships.filter((m) => m.hostId === self).map((m) => m.subnet),
      ...addresses.filter((a) => a.record.host === self && a.record.kind === "endpoint").map((a) => a.pool),
      ...refs.filter((r) => r.hostId === self).map((r) => r.subnet),
    ]);
    for (const subnet of subnets) {
      await this.d.exclusive(subnet, async () => {
        const net = await this.d.local.networkOn(subnet);
        const eps = (await this.d.local.endpoints()).filter((e) => e.subnet === subnet);
        await this.ownPool(subnet, net, refs, report);
        await this.ownMembership(subnet, net, memberships, report);
        await this.ownAddresses(subnet, net, eps, addresses, report);
        await this.ownEndpoints(subnet, eps, endpoints, report);
      });
    }
  }

  private async ownPool(
    subnet: string,
    net: LocalNetwork | undefined,
    refs: { subnet: string; hostId: string; at: string }[],
    report: CollectorReport,
  ): Promise<void> {
    const self = this.opts.hostId;
    const mine = refs.find((r) => r.subnet === subnet && r.hostId === self);
    if (net === undefined) {
      if (mine !== undefined && this.older(mine.at)) {
        await this.d.ipam.dropPoolReference(subnet, self);
        report.removed++;
      }
      return;
    }
    if (mine === undefined) {
      const r = await this.d.ipam.reclaimPool(subnet, self);
      if (r.ok) report.restored++;
      else report.conflicts.push(`network ${subnet}: cannot take its pool again: ${r.error.message}`);
    }
  }

  private async ownMembership(
    subnet: string,
    net: LocalNetwork | undefined,
    memberships: { subnet: string; hostId: string }[],
    report: CollectorReport,
  ): Promise<void> {
    const self = this.opts.hostId;
    const member = memberships.some((m) => m.subnet === subnet && m.hostId === self);
    if (net === undefined) {
      if (member) {
        await this.d.networks.leave(subnet, self);
        report.removed++;
      }
      return;
    }
    const cluster = await this.d.networks.get(subnet);
    if (member && cluster !== undefined) return;
    if (net.record === undefined) return; // nothing to rebuild it from; the next call fetches it
    const joined = await this.d.networks.join(subnet, net.record.gatewayCidr, ClusterNetworks.optionsOf(net.record), net.networkId);
    if (joined.ok) report.restored++;
    else report.conflicts.push(`network ${subnet}: cannot restore this host's membership: ${joined.error.message}`);
  }

  private async ownAddresses(
    subnet: string,
    net: LocalNetwork | undefined,
    eps: LocalEndpoint[],
    addresses: Awaited<ReturnType<ClusterIpam["addressRecords"]>>,
    report: CollectorReport,
  ): Promise<void> {
    const self = this.opts.hostId;
    const used = new Set(eps.map((e) => addressOf(e.addressCidr)));
    for (const a of addresses) {
      if (a.pool !== subnet || a.record.host !== self || a.record.kind !== "endpoint") continue;
      if (used.has(a.ip) || !this.older(a.record.at)) continue;
      if (await this.d.ipam.dropAddressRecord(a)) report.removed++;
    }
    if (net === undefined) return;
    const wanted: [string, "endpoint" | "gateway"][] = eps.map((e) => [addressOf(e.addressCidr), "endpoint"]);
    if (net.record !== undefined) wanted.push([addressOf(net.record.gatewayCidr), "gateway"]);
    for (const [ip, kind] of wanted) {
      const r = await this.d.ipam.reclaimAddress(subnet, ip, self, kind);
      if (!r.ok) report.conflicts.push(`network ${subnet}: ${r.error.message}, but this host uses it`);
      else if (r.value === "restored") report.restored++;
    }
  }

  private async ownEndpoints(subnet: string, eps: LocalEndpoint[], endpoints: EndpointKv[], report: CollectorReport): Promise<void> {
    const self = this.opts.hostId;
    for (const e of endpoints) {
      if (e.subnet !== subnet || e.rec?.hostId !== self || eps.some((l) => l.endpointId === e.endpointId)) continue;
      if (await this.d.store.delete(e.kv.key, e.kv.modifyIndex)) report.removed++;
    }
    for (const ep of eps) {
      const key = keys.endpoint(subnet, ep.endpointId);
      const want = JSON.stringify(this.d.endpointRecord(ep));
      const have = endpoints.find((e) => e.kv.key === key);
      // Missing, or behind what this host knows (names or ports recorded while the store was away).
      if (have?.kv.value === want) continue;
      if (await this.d.store.cas(key, want, have?.kv.modifyIndex ?? 0)) report.restored++;
    }
  }

  // ------------------------------------------------------------ dead hosts

  private async deadHosts(report: CollectorReport): Promise<void> {
    const self = this.opts.hostId;
    const [endpoints, memberships, addresses, refs, markers] = await Promise.all([
      this.endpointKvs(),
      this.d.networks.memberships(),
      this.d.ipam.addressRecords(),
      this.d.ipam.poolReferences(),
      this.d.store.list(keys.gone()),
    ]);
    const referenced = new Set<string>([
      ...endpoints.flatMap((e) => (e.rec === undefined ? [] : [e.rec.hostId])),
      ...memberships.map((m) => m.hostId),
      ...addresses.filter((a) => a.record.kind === "endpoint").map((a) => a.record.host),
      ...refs.map((r) => r.hostId),
    ]);
    const dead = [...referenced].filter((h) => h !== self && !this.d.hosts.isAlive(h));

    for (const kv of markers) {
      const host = kv.key.slice(keys.gone().length);
      if (!dead.includes(host)) await this.d.store.delete(kv.key, kv.modifyIndex);
    }
    for (const host of dead) {
      const key = keys.goneHost(host);
      const kv = markers.find((m) => m.key === key);
      const marker = kv === undefined ? undefined : parseRecord(GoneMarker, kv.value);
      if (kv === undefined || marker === undefined) {
        const fresh: GoneMarker = { since: new Date(this.now()).toISOString(), by: self };
        await this.d.store.cas(key, JSON.stringify(fresh), kv?.modifyIndex ?? 0);
        this.d.log.info({ host, graceMs: this.opts.deadHostGraceMs }, "host gone; its records are collected unless it comes back");
        continue;
      }
      if (this.now() - Date.parse(marker.since) < this.opts.deadHostGraceMs) continue;
      const claimed =
        marker.collector !== undefined && marker.collector !== self && this.now() - Date.parse(marker.claimedAt ?? marker.since) < CLAIM_TIMEOUT_MS;
      if (claimed) continue;
      const claim: GoneMarker = { ...marker, collector: self, claimedAt: new Date(this.now()).toISOString() };
      if (!(await this.d.store.cas(key, JSON.stringify(claim), kv.modifyIndex))) continue; // another host claimed it
      await this.collectHost(host, { endpoints, memberships, addresses, refs });
      const done = await this.d.store.get(key);
      if (done !== undefined) await this.d.store.delete(key, done.modifyIndex);
      report.collectedHosts.push(host);
      this.d.log.warn({ host, goneSince: marker.since }, "collected the records of a host gone for good");
    }
  }

  private async collectHost(
    host: string,
    seen: {
      endpoints: EndpointKv[];
      memberships: { subnet: string; hostId: string }[];
      addresses: Awaited<ReturnType<ClusterIpam["addressRecords"]>>;
      refs: { subnet: string; hostId: string }[];
    },
  ): Promise<void> {
    for (const e of seen.endpoints) if (e.rec?.hostId === host) await this.d.store.delete(e.kv.key, e.kv.modifyIndex);
    for (const a of seen.addresses) if (a.record.host === host && a.record.kind === "endpoint") await this.d.ipam.dropAddressRecord(a);
    for (const m of seen.memberships) if (m.hostId === host) await this.d.networks.leave(m.subnet, host);
    for (const r of seen.refs) if (r.hostId === host) await this.d.ipam.dropPoolReference(r.subnet, host);
  }

  // ----------------------------------------------------------------- util

  private async endpointKvs(): Promise<EndpointKv[]> {
    const prefix = keys.allEndpoints();
    const out: EndpointKv[] = [];
    for (const kv of await this.d.store.list(prefix)) {
      const m = /^([^/]+)\/([^/]+)$/.exec(kv.key.slice(prefix.length));
      if (m) out.push({ subnet: subnetFromKey(m[1]!), endpointId: m[2]!, rec: parseRecord(EndpointRecord, kv.value), kv });
    }
    return out;
  }

  private older(at: string): boolean {
    const t = Date.parse(at);
    return Number.isNaN(t) || this.now() - t >= this.opts.ownGraceMs;
  }
}
