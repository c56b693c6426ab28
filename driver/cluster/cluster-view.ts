import { keys, parsePreviousEndpointKey, previousKeys, subnetFromKey } from "./keys.js";
import { GoneMarker, NetworkRecord, parseRecord, type EndpointRecord, type HostRecord, type RecordPort } from "./records.js";
import { byHostEndpoints, checkEndpoint, livenessOf, type EndpointCandidate, type LiveHost } from "./record-checks.js";
import { CatalogEntry } from "../catalog/catalog.js";
import type { HostRegistry } from "../hosts/host-registry.js";
import type { KV, Store } from "../contracts/store.js";

/**
 * The whole cluster as the store holds it, in the shape operators ask about
 * (`tsoverlay ps|networks|hosts|ports`): one read of the hosts' own records
 * and of the shared ones, joined here so that every host's CLI shows the
 * same thing. Records are checked as the peers check them
 * (record-checks.ts), and what fails is not shown. Endpoints of hosts that
 * are not alive are listed with `alive: false` rather than hidden: a dead
 * host's records are exactly what an operator wants to see.
 */

export interface HostView {
  hostId: string;
  vtep: string;
  hostname: string | null;
  alive: boolean;
  startedAt: string | null;
  /** Since when the cluster sees it gone (absent for a live host). */
  goneSince: string | null;
  pluginVersion: string | null;
  dockerVersion: string | null;
  endpoints: number;
}

export interface NetworkView {
  /** The Docker network name(s) of the subnet (from the cluster's catalog; empty for per-host networks created without it). */
  names: string[];
  subnet: string;
  vni: number;
  gateway: string;
  internal: boolean;
  mtu: number | null;
  hosts: string[];
  endpoints: number;
}

export interface EndpointView {
  network: string;
  subnet: string;
  endpointId: string;
  hostId: string;
  vtep: string;
  alive: boolean;
  ip: string;
  mac: string;
  name: string | null;
  names: string[];
  ports: RecordPort[];
}

export interface ClusterSnapshot {
  /** The host that answered. */
  self: string;
  at: string;
  hosts: HostView[];
  networks: NetworkView[];
  endpoints: EndpointView[];
}

export class ClusterView {
  constructor(
    private readonly store: Store,
    private readonly hosts: HostRegistry,
    private readonly now: () => number = Date.now,
  ) {}

  async read(): Promise<ClusterSnapshot> {
    const [byHostKvs, previousHostKvs, previousEndpointKvs, goneKvs, networkKvs, catalogKvs] = await Promise.all([
      this.store.list(keys.byHost()),
      this.store.list(previousKeys.hosts()),
      this.store.list(previousKeys.allEndpoints()),
      this.store.list(keys.gone()),
      this.store.list(keys.allNetworks()),
      this.store.list(keys.catalog()),
    ]);
    const live = livenessOf(byHostKvs, previousHostKvs);
    // This host is alive while it answers, whatever its key says at this instant.
    const self = this.hosts.host(this.hosts.self.hostId);
    if (self !== undefined && !live.has(this.hosts.self.hostId)) live.set(this.hosts.self.hostId, self);
    const gone = new Map<string, GoneMarker>();
    for (const kv of goneKvs) {
      const m = parseRecord(GoneMarker, kv.value);
      if (m !== undefined) gone.set(kv.key.slice(keys.gone().length), m);
    }

    const namesOf = new Map<string, string[]>();
    for (const kv of catalogKvs) {
      const e = parseRecord(CatalogEntry, kv.value);
      if (e === undefined || e.state !== "active") continue;
      namesOf.set(e.spec.subnet, [...(namesOf.get(e.spec.subnet) ?? []), e.name].sort());
    }

    const records = networkRecords(networkKvs);
    const endpoints = endpointsOf([...byHostEndpoints(byHostKvs), ...previousEndpoints(previousEndpointKvs)], live, records, namesOf);
    const networks = networksOf(networkKvs, records, namesOf, endpoints);
    const hostIds = new Set([...live.keys(), ...gone.keys(), ...endpoints.map((e) => e.hostId)]);
    const hosts: HostView[] = [...hostIds].sort().map((hostId) => {
      const rec: HostRecord | undefined = live.get(hostId)?.record;
      const mine = endpoints.filter((e) => e.hostId === hostId);
      return {
        hostId,
        vtep: rec?.vtep ?? mine[0]?.vtep ?? hostId,
        hostname: rec?.hostname ?? null,
        alive: rec !== undefined,
        startedAt: rec?.startedAt ?? null,
        goneSince: rec === undefined ? (gone.get(hostId)?.since ?? null) : null,
        pluginVersion: rec?.pluginVersion ?? null,
        dockerVersion: rec?.dockerVersion ?? null,
        endpoints: mine.length,
      };
    });
    return { self: this.hosts.self.hostId, at: new Date(this.now()).toISOString(), hosts, networks, endpoints };
  }
}

