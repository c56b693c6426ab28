/**
 * The kernel datapath: one named network namespace per overlay network, holding
 * a bridge `br0` (the gateway address) and a VXLAN device `vxlan0`, plus one
 * veth pair per local endpoint (one end on br0, the other handed to Docker).
 *
 *   host netns                         overlay netns  <runDir>/netns/vni-<vni>
 *   ───────────                        ───────────────────────────────────────
 *   underlay (vtepAddr)  ◀─ UDP ─  vxlan0 (socket lives in the host netns) ─┐
 *   tso<ep> (down, → container)  ◀─ veth ─▶  ve<ep> ───────────────────── br0 (gateway)
 *
 * The VXLAN device is created in the host namespace (so its UDP socket is
 * bound there, where the underlay is) under a temporary name and then moved
 * into the overlay namespace as `vxlan0`. It learns nothing and floods nothing
 * (no all-zeros FDB entry): every remote endpoint is programmed explicitly by
 * `syncPeers` as three static entries, one per table a frame meets:
 *   - a permanent neighbor entry on vxlan0 (ip → mac), answered locally by the
 *     device's ARP proxy;
 *   - an FDB entry of the device (mac → remote VTEP);
 *   - a static entry in br0's own table (mac → the vxlan0 port).
 * The last one matters because br0 would otherwise *learn* which port a MAC is
 * behind: an address (and its MAC, derived from it) that moves from another
 * host to a local container would stay behind the vxlan0 port until the entry
 * aged out (300 s) or the container spoke first, and frames for it arriving
 * over VXLAN would be dropped as "already on their way back". So learning is
 * off on the vxlan0 port, remote MACs are static there, a local endpoint that
 * takes a MAC removes every entry for it first, and each sync deletes any
 * br0 entry on vxlan0 that is not a current remote peer.
 *
 * The namespaces outlive the process on purpose: `close()` only releases
 * sockets, and a later process adopts what it finds (`ensureNetwork` keeps
 * existing devices and their tables and fixes only what differs), so a plugin
 * restart does not interrupt container traffic.
 *
 * All kernel programming for one network is serialised (a KeyedMutex keyed by
 * subnet); different networks proceed independently.
 *
 * Where the pieces live: network.ts (namespace, br0, adoption, removal),
 * vxlan.ts (vxlan0 and the VNI-busy retry), endpoint.ts (veth pairs),
 * peer-tables.ts (the three tables above), peer-announce.ts (what a sync
 * programmed, announced to the local containers), context.ts (names, paths,
 * state).
 */
import { createRtNetlink, type RtNetlinkSocket } from "netlink";
import type { Datapath, EndpointLinks, EndpointSpec, NetworkSpec, PeerEntry, PeerSyncOptions, PeerSyncReport, PeerTables } from "../../contracts/datapath.js";
import { KeyedMutex } from "../../../lib/keyed-mutex.js";
import type { Logger } from "../../../lib/log.js";
import { normalizeIp, normalizeSubnet, parseIpv4 } from "../../../lib/net.js";
import { deleteNamedNetns, openRtnetlinkIn } from "../netns.js";
import { DEFAULT_VXLAN_PORT, listPinnedVnis, networkNetnsPath, type DatapathContext, type NetworkState } from "./context.js";
import { ensureEndpoint, removeEndpoint } from "./endpoint.js";
import { ensureNetwork, removeNetwork } from "./network.js";
import { readPeerTables, syncPeerTables } from "./peer-tables.js";

export interface KernelDatapathOptions {
  /** Directory for runtime state; namespaces are mounted at `<runDir>/netns/vni-<vni>`. */
  runDir: string;
  /**
   * A second directory where each namespace is pinned as well
   * (`<keepDir>/netns/vni-<vni>`), one that outlives the plugin's own mounts:
   * a namespace found there and gone from runDir is adopted (network.ts).
   */
  keepDir?: string;
  /** This host's underlay IPv4 address: source of encapsulated packets. */
  vtepAddr: string;
  /** UDP destination port of the VXLAN devices (default 4789). */
  vxlanPort?: number;
  /** ifindex of the underlay device in the host namespace (IFLA_VXLAN_LINK). */
  underlayIfindex?: number;
  /**
   * The namespace that plays "the host": where VXLAN devices are created and
   * where the container ends of veth pairs are left for Docker. Default: the
   * process's own network namespace.
   */
  hostNetnsPath?: string;
  log: Logger;
}

export class KernelDatapath implements Datapath {
  private readonly ctx: DatapathContext;
  private readonly hostNetnsPath: string | undefined;
  private readonly log: Logger;

