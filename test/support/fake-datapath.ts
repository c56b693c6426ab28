/**
 * An in-memory Datapath for unit tests of the domain. It records networks,
 * endpoints and peer tables with the same semantics as the kernel datapath:
 *  - every method is idempotent; endpoint/peer calls on a network this
 *    instance has not ensured reject, removals of absent things succeed;
 *  - syncPeers counts kernel-table entries the way KernelDatapath does: a
 *    new peer adds one neighbor entry (ip → mac) and one FDB entry
 *    (mac → vtep), i.e. `added: 2`;
 *  - state lives in a `FakeKernel` that may be shared by several instances:
 *    `close()` keeps it (like the real namespaces, which outlive the process),
 *    so a second FakeDatapath over the same FakeKernel models a plugin
 *    restart that adopts what is there.
 * `calls` logs every call; `failNext` injects one failure into a method.
 */
import {
  endpointIfNames,
  type Datapath,
  type EndpointLinks,
  type EndpointSpec,
  type NetworkSpec,
  type PeerEntry,
  type PeerSyncReport,
  type PeerTables,
} from "../../driver/contracts/datapath.js";

export interface FakeEndpoint {
  spec: EndpointSpec;
  mtu: number;
  links: EndpointLinks;
}

export interface FakeNetwork {
  spec: NetworkSpec;
  endpoints: Map<string, FakeEndpoint>;
  /** ip → mac */
  neighbors: Map<string, string>;
  /** mac → vtep */
  fdb: Map<string, string>;
}

/** The "kernel" state: survives `close()` and can back several instances. */
export class FakeKernel {
  readonly networks = new Map<string, FakeNetwork>();
}

type Method = Exclude<keyof Datapath, "hasNetwork">;

export interface FakeCall {
  method: keyof Datapath;
  args: unknown[];
}

export class FakeDatapath implements Datapath {
  readonly calls: FakeCall[] = [];
  /** Networks ensured by this instance (what hasNetwork reports, like the kernel datapath). */
  private readonly known = new Set<string>();
  private readonly failures = new Map<Method, Error[]>();
  closed = false;

  constructor(readonly kernel: FakeKernel = new FakeKernel()) {}

  // ------------------------------------------------------------ inspection

  network(subnet: string): FakeNetwork | undefined {
    return this.kernel.networks.get(subnet);
  }

  endpoints(subnet: string): FakeEndpoint[] {
    return [...(this.network(subnet)?.endpoints.values() ?? [])];
  }

  /** The programmed peers, joined back into PeerEntry form (sorted by ip). */
  peers(subnet: string): PeerEntry[] {
    const n = this.network(subnet);
    if (!n) return [];
    return [...n.neighbors].map(([ip, mac]) => ({ ip, mac, vtep: n.fdb.get(mac) ?? "" })).sort((a, b) => a.ip.localeCompare(b.ip, "en", { numeric: true }));
  }

  /** Makes the next call of `method` reject with `err` (queued, one per call). */
  failNext(method: Method, err: Error = new Error(`injected ${method} failure`)): void {
    const q = this.failures.get(method) ?? [];
    q.push(err);
    this.failures.set(method, q);
  }

  // ------------------------------------------------------------- interface

  async ensureNetwork(spec: NetworkSpec): Promise<void> {
    this.enter("ensureNetwork", [spec]);
    for (const [subnet, n] of this.kernel.networks) {
      if (subnet !== spec.subnet && n.spec.vni === spec.vni) {
        throw new Error(`datapath: VNI ${spec.vni} of ${spec.subnet} is already used by network ${subnet}`);
      }
    }
    const existing = this.kernel.networks.get(spec.subnet);
    if (existing && existing.spec.vni !== spec.vni) {
      // A new VNI means a new namespace: everything in the old one is gone.
      this.kernel.networks.delete(spec.subnet);
    }
    const n = this.kernel.networks.get(spec.subnet);
    if (n) n.spec = { ...spec };
    else this.kernel.networks.set(spec.subnet, { spec: { ...spec }, endpoints: new Map(), neighbors: new Map(), fdb: new Map() });
    this.known.add(spec.subnet);
  }

