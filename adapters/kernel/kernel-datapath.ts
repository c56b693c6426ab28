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
 * All kernel programming for one network is serialised through a per-network
 * promise queue; different networks proceed independently.
 */
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import ipaddr from "ipaddr.js";
import { createRtNetlink, type RtNetlinkSocket } from "netlink";
import {
  AF_INET,
  NetlinkError,
  REQUEST_TIMEOUT_MS,
  createVethPair,
  deleteLink,
  ensureAddress,
  ensureBridge,
  ensureVxlan,
  getLinkByName,
  ipToBuffer,
  listLinks,
  macToBuffer,
  moveLinkToNetns,
  nlCall,
  setBridgePortLearning,
  setMaster,
  setMtu,
  setUp,
  type LinkInfo,
} from "./links.js";
import {
  deleteFdbEntry,
  deleteNeighbor,
  listFdbEntries,
  listNeighbors,
  replaceFdbEntry,
  replaceNeighbor,
  deleteBridgeFdb,
  listBridgeFdb,
  replaceBridgeFdbStatic,
} from "./neighbors.js";
import {
  createNamedNetns,
  deleteNamedNetns,
  isNetnsMount,
  openNetnsFd,
  openRtnetlinkIn,
} from "./netns.js";
import type { Logger } from "../../lib/log.js";
import {
  endpointIfNames,
  type Datapath,
  type EndpointLinks,
  type EndpointSpec,
  type NetworkSpec,
  type PeerEntry,
  type PeerSyncReport,
} from "../../domain/ports/datapath.js";

export const BRIDGE_NAME = "br0";
export const VXLAN_NAME = "vxlan0";
export const DEFAULT_VXLAN_PORT = 4789;
/** Host-side temporary names of VXLAN devices on their way into a namespace. */
const TEMP_VXLAN_PREFIX = "vx-";
const ZERO_MAC = "00:00:00:00:00:00";
const PLAIN = { timeout: REQUEST_TIMEOUT_MS };

/**
 * After a namespace holding a VXLAN device disappears, the kernel destroys
 * the device asynchronously; until then the VNI/port stays taken in the
 * namespace the device was created in. Creation is retried for this long.
 */
const VNI_BUSY_RETRY_MS = [50, 100, 200, 400, 800, 1_000, 1_500];