function previousEndpoints(kvs: readonly KV[]): EndpointCandidate[] {
  return kvs.flatMap((kv) => {
    const k = parsePreviousEndpointKey(kv.key);
    return k === undefined ? [] : [{ kv, keyHost: undefined, ...k }];
  });
}

/** The endpoints that pass the checks (a dead host's too), once each: a host's own key before a copy at the previous layout. */
function endpointsOf(
  candidates: EndpointCandidate[],
  live: ReadonlyMap<string, LiveHost>,
  records: ReadonlyMap<string, NetworkRecord>,
  namesOf: ReadonlyMap<string, string[]>,
): EndpointView[] {
  const ctx = { host: (h: string) => live.get(h), network: (s: string) => records.get(s), requireAlive: false };
  const seen = new Set<string>();
  const out: EndpointView[] = [];
  for (const c of candidates) {
    const r = checkEndpoint(c, ctx);
    if (!r.ok || seen.has(`${c.subnet} ${c.endpointId}`)) continue;
    seen.add(`${c.subnet} ${c.endpointId}`);
    out.push(viewOf(c.subnet, r.value, live.has(r.value.hostId), namesOf));
  }
  return out;
}

function viewOf(subnet: string, rec: EndpointRecord, alive: boolean, namesOf: ReadonlyMap<string, string[]>): EndpointView {
  return {
    network: namesOf.get(subnet)?.[0] ?? subnet,
    subnet,
    endpointId: rec.endpointId,
    hostId: rec.hostId,
    vtep: rec.vtep,
    alive,
    ip: rec.ip,
    mac: rec.mac,
    name: rec.names?.[0] ?? rec.name ?? null,
    names: rec.names ?? (rec.name === undefined ? [] : [rec.name]),
    ports: rec.ports ?? [],
  };
}

/** The network records, by subnet. */
function networkRecords(kvs: KV[]): Map<string, NetworkRecord> {
  const records = new Map<string, NetworkRecord>();
  for (const kv of kvs) {
    const rest = kv.key.slice(keys.allNetworks().length);
    if (rest.includes("/")) continue;
    const rec = parseRecord(NetworkRecord, kv.value);
    // A record for another subnet than its key's is nobody's network.
    if (rec !== undefined && rec.subnet === subnetFromKey(rest)) records.set(rec.subnet, rec);
  }
  return records;
}

function networksOf(kvs: KV[], records: ReadonlyMap<string, NetworkRecord>, namesOf: ReadonlyMap<string, string[]>, endpoints: EndpointView[]): NetworkView[] {
  const prefix = keys.allNetworks();
  const members = new Map<string, string[]>();
  for (const kv of kvs) {
    const member = /^([^/]+)\/hosts\/([^/]+)$/.exec(kv.key.slice(prefix.length));
    if (member === null) continue;
    const subnet = subnetFromKey(member[1]!);
    members.set(subnet, [...(members.get(subnet) ?? []), member[2]!].sort());
  }
  return [...records.values()].map((rec) => ({
    names: namesOf.get(rec.subnet) ?? [],
    subnet: rec.subnet,
    vni: rec.vni,
    gateway: rec.gatewayCidr,
    internal: rec.internal === true,
    mtu: rec.mtu ?? null,
    hosts: members.get(rec.subnet) ?? [],
    endpoints: endpoints.filter((e) => e.subnet === rec.subnet).length,
  }));
}
