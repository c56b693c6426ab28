/**
 * This host's records in the cluster, made to match its local state.
 *
 * Design note.
 *  - Level-triggered, like peers: local state (this host's networks and
 *    endpoints) is the truth. A record of this host that nothing local backs
 *    is removed (a teardown whose cluster part was lost, a crash between two
 *    writes); one that local state needs and the cluster lacks, or has behind
 *    what this host knows, is written again (collected while this host was cut
 *    off, a store restored from an old snapshot, names recorded while the
 *    store was away).
 *  - Address and pool records are only removed after `ownGraceMs`: Docker
 *    allocates them a moment before it creates the endpoint or network that
 *    uses them, so a young one that nothing backs yet is not a leftover.
 *  - Lock: each network is checked under the driver's lock for it, and its
 *    local state is read inside that lock, so a create or delete running
 *    concurrently is never undone. The cluster records come from the pass's
 *    snapshot, read before the lock, so every write made from them is
 *    conditional on the index read, create-only, or idempotent.
 *  - Order within a network: pool, membership, addresses, endpoints — the
 *    order in which Docker's calls create them (RequestPool, CreateNetwork,
 *    RequestAddress, CreateEndpoint), so no record is written back before the
 *    ones it stands on, and the endpoint record, which peers program, last.
 */
import type { ClusterIpam } from "../ipam/cluster-ipam.js";
import type { LocalEndpoint, LocalNetwork, LocalState } from "../local/local-state.js";
import { ClusterNetworks } from "../network/cluster-networks.js";
import type { Store } from "../contracts/store.js";
import { keys } from "./keys.js";
import type { EndpointRecord } from "./records.js";
import type { RecordSnapshot } from "./record-snapshot.js";
import { addressOf } from "../../lib/net.js";

export interface OwnRecordsDeps {
  store: Store;
  local: LocalState;
  ipam: ClusterIpam;
  networks: ClusterNetworks;
  /** The record peers program for a local endpoint. */
  endpointRecord: (ep: LocalEndpoint) => EndpointRecord;
  /** Runs `work` under the driver's lock for the network. */
  exclusive: <T>(subnet: string, work: () => Promise<T>) => Promise<T>;
}

export interface OwnRecordsOptions {
  hostId: string;
  /** How old an unbacked address or pool record of this host must be before it is removed (ms). */
  ownGraceMs: number;
  now: () => number;
}

export interface OwnRecordsReport {
  /** Records of this host removed because nothing local backs them. */
  removed: number;
  /** Records of this host written again because local state needs them. */
  restored: number;
  /** Problems that need a person (an address now held by someone else, …). */
  conflicts: string[];
}

export class OwnRecords {
  constructor(
    private readonly d: OwnRecordsDeps,
    private readonly opts: OwnRecordsOptions,
  ) {}

  /** Every network this host has locally or has records in, one at a time under its lock. */
  async reconcile(seen: RecordSnapshot): Promise<OwnRecordsReport> {
    const self = this.opts.hostId;
    const report: OwnRecordsReport = { removed: 0, restored: 0, conflicts: [] };
    const localNets = await this.d.local.networks();
    const subnets = new Set<string>([
      ...localNets.map((n) => n.subnet),
      ...seen.endpoints.filter((e) => e.layout === "by-host" && e.hostId === self).map((e) => e.subnet),
      ...seen.memberships.filter((m) => m.hostId === self).map((m) => m.subnet),
      ...seen.addresses.filter((a) => a.record.host === self && a.record.kind === "endpoint").map((a) => a.pool),
      ...seen.refs.filter((r) => r.hostId === self).map((r) => r.subnet),
    ]);
    for (const subnet of subnets) {
      await this.d.exclusive(subnet, async () => {
        const net = await this.d.local.networkOn(subnet);
        const eps = (await this.d.local.endpoints()).filter((e) => e.subnet === subnet);
        await this.pool(subnet, net, seen, report);
        await this.membership(subnet, net, seen, report);
        await this.addresses(subnet, net, eps, seen, report);
        await this.endpoints(subnet, eps, seen, report);
      });
    }
    return report;
  }

  private async pool(subnet: string, net: LocalNetwork | undefined, seen: RecordSnapshot, report: OwnRecordsReport): Promise<void> {
    const self = this.opts.hostId;
    const mine = seen.refs.find((r) => r.subnet === subnet && r.hostId === self);
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

  private async membership(subnet: string, net: LocalNetwork | undefined, seen: RecordSnapshot, report: OwnRecordsReport): Promise<void> {
    const self = this.opts.hostId;
    const member = seen.memberships.some((m) => m.subnet === subnet && m.hostId === self);
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

  private async addresses(subnet: string, net: LocalNetwork | undefined, eps: LocalEndpoint[], seen: RecordSnapshot, report: OwnRecordsReport): Promise<void> {
    const self = this.opts.hostId;
    const used = new Set(eps.map((e) => addressOf(e.addressCidr)));
    for (const a of seen.addresses) {
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

  private async endpoints(subnet: string, eps: LocalEndpoint[], seen: RecordSnapshot, report: OwnRecordsReport): Promise<void> {
    const self = this.opts.hostId;
    // Under this host's own prefix; the previous layout's copies are previous-layout.ts's.
    const mine = seen.endpoints.filter((e) => e.layout === "by-host" && e.hostId === self && e.subnet === subnet);
    for (const e of mine) {
      if (eps.some((l) => l.endpointId === e.endpointId)) continue;
      if (await this.d.store.delete(e.kv.key, e.kv.modifyIndex)) report.removed++;
    }
    for (const ep of eps) {
      const key = keys.hostEndpoint(self, subnet, ep.endpointId);
      const want = JSON.stringify(this.d.endpointRecord(ep));
      const have = mine.find((e) => e.kv.key === key);
      // Missing, or behind what this host knows (names or ports recorded while the store was away).
      if (have?.kv.value === want) continue;
      if (await this.d.store.cas(key, want, have?.kv.modifyIndex ?? 0)) report.restored++;
    }
  }

  private older(at: string): boolean {
    const t = Date.parse(at);
    return Number.isNaN(t) || this.opts.now() - t >= this.opts.ownGraceMs;
  }
}
