import { keys, subnetFromKey } from "./keys.js";
import { EndpointRecord, GoneMarker, NetworkRecord, parseRecord, type RecordPort } from "./records.js";
import { CatalogEntry } from "../catalog/catalog.js";
import { HostRecord, type HostRegistry } from "../hosts/host-registry.js";
import type { KV, Store } from "../contracts/store.js";

/**
 * The whole cluster as the store holds it, in the shape operators ask about
 * (`tsoverlay ps|networks|hosts|ports`): one read of four prefixes, joined
 * here so that every host's CLI shows the same thing. Endpoints of hosts
 * that are not alive are listed with `alive: false` rather than hidden: a
 * dead host's records are exactly what an operator wants to see.
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
    const [hostKvs, goneKvs, networkKvs, endpointKvs, catalogKvs] = await Promise.all([
      this.store.list(keys.hosts()),
      this.store.list(keys.gone()),
      this.store.list(keys.allNetworks()),
      this.store.list(keys.allEndpoints()),
      this.store.list(keys.catalog()),
    ]);
    const live = new Map<string, HostRecord>();
    for (const kv of hostKvs) {
      const rec = parseRecord(HostRecord, kv.value);
      if (rec !== undefined) live.set(rec.hostId, rec);
    }
    // This host is alive while it answers, whatever its key says at this instant.
    for (const rec of this.hosts.hosts()) if (rec.hostId === this.hosts.self.hostId && !live.has(rec.hostId)) live.set(rec.hostId, rec);
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

    const endpoints = endpointKvs.flatMap((kv) => endpointOf(kv, live, namesOf));
    const networks = networksOf(networkKvs, namesOf, endpoints);
    const hostIds = new Set([...live.keys(), ...gone.keys(), ...endpoints.map((e) => e.hostId)]);
    const hosts: HostView[] = [...hostIds].sort().map((hostId) => {
      const rec = live.get(hostId);
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

function endpointOf(kv: KV, live: ReadonlyMap<string, unknown>, namesOf: ReadonlyMap<string, string[]>): EndpointView[] {
  const rec = parseRecord(EndpointRecord, kv.value);
  const m = /^([^/]+)\/[^/]+$/.exec(kv.key.slice(keys.allEndpoints().length));
  if (rec === undefined || m === null) return [];
  const subnet = subnetFromKey(m[1]!);
  return [
    {
      network: namesOf.get(subnet)?.[0] ?? subnet,
      subnet,
      endpointId: rec.endpointId,
      hostId: rec.hostId,
      vtep: rec.vtep,
      alive: live.has(rec.hostId),
      ip: rec.ip,
      mac: rec.mac,
      name: rec.names?.[0] ?? rec.name ?? null,
      names: rec.names ?? (rec.name === undefined ? [] : [rec.name]),
      ports: rec.ports ?? [],
    },
  ];
}

function networksOf(kvs: KV[], namesOf: ReadonlyMap<string, string[]>, endpoints: EndpointView[]): NetworkView[] {
  const prefix = keys.allNetworks();
  const records = new Map<string, NetworkRecord>();
  const members = new Map<string, string[]>();
  for (const kv of kvs) {
    const rest = kv.key.slice(prefix.length);
    const member = /^([^/]+)\/hosts\/([^/]+)$/.exec(rest);
    if (member !== null) {
      const subnet = subnetFromKey(member[1]!);
      members.set(subnet, [...(members.get(subnet) ?? []), member[2]!].sort());
      continue;
    }
    if (rest.includes("/")) continue;
    const rec = parseRecord(NetworkRecord, kv.value);
    if (rec !== undefined) records.set(rec.subnet, rec);
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