export interface KernelDatapathOptions {
  /** Directory for runtime state; namespaces are mounted at `<runDir>/netns/vni-<vni>`. */
  runDir: string;
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

interface NetworkState {
  spec: NetworkSpec;
  nsPath: string;
  /** rtnetlink socket opened inside the network's namespace. */
  nl: RtNetlinkSocket;
  /** The last ensureNetwork completed (false while one runs, or after it failed). */
  ready: boolean;
}

/** The namespace path of a VNI under `runDir`. */
export function networkNetnsPath(runDir: string, vni: number): string {
  return path.join(runDir, "netns", `vni-${vni}`);
}

/** Host-side temporary name of a network's VXLAN device (≤ 9 chars). */
export function tempVxlanName(vni: number): string {
  return `${TEMP_VXLAN_PREFIX}${vni.toString(16)}`;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function normIp(ip: string): string {
  if (!net.isIP(ip)) throw new TypeError(`invalid IP address ${JSON.stringify(ip)}`);
  return ipaddr.parse(ip).toString();
}

function normMac(mac: string): string {
  macToBuffer(mac); // validates
  return mac.toLowerCase();
}

/** "10.0.0.7/24" → "10.0.0.0/24" (IPv4 or IPv6). */
function networkOf(ip: string, prefixlen: number): string {
  const parsed = ipaddr.parse(ip);
  const cidr = `${parsed.toString()}/${prefixlen}`;
  const netAddr =
    parsed.kind() === "ipv4" ? ipaddr.IPv4.networkAddressFromCIDR(cidr) : ipaddr.IPv6.networkAddressFromCIDR(cidr);
  return `${netAddr.toString()}/${prefixlen}`;
}

function normSubnet(subnet: string): string {
  const slash = subnet.indexOf("/");
  if (slash < 0) throw new TypeError(`invalid subnet ${JSON.stringify(subnet)}`);
  return networkOf(subnet.slice(0, slash), Number(subnet.slice(slash + 1)));
}

interface Ipv4Addr {
  ip: string;
  prefixlen: number;
}

export class KernelDatapath implements Datapath {
  private readonly runDir: string;
  private readonly vtepAddr: string;
  private readonly vxlanPort: number;
  private readonly underlayIfindex: number | undefined;
  private readonly hostNetnsPath: string | undefined;
  private readonly log: Logger;

  private hostSocket: RtNetlinkSocket | undefined;
  private readonly networks = new Map<string, NetworkState>();
  /** Tail of each network's operation queue (never rejects). */
  private readonly queues = new Map<string, Promise<void>>();
  private closed = false;

  constructor(opts: KernelDatapathOptions) {
    if (net.isIP(opts.vtepAddr) !== 4) throw new TypeError(`vtepAddr must be an IPv4 address, got ${JSON.stringify(opts.vtepAddr)}`);
    const port = opts.vxlanPort ?? DEFAULT_VXLAN_PORT;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`invalid vxlanPort ${port}`);
    this.runDir = opts.runDir;
    this.vtepAddr = normIp(opts.vtepAddr);
    this.vxlanPort = port;
    this.underlayIfindex = opts.underlayIfindex;
    this.hostNetnsPath = opts.hostNetnsPath;
    this.log = opts.log.child({ component: "datapath" });
  }

  // ------------------------------------------------------------- interface

  async ensureNetwork(spec: NetworkSpec): Promise<void> {
    const subnet = this.key(spec.subnet);
    return this.enqueue(subnet, () => this.doEnsureNetwork({ ...spec, subnet }));
  }

  async removeNetwork(subnet: string): Promise<void> {
    const key = this.key(subnet);
    return this.enqueue(key, () => this.doRemoveNetwork(key));
  }

  /** True once this instance has ensured the network (after a restart: once it has adopted it). */
  hasNetwork(subnet: string): boolean {
    let key: string;
    try {
      key = this.key(subnet);
    } catch {
      return false;
    }
    return this.networks.get(key)?.ready === true;
  }

  async ensureEndpoint(subnet: string, ep: EndpointSpec, mtu: number): Promise<EndpointLinks> {
    const key = this.key(subnet);
    return this.enqueue(key, () => this.doEnsureEndpoint(this.mustNetwork(key), ep, mtu));
  }

  async removeEndpoint(subnet: string, endpointId: string): Promise<void> {
    const key = this.key(subnet);
    return this.enqueue(key, async () => {
      const st = this.networks.get(key);
      if (!st) return; // no network, no endpoint
      const { bridgeIfName } = endpointIfNames(endpointId);
      // Deleting one end of a veth deletes its peer, wherever it is.
      await deleteLink(st.nl, bridgeIfName);
      this.log.info({ subnet: key, endpointId, bridgeIfName }, "endpoint removed");
    });
  }

  async syncPeers(subnet: string, desired: PeerEntry[]): Promise<PeerSyncReport> {
    const key = this.key(subnet);
    return this.enqueue(key, () => this.doSyncPeers(this.mustNetwork(key), desired));
  }

  /**
   * Waits for queued work, then releases every socket. Kernel state (the
   * namespaces and everything in them) is deliberately left in place.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.queues.values()]);
    for (const st of this.networks.values()) st.nl.socket.close();
    this.networks.clear();
    this.hostSocket?.socket.close();
    this.hostSocket = undefined;
    this.log.debug("datapath closed (kernel state kept)");
  }

  // -------------------------------------------------------------- plumbing

  private key(subnet: string): string {
    return normSubnet(subnet);
  }

  private mustNetwork(subnet: string): NetworkState {
    const st = this.networks.get(subnet);
    if (!st?.ready) throw new Error(`datapath: network ${subnet} is not set up on this host`);
    return st;
  }

  /** Runs `fn` after every earlier operation on the same network has settled. */
  private enqueue<T>(subnet: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error("datapath is closed"));
    const prev = this.queues.get(subnet) ?? Promise.resolve();
    const run = prev.then(fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(subnet, tail);
    void tail.then(() => {
      if (this.queues.get(subnet) === tail) this.queues.delete(subnet);
    });
    return run;
  }

  private host(): RtNetlinkSocket {
    if (!this.hostSocket) {
      this.hostSocket = this.hostNetnsPath === undefined ? createRtNetlink() : openRtnetlinkIn(this.hostNetnsPath);
    }
    return this.hostSocket;
  }

  private withNetnsFd<T>(nsPath: string, fn: (fd: number) => Promise<T>): Promise<T> {
    const fd = openNetnsFd(nsPath);
    return fn(fd).finally(() => fs.closeSync(fd));
  }

  // -------------------------------------------------------------- networks

  private async doEnsureNetwork(spec: NetworkSpec): Promise<void> {
    const { subnet, vni, mtu } = spec;
    if (!Number.isInteger(vni) || vni < 1 || vni > 0xffffff) throw new TypeError(`invalid VNI ${vni}`);
    const gw = parseCidr(spec.gatewayCidr);
    if (networkOf(gw.ip, gw.prefixlen) !== subnet) {
      throw new TypeError(`gateway ${spec.gatewayCidr} is not in subnet ${subnet}`);
    }
    for (const [other, st] of this.networks) {
      if (other !== subnet && st.spec.vni === vni) {
        throw new Error(`datapath: VNI ${vni} of ${subnet} is already used by network ${other}`);
      }
    }

    const nsPath = networkNetnsPath(this.runDir, vni);
    let st = this.networks.get(subnet);
    if (st && st.nsPath === nsPath && !isNetnsMount(nsPath)) {
      // Deleted behind our back: start afresh.
      this.log.warn({ subnet, netns: nsPath }, "network namespace vanished; recreating it");
      st.nl.socket.close();
      this.networks.delete(subnet);
      st = undefined;
    }
    if (st && st.nsPath !== nsPath) {
      // Same network, new VNI: the old namespace is of no further use.
      this.log.info({ subnet, oldVni: st.spec.vni, vni }, "network VNI changed; replacing its namespace");
      await this.teardown(st);
      this.networks.delete(subnet);
      st = undefined;
    }

    const existed = isNetnsMount(nsPath);
    if (!st) {
      createNamedNetns(nsPath);
      st = { spec, nsPath, nl: openRtnetlinkIn(nsPath), ready: false };
      this.networks.set(subnet, st);
    }
    st.spec = spec;
    st.ready = false;
    const log = this.log.child({ subnet, vni, netns: nsPath });
    const nl = st.nl;

    if (existed) {
      const foreign = await this.foreignAddresses(nl, subnet);
      if (foreign.length > 0) {
        log.warn({ foreign }, "namespace held another subnet; clearing it");
        await this.clearNamespace(nl);
      }
    }

    const brBefore = await getLinkByName(nl, BRIDGE_NAME);
    const br = await ensureBridge(nl, BRIDGE_NAME, mtu);
    await this.ensureOnlyAddress(nl, br.index, spec.gatewayCidr);

    const vx = await this.ensureVxlanIn(st, log);
    if (vx.master !== br.index) await setMaster(nl, vx.index, br.index);
    // Remote MACs are programmed statically on this port; learning them would go stale when they move.
    if ((await mustLink(nl, VXLAN_NAME)).bridgePortLearning !== false) await setBridgePortLearning(nl, vx.index, false);
    if (!vx.up) await setUp(nl, vx.index);
    if (!br.up) await setUp(nl, br.index);
    const lo = await getLinkByName(nl, "lo");
    if (lo && !lo.up) await setUp(nl, lo.index);

    // Unknown traffic is never flooded to other hosts.
    for (const e of await listFdbEntries(nl, vx.index)) {
      if (e.mac === ZERO_MAC) await deleteFdbEntry(nl, e);
    }

    st.ready = true;
    log.info({ adopted: existed && brBefore !== undefined, mtu, gateway: spec.gatewayCidr }, "network ready");
  }

  /** Adopts a matching `vxlan0` in the namespace, or creates one in the host namespace and moves it in. */
  private async ensureVxlanIn(st: NetworkState, log: Logger): Promise<LinkInfo> {
    const { nl, spec } = st;
    const existing = await getLinkByName(nl, VXLAN_NAME);
    if (existing && this.vxlanMatches(existing, spec.vni)) {
      if (existing.mtu !== spec.mtu) await setMtu(nl, existing.index, spec.mtu);
      return mustLink(nl, VXLAN_NAME);
    }
    if (existing) {
      log.warn({ kind: existing.kind, vxlan: existing.vxlan }, "vxlan0 differs from the spec; recreating it");
      await deleteLink(nl, existing.index);
    }
    // Any other VXLAN device in our namespace (e.g. a half-finished rename) goes too.
    for (const l of await listLinks(nl)) {
      if (l.kind === "vxlan") await deleteLink(nl, l.index);
    }

    const host = this.host();
    const tmpName = tempVxlanName(spec.vni);
    const vxSpec = {
      name: tmpName,
      vni: spec.vni,
      dstPort: this.vxlanPort,
      local: this.vtepAddr,
      learning: false,
      proxy: true,
      mtu: spec.mtu,
      ...(this.underlayIfindex !== undefined ? { underlay: this.underlayIfindex } : {}),
    };
    for (let attempt = 0; ; attempt++) {
      try {
        // Adopts (or replaces) a device left under the temporary name by a crash.
        await ensureVxlan(host, vxSpec);
        break;
      } catch (err) {
        if (!isVniBusy(err)) throw err;
        const removed = await this.removeStaleHostVxlan(spec.vni, tmpName, log);
        if (removed) continue;
        const delay = VNI_BUSY_RETRY_MS[attempt];
        if (delay === undefined) {
          throw new NetlinkError(
            "create vxlan",
            `link ${tmpName}`,
            "EEXIST",
            `VNI ${spec.vni} port ${this.vxlanPort} is taken by a device created in the host namespace ` +
              `that lives in another namespace (a stale overlay namespace outside ${this.runDir}?)`,
          );
        }
        log.debug({ attempt, delay }, "VNI busy (device being destroyed?); retrying");
        await sleep(delay);
      }
    }
    await this.withNetnsFd(st.nsPath, (fd) => moveLinkToNetns(host, tmpName, fd, VXLAN_NAME));
    log.info({ vtep: this.vtepAddr, port: this.vxlanPort }, "vxlan0 created in the host namespace and moved in");
    return mustLink(nl, VXLAN_NAME);
  }

  private vxlanMatches(l: LinkInfo, vni: number): boolean {
    const v = l.vxlan;
    return (
      l.kind === "vxlan" &&
      v !== undefined &&
      v.vni === vni &&
      v.dstPort === this.vxlanPort &&
      !v.learning &&
      v.proxy &&
      v.local === this.vtepAddr &&
      (this.underlayIfindex === undefined || v.underlay === this.underlayIfindex)
    );
  }

  /**
   * The kernel refused the VNI/port: find the conflicting device in the host
   * namespace. Ours (temporary-name prefix) is deleted; anyone else's is
   * reported, not touched. Returns true if something was removed.
   */
  private async removeStaleHostVxlan(vni: number, tmpName: string, log: Logger): Promise<boolean> {
    const host = this.host();
    const conflicts = (await listLinks(host)).filter(
      (l) => l.kind === "vxlan" && l.vxlan?.vni === vni && l.vxlan.dstPort === this.vxlanPort && l.name !== tmpName,
    );
    let removed = false;
    for (const l of conflicts) {
      if (!l.name.startsWith(TEMP_VXLAN_PREFIX)) {
        throw new NetlinkError(
          "create vxlan",
          `link ${tmpName}`,
          "EEXIST",
          `VNI ${vni} port ${this.vxlanPort} is already used by host device ${l.name}, which is not ours`,
        );
      }
      log.warn({ stale: l.name }, "deleting stale host-side VXLAN device holding the VNI");
      await deleteLink(host, l.index);
      removed = true;
    }
    return removed;
  }

  /** IPv4 addresses on br0 outside `subnet`: the namespace was another network's. */
  private async foreignAddresses(nl: RtNetlinkSocket, subnet: string): Promise<string[]> {
    const br = await getLinkByName(nl, BRIDGE_NAME);
    if (!br) return [];
    return (await ipv4Addresses(nl, br.index))
      .filter((a) => networkOf(a.ip, a.prefixlen) !== subnet)
      .map((a) => `${a.ip}/${a.prefixlen}`);
  }

  /** Deletes every link in the namespace except loopback. */
  private async clearNamespace(nl: RtNetlinkSocket): Promise<void> {
    for (const l of await listLinks(nl)) {
      if (l.name !== "lo") await deleteLink(nl, l.index);
    }
  }

  /** Ensures `cidr` on the link and removes every other IPv4 address from it. */
  private async ensureOnlyAddress(nl: RtNetlinkSocket, index: number, cidr: string): Promise<void> {
    const want = parseCidr(cidr);
    for (const a of await ipv4Addresses(nl, index)) {
      if (a.ip === want.ip && a.prefixlen === want.prefixlen) continue;
      const addr = ipToBuffer(a.ip);
      await nlCall(
        `delete address ${a.ip}/${a.prefixlen}`,
        `link #${index}`,
        () => nl.delAddress({ family: AF_INET, prefixlen: a.prefixlen, index }, { local: addr, address: addr }, PLAIN),
        ["EADDRNOTAVAIL"],
      );
    }
    await ensureAddress(nl, index, cidr);
  }

  private async doRemoveNetwork(subnet: string): Promise<void> {
    const st = this.networks.get(subnet);
    if (st) {
      await this.teardown(st);
      this.networks.delete(subnet);
      return;
    }
    // Not adopted by this process (e.g. removed before ensure after a restart):
    // find its namespace by the subnet on br0.
    const nsPath = await this.findNamespaceOf(subnet);
    if (!nsPath) return;
    const nl = openRtnetlinkIn(nsPath);
    await this.teardown({ spec: { subnet, gatewayCidr: "", vni: 0, mtu: 0 }, nsPath, nl, ready: false });
  }

  /**
   * Deletes the devices first (so the VNI is free again at once, instead of
   * whenever the kernel gets round to destroying the namespace), then the
   * namespace. Closes the namespace's socket.
   */
  private async teardown(st: NetworkState): Promise<void> {
    try {
      await this.clearNamespace(st.nl);
    } finally {
      st.nl.socket.close();
    }
    deleteNamedNetns(st.nsPath);
    this.log.info({ subnet: st.spec.subnet, netns: st.nsPath }, "network removed");
  }

  private async findNamespaceOf(subnet: string): Promise<string | undefined> {
    const dir = path.join(this.runDir, "netns");
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    for (const name of names) {
      const p = path.join(dir, name);
      if (!name.startsWith("vni-") || !isNetnsMount(p)) continue;
      const nl = openRtnetlinkIn(p);
      try {
        const br = await getLinkByName(nl, BRIDGE_NAME);
        if (!br) continue;
        if ((await ipv4Addresses(nl, br.index)).some((a) => networkOf(a.ip, a.prefixlen) === subnet)) return p;
      } finally {
        nl.socket.close();
      }
    }
    return undefined;
  }

  // ------------------------------------------------------------- endpoints

  private async doEnsureEndpoint(st: NetworkState, ep: EndpointSpec, mtu: number): Promise<EndpointLinks> {
    const names = endpointIfNames(ep.endpointId);
    const { hostIfName, bridgeIfName } = names;
    const mac = normMac(ep.mac);
    const host = this.host();
    const nl = st.nl;

    let brEnd = await getLinkByName(nl, bridgeIfName);
    let hostEnd = await getLinkByName(host, hostIfName);
    if (hostEnd && hostEnd.kind !== "veth") {
      throw new NetlinkError("ensure endpoint", `link ${hostIfName}`, "EEXIST", `exists with kind ${hostEnd.kind ?? "(none)"}`);
    }
    if (brEnd && brEnd.kind !== "veth") {
      await deleteLink(nl, brEnd.index);
      brEnd = undefined;
    }
    // Both ends visible but not each other's peer, or the host end without
    // its bridge end: left-overs of an interrupted run. Start over.
    if (hostEnd && (!brEnd || hostEnd.peerIndex !== brEnd.index || brEnd.peerIndex !== hostEnd.index)) {
      this.log.warn({ subnet: st.spec.subnet, hostIfName, bridgeIfName }, "stale veth end; recreating the pair");
      await deleteLink(host, hostEnd.index);
      if (brEnd) await deleteLink(nl, brEnd.index);
      hostEnd = brEnd = undefined;
    }

    if (!brEnd) {
      await this.withNetnsFd(st.nsPath, (fd) => createVethPair(host, hostIfName, bridgeIfName, mtu, fd));
      hostEnd = await getLinkByName(host, hostIfName);
      brEnd = await mustLink(nl, bridgeIfName);
      this.log.info({ subnet: st.spec.subnet, endpointId: ep.endpointId, hostIfName, bridgeIfName, mac }, "endpoint created");
    }

    await this.forgetRemote(nl, ep);

    // The bridge end: right MTU, on br0, up.
    const br = await mustLink(nl, BRIDGE_NAME);
    if (brEnd.mtu !== mtu) await setMtu(nl, brEnd.index, mtu);
    if (brEnd.master !== br.index) await setMaster(nl, brEnd.index, br.index);
    if (!brEnd.up) await setUp(nl, brEnd.index);

    // The container end, if still here (Docker moves it into the container):
    // right MTU and MAC, otherwise untouched (down, unaddressed).
    if (hostEnd) {
      if (hostEnd.mtu !== mtu) await setMtu(host, hostEnd.index, mtu);
      if (hostEnd.mac !== mac) {
        const index = hostEnd.index;
        await nlCall(`set address ${mac}`, `link ${hostIfName}`, () =>
          host.setLink({ index }, { address: macToBuffer(mac) }, PLAIN),
        );
      }
    }
    return names;
  }

  /**
   * The endpoint's address and MAC are local now: whatever the tables still
   * say about them behind vxlan0 (a container that had them on another host)
   * goes, so frames for the new container are not sent back out or dropped.
   */
  private async forgetRemote(nl: RtNetlinkSocket, ep: EndpointSpec): Promise<void> {
    const vx = await getLinkByName(nl, VXLAN_NAME);
    if (!vx) return;
    const ip = parseCidr(ep.addressCidr).ip;
    const mac = normMac(ep.mac);
    await deleteBridgeFdb(nl, vx.index, mac);
    for (const e of await listFdbEntries(nl, vx.index)) {
      if (e.mac === mac) await deleteFdbEntry(nl, e);
    }
    await deleteNeighbor(nl, { ifindex: vx.index, ip });
  }

  // ----------------------------------------------------------------- peers

  private async doSyncPeers(st: NetworkState, desired: PeerEntry[]): Promise<PeerSyncReport> {
    // Validate and index before touching the kernel.
    const wantNeigh = new Map<string, string>(); // ip → mac
    const wantFdb = new Map<string, string>(); // mac → vtep
    for (const p of desired) {
      const ip = normIp(p.ip);
      const mac = normMac(p.mac);
      const vtep = normIp(p.vtep);
      if (mac === ZERO_MAC) throw new TypeError(`peer ${ip}: the all-zeros MAC is not a peer`);
      const m = wantNeigh.get(ip);
      if (m !== undefined && m !== mac) throw new TypeError(`peer ${ip} listed with two MACs (${m}, ${mac})`);
      const v = wantFdb.get(mac);
      if (v !== undefined && v !== vtep) throw new TypeError(`peer MAC ${mac} listed behind two VTEPs (${v}, ${vtep})`);
      wantNeigh.set(ip, mac);
      wantFdb.set(mac, vtep);
    }

    const nl = st.nl;
    const vx = await mustLink(nl, VXLAN_NAME);
    const ifindex = vx.index;
    let added = 0;
    let removed = 0;

    // FDB: mac → vtep (a MAC may carry several destinations after `append`).
    const haveFdb = await listFdbEntries(nl, ifindex);
    for (const [mac, dst] of wantFdb) {
      if (haveFdb.some((e) => e.mac === mac && e.dst === dst && e.permanent)) continue;
      await replaceFdbEntry(nl, { ifindex, mac, dst });
      added++;
    }
    for (const e of await listFdbEntries(nl, ifindex)) {
      if (wantFdb.get(e.mac) === e.dst) continue;
      await deleteFdbEntry(nl, { ifindex, mac: e.mac, dst: e.dst });
      removed++;
    }

    // Neighbors on vxlan0: ip → mac (answered by the device's ARP proxy).
    const haveNeigh = await listNeighbors(nl, ifindex);
    const haveByIp = new Map(haveNeigh.map((n) => [n.ip, n.mac]));
    for (const [ip, mac] of wantNeigh) {
      if (haveByIp.get(ip) === mac) continue;
      await replaceNeighbor(nl, { ifindex, ip, mac });
      added++;
    }
    for (const n of haveNeigh) {
      if (wantNeigh.has(n.ip)) continue;
      await deleteNeighbor(nl, { ifindex, ip: n.ip });
      removed++;
    }

    // br0's table on the vxlan0 port: exactly the remote MACs, static (nothing learned survives).
    const haveBridge = await listBridgeFdb(nl, ifindex);
    for (const mac of wantFdb.keys()) {
      if (haveBridge.some((e) => e.mac === mac && e.kind === "static")) continue;
      await replaceBridgeFdbStatic(nl, ifindex, mac);
      added++;
    }
    for (const e of haveBridge) {
      if (e.kind === "local" || (e.kind === "static" && wantFdb.has(e.mac))) continue;
      await deleteBridgeFdb(nl, ifindex, e.mac);
      removed++;
    }

    if (added > 0 || removed > 0) {
      this.log.info({ subnet: st.spec.subnet, peers: wantNeigh.size, added, removed }, "peers synced");
    } else {
      this.log.debug({ subnet: st.spec.subnet, peers: wantNeigh.size }, "peers in sync");
    }
    return { added, removed };
  }
}

// ------------------------------------------------------------------ helpers

function parseCidr(cidr: string): Ipv4Addr {
  const slash = cidr.indexOf("/");
  const ip = slash < 0 ? "" : cidr.slice(0, slash);
  const prefixlen = Number(cidr.slice(slash + 1));
  if (net.isIP(ip) !== 4 || !Number.isInteger(prefixlen) || prefixlen < 0 || prefixlen > 32) {
    throw new TypeError(`invalid IPv4 CIDR ${JSON.stringify(cidr)}`);
  }
  return { ip: normIp(ip), prefixlen };
}

async function ipv4Addresses(nl: RtNetlinkSocket, index: number): Promise<Ipv4Addr[]> {
  const msgs = await nlCall("list addresses", `link #${index}`, () => nl.getAddresses({ family: AF_INET }, undefined, PLAIN));
  const out: Ipv4Addr[] = [];
  for (const m of msgs ?? []) {
    if (m.data.index !== index || m.data.family !== AF_INET) continue;
    const a = m.attrs.local ?? m.attrs.address;
    if (!a || a.length !== 4) continue;
    out.push({ ip: [...a].join("."), prefixlen: m.data.prefixlen ?? 32 });
  }
  return out;
}

async function mustLink(nl: RtNetlinkSocket, name: string): Promise<LinkInfo> {
  const l = await getLinkByName(nl, name);
  if (!l) throw new NetlinkError("get", `link ${name}`, "ENODEV", "no such link");
  return l;
}

/**
 * The kernel refused to create a VXLAN device because another one (possibly
 * in another namespace) was created here with the same VNI and port. Not
 * ensureVxlan's own "name exists with another kind" EEXIST (op "ensure vxlan").
 */
function isVniBusy(err: unknown): boolean {
  return err instanceof NetlinkError && err.code === "EEXIST" && err.op === "create vxlan";
}
