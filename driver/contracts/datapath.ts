/**
 * The per-host datapath of overlay networks, as the domain sees it. The kernel
 * implementation programs namespaces, bridges, VXLAN devices, veths and the
 * neighbor/FDB tables; unit tests use an in-memory fake.
 *
 * Every method is idempotent ("ensure"): restart and reconcile reuse them.
 */
export interface NetworkSpec {
  /** Cluster identity: the IPv4 subnet, e.g. "10.10.0.0/24". */
  subnet: string;
  /** Gateway in CIDR form with the subnet's prefix, e.g. "10.10.0.1/24": held by br0. */
  gatewayCidr: string;
  vni: number;
  /** MTU for the VXLAN device and every veth end. */
  mtu: number;
  /**
   * Where the VXLAN device sends from, when not the underlay address: an
   * encrypted network's is this host's tunnel address, so that its traffic is
   * routed into WireGuard (and, without it, nowhere).
   */
  tunnelSource?: string;
}

export interface EndpointSpec {
  endpointId: string;
  /** The container's address in CIDR form. */
  addressCidr: string;
  mac: string;
}

export interface EndpointLinks {
  /** Name of the veth end left in the host namespace, handed to Docker in Join (SrcName). */
  hostIfName: string;
  /** Name of the end enslaved to br0 inside the network namespace. */
  bridgeIfName: string;
}

/** One remote endpoint as a neighbor entry (ip → mac) plus an FDB entry (mac → vtep). */
export interface PeerEntry {
  ip: string;
  mac: string;
  /** Where its frames go: its host's VTEP, or on an encrypted network its host's tunnel address. */
  vtep: string;
}

export interface PeerSyncReport {
  added: number;
  removed: number;
  /** The same, per kernel table. */
  tables?: Partial<Record<PeerTable, { added: number; removed: number }>>;
}

export type PeerTable = "neighbor" | "fdb" | "bridge_fdb";

/** The kernel's peer tables of a network, as read. */
export interface PeerTables {
  /** Neighbor entries on the VXLAN device: ip → mac. */
  neighbors: { ip: string; mac: string }[];
  /** The VXLAN device's FDB: mac → remote VTEP. */
  fdb: { mac: string; dst: string }[];
  /** The bridge's own entries on the VXLAN port (its local address left out). */
  bridge: { mac: string; kind: "static" | "learned" }[];
}

/** How a peer sync finds what the tables hold now. */
export interface PeerSyncOptions {
  /**
   * Write only the difference from what this datapath last programmed,
   * reading nothing back (a store change: one new peer costs its few netlink
   * requests, not a dump of every table, which at 10,000 peers is most of a
   * second). Without it the three tables are read and made to match, whatever
   * put them in their state (the periodic reconcile). A network's first sync,
   * and the first after a failed one, read the tables anyway.
   */
  changesOnly?: boolean;
}

export interface Datapath {
  /** Creates (or re-adopts after a restart) the network's namespace, br0 and VXLAN device. */
  ensureNetwork(spec: NetworkSpec): Promise<void>;
  /** Removes the namespace and everything in it. Absent is fine. */
  removeNetwork(subnet: string): Promise<void>;
  hasNetwork(subnet: string): boolean;
  /** Creates the veth pair for an endpoint: one end on br0, one in the host namespace. */
  ensureEndpoint(subnet: string, ep: EndpointSpec, mtu: number): Promise<EndpointLinks>;
  removeEndpoint(subnet: string, endpointId: string): Promise<void>;
  /**
   * Makes the network's neighbor and FDB tables equal to `desired` (remote
   * endpoints only): adds what is missing, removes what is not desired.
   */
  syncPeers(subnet: string, desired: PeerEntry[], opts?: PeerSyncOptions): Promise<PeerSyncReport>;
  /** What the network's three peer tables hold now (read only: `tsoverlay peers` compares it with what is desired). */
  peerTables(subnet: string): Promise<PeerTables>;
  /**
   * The restore after a start is over: what the datapath kept of networks
   * other than these VNIs, beyond its own run (a namespace pinned to outlive
   * a `docker plugin disable` of a network removed meanwhile), is let go.
   */
  restored(vnisInUse: readonly number[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * Which hosts may send this host VXLAN datagrams: exactly the VTEPs of the
 * cluster's live hosts (see driver/kernel/vxlan-guard.ts for why).
 */
export interface VxlanAdmission {
  admit(vteps: readonly string[]): Promise<void>;
}

/** Names derived from ids, short enough for IFNAMSIZ (15). */
export function endpointIfNames(endpointId: string): EndpointLinks {
  const short = endpointId.slice(0, 9);
  return { hostIfName: `tso${short}`, bridgeIfName: `ve${short}` };
}

/**
 * Egress for one network on this host: an uplink from its namespace to the
 * host's gateway bridge, routed and NATed to the host's address. `slot`
 * numbers the network's uplink on this host (stable across restarts). A
 * `hostOnly` uplink (an --internal network that still reaches the host's
 * name service) has no default route and no NAT: only the gateway bridge's
 * own address is reachable through it.
 */
export interface EgressPort {
  ensure(subnet: string, vni: number, slot: number, opts?: { hostOnly?: boolean }): Promise<void>;
  /** Takes the uplink away (after the network's last endpoint here); what `prepare` made stays. */
  remove(subnet: string, slot: number): Promise<void>;
  /**
   * What a network needs on this host before any endpoint, made when the
   * network is created (or restored) here so that no container's start waits
   * for it: its NAT (`nat`: false for an --internal network). Idempotent.
   */
  prepare(subnet: string, opts: { nat: boolean }): Promise<void>;
  /** The network is gone from this host: what `prepare` made goes. */
  release(subnet: string): Promise<void>;
}
