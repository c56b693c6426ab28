/**
 * The records of hosts that are gone for good, collected by one live host.
 *
 * Design note.
 *  - A host whose liveness key is gone but whose records remain gets a marker
 *    (`gone/<host>`, created once, with the time it was first seen gone).
 *    After `deadHostGraceMs` one live host claims the marker with a CAS and
 *    removes that host's endpoints, addresses, memberships and pool
 *    references; the last member or holder out deletes the network or pool as
 *    usual. A host that is alive again has its marker deleted by the next pass
 *    of any host, and re-asserts its own records (own-records.ts) if they
 *    were collected after all.
 *  - Lock: no driver lock. These are other hosts' records, which no create or
 *    delete on this host touches. Between hosts, the claimed marker is the
 *    lock: one collector per gone host, taken over only when its claim is
 *    older than CLAIM_TIMEOUT_MS (a collector that died half-way).
 *  - The records come from the pass's snapshot and may be stale: endpoint and
 *    address records are deleted only at the index read, and leaving a
 *    network or dropping a pool reference is idempotent.
 *  - Order: endpoints and addresses, then memberships and pool references,
 *    as a host's own teardown goes: the records whose last one out deletes
 *    more (the network with its endpoint keys, the pool with its addresses)
 *    go after the ones that stand in them.
 *  - A host's own records (`by-host/<h>/`) are deleted when the store lets
 *    this host (no ACLs). A per-host ACL policy refuses it: then they stay,
 *    no reader takes them (their host is not alive), the marker stays with
 *    `leftover` saying so (and is not collected again), the host deletes them
 *    itself if it comes back (own-records.ts), and an operator removes a host
 *    gone for good with `consul kv delete -recurse tsoverlay/v1/by-host/<h>/`.
 */
import type { Logger } from "../../lib/log.js";
import type { ClusterIpam } from "../ipam/cluster-ipam.js";
import type { HostRegistry } from "../hosts/host-registry.js";
import type { ClusterNetworks } from "../network/cluster-networks.js";
import { isStoreRefusal, type Store } from "../contracts/store.js";
import { messageOf } from "../../lib/errors.js";
import { keys } from "./keys.js";
import { GoneMarker, parseRecord } from "./records.js";
import type { RecordSnapshot } from "./record-snapshot.js";

/** A collector that claimed a marker and then vanished is replaced after this long. */
const CLAIM_TIMEOUT_MS = 60_000;

export interface DeadHostsDeps {
  store: Store;
  hosts: HostRegistry;
  ipam: ClusterIpam;
  networks: ClusterNetworks;
  log: Logger;
}

export interface DeadHostsOptions {
  hostId: string;
  /** How long a host must have been gone before its records are collected (ms). */
  deadHostGraceMs: number;
  now: () => number;
}

export class DeadHosts {
  constructor(
    private readonly d: DeadHostsDeps,
    private readonly opts: DeadHostsOptions,
  ) {}

  /**
   * Marks the hosts that the snapshot's records name and the registry does
   * not know alive, unmarks those that are back, and collects those gone past
   * the grace. Only meaningful once the registry is ready (has read who is
   * alive). Resolves the hosts collected.
   */
  async collect(seen: RecordSnapshot): Promise<string[]> {
    const self = this.opts.hostId;
    const markers = await this.d.store.list(keys.gone());
    const referenced = new Set<string>([
      ...seen.endpoints.flatMap((e) => (e.hostId === undefined ? [] : [e.hostId])),
      ...seen.memberships.map((m) => m.hostId),
      ...seen.addresses.filter((a) => a.record.kind === "endpoint").map((a) => a.record.host),
      ...seen.refs.map((r) => r.hostId),
    ]);
    const dead = [...referenced].filter((h) => h !== self && !this.d.hosts.isAlive(h));

    for (const kv of markers) {
      const host = kv.key.slice(keys.gone().length);
      if (!dead.includes(host)) await this.d.store.delete(kv.key, kv.modifyIndex);
    }
    const collected: string[] = [];
    for (const host of dead) {
      const key = keys.goneHost(host);
      const kv = markers.find((m) => m.key === key);
      const marker = kv === undefined ? undefined : parseRecord(GoneMarker, kv.value);
      if (kv === undefined || marker === undefined) {
        const fresh: GoneMarker = { since: this.timestamp(), by: self };
        await this.d.store.cas(key, JSON.stringify(fresh), kv?.modifyIndex ?? 0);
        this.d.log.info({ host, graceMs: this.opts.deadHostGraceMs }, "host gone; its records are collected unless it comes back");
        continue;
      }
      const now = this.opts.now();
      if (marker.leftover !== undefined || now - Date.parse(marker.since) < this.opts.deadHostGraceMs) continue;
      const claimed = marker.collector !== undefined && marker.collector !== self && now - Date.parse(marker.claimedAt ?? marker.since) < CLAIM_TIMEOUT_MS;
      if (claimed) continue;
      const claim: GoneMarker = { ...marker, collector: self, claimedAt: this.timestamp() };
      if (!(await this.d.store.cas(key, JSON.stringify(claim), kv.modifyIndex))) continue; // another host claimed it
      const refused = await this.remove(host, seen);
      const done = await this.d.store.get(key);
      if (refused === undefined) {
        if (done !== undefined) await this.d.store.delete(key, done.modifyIndex);
      } else {
        const leftover = `its own records under ${keys.hostPrefix(host)} could not be deleted (${refused}); to remove a host gone for good: consul kv delete -recurse ${keys.hostPrefix(host)} with a token that may`;
        const kept: GoneMarker = { ...claim, leftover };
        if (done !== undefined) await this.d.store.cas(key, JSON.stringify(kept), done.modifyIndex);
        this.d.log.warn({ host, leftover }, "a gone host's own records are left in the store");
      }
      collected.push(host);
      this.d.log.warn({ host, goneSince: marker.since }, "collected the records of a host gone for good");
    }
    return collected;
  }

  /** Removes the host's records; resolves why the store refused deleting its own (`by-host/<h>/`), if it did. */
  private async remove(host: string, seen: RecordSnapshot): Promise<string | undefined> {
    let refused: string | undefined;
    for (const e of seen.endpoints) {
      if (e.hostId !== host || refused !== undefined) continue;
      try {
        await this.d.store.delete(e.kv.key, e.kv.modifyIndex);
      } catch (err) {
        if (!isStoreRefusal(err)) throw err;
        // The previous layout's keys may be read-only for everyone: nothing to record.
        if (e.layout === "by-host") refused = messageOf(err);
      }
    }
    if (refused === undefined) {
      await this.d.store.deleteTree(keys.hostAnswers(host)).catch((err: unknown) => {
        if (!isStoreRefusal(err)) throw err;
        refused = messageOf(err);
      });
    }
    for (const a of seen.addresses) if (a.record.host === host && a.record.kind === "endpoint") await this.d.ipam.dropAddressRecord(a);
    for (const m of seen.memberships) if (m.hostId === host) await this.d.networks.leave(m.subnet, host);
    for (const r of seen.refs) if (r.hostId === host) await this.d.ipam.dropPoolReference(r.subnet, host);
    return refused;
  }

  private timestamp(): string {
    return new Date(this.opts.now()).toISOString();
  }
}