  async removeNetwork(subnet: string): Promise<void> {
    this.enter("removeNetwork", [subnet]);
    this.kernel.networks.delete(subnet);
    this.known.delete(subnet);
  }

  hasNetwork(subnet: string): boolean {
    this.calls.push({ method: "hasNetwork", args: [subnet] });
    return this.known.has(subnet) && this.kernel.networks.has(subnet);
  }

  async ensureEndpoint(subnet: string, ep: EndpointSpec, mtu: number): Promise<EndpointLinks> {
    this.enter("ensureEndpoint", [subnet, ep, mtu]);
    const n = this.mustNetwork(subnet);
    const links = endpointIfNames(ep.endpointId);
    n.endpoints.set(ep.endpointId, { spec: { ...ep, mac: ep.mac.toLowerCase() }, mtu, links });
    return links;
  }

  async removeEndpoint(subnet: string, endpointId: string): Promise<void> {
    this.enter("removeEndpoint", [subnet, endpointId]);
    if (!this.known.has(subnet)) return;
    this.kernel.networks.get(subnet)?.endpoints.delete(endpointId);
  }

  /** How long each syncPeers takes (a network of many peers), 0 by default. */
  syncPeersTakesMs = 0;

  async syncPeers(subnet: string, desired: PeerEntry[]): Promise<PeerSyncReport> {
    this.enter("syncPeers", [subnet, desired.map((p) => ({ ...p }))]);
    if (this.syncPeersTakesMs > 0) await new Promise((resolve) => setTimeout(resolve, this.syncPeersTakesMs));
    const n = this.mustNetwork(subnet);
    const wantNeigh = new Map<string, string>();
    const wantFdb = new Map<string, string>();
    for (const p of desired) {
      const mac = p.mac.toLowerCase();
      const m = wantNeigh.get(p.ip);
      if (m !== undefined && m !== mac) throw new TypeError(`peer ${p.ip} listed with two MACs (${m}, ${mac})`);
      const v = wantFdb.get(mac);
      if (v !== undefined && v !== p.vtep) throw new TypeError(`peer MAC ${mac} listed behind two VTEPs (${v}, ${p.vtep})`);
      wantNeigh.set(p.ip, mac);
      wantFdb.set(mac, p.vtep);
    }
    let added = 0;
    let removed = 0;
    for (const [table, want] of [
      [n.neighbors, wantNeigh],
      [n.fdb, wantFdb],
    ] as const) {
      for (const [k, v] of want) {
        if (table.get(k) !== v) {
          table.set(k, v);
          added++;
        }
      }
      for (const k of [...table.keys()]) {
        if (!want.has(k)) {
          table.delete(k);
          removed++;
        }
      }
    }
    return { added, removed };
  }

  async peerTables(subnet: string): Promise<PeerTables> {
    const n = this.mustNetwork(subnet);
    return {
      neighbors: [...n.neighbors].map(([ip, mac]) => ({ ip, mac })),
      fdb: [...n.fdb].map(([mac, dst]) => ({ mac, dst })),
      // The fake has no bridge: its static entries are the FDB's MACs.
      bridge: [...n.fdb.keys()].map((mac) => ({ mac, kind: "static" as const })),
    };
  }

  async restored(vnisInUse: readonly number[]): Promise<void> {
    this.calls.push({ method: "restored", args: [vnisInUse] });
  }

  async close(): Promise<void> {
    this.calls.push({ method: "close", args: [] });
    this.closed = true;
  }

  // -------------------------------------------------------------- plumbing

  private enter(method: Method, args: unknown[]): void {
    this.calls.push({ method, args });
    if (this.closed) throw new Error("datapath is closed");
    const err = this.failures.get(method)?.shift();
    if (err) throw err;
  }

  private mustNetwork(subnet: string): FakeNetwork {
    const n = this.known.has(subnet) ? this.kernel.networks.get(subnet) : undefined;
    if (!n) throw new Error(`datapath: network ${subnet} is not set up on this host`);
    return n;
  }
}