  private hostSocket: RtNetlinkSocket | undefined;
  private readonly networks = new Map<string, NetworkState>();
  /** One queue per network (subnet). */
  private readonly mutex = new KeyedMutex();
  private closed = false;

  constructor(opts: KernelDatapathOptions) {
    if (!parseIpv4(opts.vtepAddr).ok) throw new TypeError(`vtepAddr must be an IPv4 address, got ${JSON.stringify(opts.vtepAddr)}`);
    const port = opts.vxlanPort ?? DEFAULT_VXLAN_PORT;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`invalid vxlanPort ${port}`);
    this.hostNetnsPath = opts.hostNetnsPath;
    this.log = opts.log.child({ component: "datapath" });
    this.ctx = {
      runDir: opts.runDir,
      keepDir: opts.keepDir,
      vtepAddr: normalizeIp(opts.vtepAddr),
      vxlanPort: port,
      underlayIfindex: opts.underlayIfindex,
      host: () => this.host(),
      log: this.log,
    };
  }

  // ------------------------------------------------------------- interface

  async ensureNetwork(spec: NetworkSpec): Promise<void> {
    const subnet = normalizeSubnet(spec.subnet);
    return this.run(subnet, () => ensureNetwork(this.ctx, this.networks, { ...spec, subnet }));
  }

  async removeNetwork(subnet: string): Promise<void> {
    const key = normalizeSubnet(subnet);
    return this.run(key, () => removeNetwork(this.ctx, this.networks, key));
  }

  async restored(vnisInUse: readonly number[]): Promise<void> {
    if (this.ctx.keepDir === undefined) return;
    const keep = new Set([...vnisInUse, ...[...this.networks.values()].map((n) => n.spec.vni)]);
    for (const vni of listPinnedVnis(this.ctx.keepDir)) {
      if (keep.has(vni)) continue;
      deleteNamedNetns(networkNetnsPath(this.ctx.keepDir, vni));
      this.log.info({ vni }, "pinned namespace of a network no longer here released");
    }
  }

  /** True once this instance has ensured the network (after a restart: once it has adopted it). */
  hasNetwork(subnet: string): boolean {
    let key: string;
    try {
      key = normalizeSubnet(subnet);
    } catch {
      return false;
    }
    return this.networks.get(key)?.ready === true;
  }

  async ensureEndpoint(subnet: string, ep: EndpointSpec, mtu: number): Promise<EndpointLinks> {
    const key = normalizeSubnet(subnet);
    return this.run(key, () => ensureEndpoint(this.ctx, this.mustNetwork(key), ep, mtu));
  }

  async removeEndpoint(subnet: string, endpointId: string): Promise<void> {
    const key = normalizeSubnet(subnet);
    return this.run(key, async () => {
      const st = this.networks.get(key);
      if (st) await removeEndpoint(this.ctx, st, endpointId); // no network, no endpoint
    });
  }

  async syncPeers(subnet: string, desired: PeerEntry[], opts?: PeerSyncOptions): Promise<PeerSyncReport> {
    const key = normalizeSubnet(subnet);
    return this.run(key, () => syncPeerTables(this.ctx, this.mustNetwork(key), desired, opts));
  }

  async peerTables(subnet: string): Promise<PeerTables> {
    const key = normalizeSubnet(subnet);
    return this.run(key, () => readPeerTables(this.mustNetwork(key)));
  }

  /**
   * Waits for queued work, then releases every socket. Kernel state (the
   * namespaces and everything in them) is deliberately left in place.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.mutex.idle();
    for (const st of this.networks.values()) st.nl.socket.close();
    this.networks.clear();
    this.hostSocket?.socket.close();
    this.hostSocket = undefined;
    this.log.debug("datapath closed (kernel state kept)");
  }

  // -------------------------------------------------------------- plumbing

  private mustNetwork(subnet: string): NetworkState {
    const st = this.networks.get(subnet);
    if (!st?.ready) throw new Error(`datapath: network ${subnet} is not set up on this host`);
    return st;
  }

  /** Runs `fn` after every earlier operation on the same network has settled. */
  private run<T>(subnet: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error("datapath is closed"));
    return this.mutex.run(subnet, fn);
  }

  private host(): RtNetlinkSocket {
    if (!this.hostSocket) {
      this.hostSocket = this.hostNetnsPath === undefined ? createRtNetlink() : openRtnetlinkIn(this.hostNetnsPath);
    }
    return this.hostSocket;
  }
}
