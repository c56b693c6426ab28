/**
 * Links (bridge, VXLAN, veth) and their IPv4 addresses over an rtnetlink
 * socket. Every call acts in the namespace the socket was opened in (see
 * netns.ts `openRtnetlinkIn`). The "ensure" functions are idempotent: they
 * create what is missing, fix what can be changed in place, and leave what
 * already matches alone. Deleting something that is already gone succeeds.
 *
 * Design note. The kernel adapter's netlink code is split by message family:
 * links and addresses here, FDB and neighbor entries in neighbors.ts, routes
 * in routes.ts, what every request shares in rtnetlink.ts. Links are not split
 * further by kind, because every "ensure" reads the link into one model
 * (LinkInfo, decoded here from the kernel's attributes), compares it with what
 * is wanted and writes the same attributes encoded. Decoder, comparison and
 * encoder must agree field by field: a VXLAN device whose attributes decode
 * differently from how they were written (IFLA_VXLAN_PORT is big-endian, for
 * one) would be deleted and recreated each time its network is ensured. Kept
 * in one file, a field added to one of them sits next to the other two; the
 * per-kind parts alone are a few dozen lines each.
 */
import net from "node:net";
import { ifla, rt, type RtNetlinkSocket } from "netlink";
import { ipFromBytes, macFromBytes, normalizeIp } from "../../lib/net.js";
import { AF_INET, CREATE_EXCL, NetlinkError, PLAIN, addressFamily, encodeAttrs, ipToBuffer, nlCall } from "./rtnetlink.js";

/** IFLA_INFO_DATA of a veth: VETH_INFO_PEER. */
const VETH_INFO_PEER = 1;

// -------------------------------------------------------------------- model

export interface VxlanInfo {
  vni: number;
  dstPort: number;
  local?: string;
  learning: boolean;
  proxy: boolean;
  /** IFLA_VXLAN_LINK: ifindex of the underlay device (in the device's creating namespace). */
  underlay?: number;
}

export interface LinkInfo {
  index: number;
  name: string;
  /** IFLA_INFO_KIND, e.g. "bridge", "vxlan", "veth"; undefined for plain devices. */
  kind?: string;
  mtu?: number;
  mac?: string;
  /** ifindex of the bridge this link is enslaved to. */
  master?: number;
  up: boolean;
  /** IFLA_LINK: for a veth, the peer's ifindex (possibly in another namespace). */
  peerIndex?: number;
  vxlan?: VxlanInfo;
  /** For a bridge port: whether the bridge learns source MACs arriving on it. */
  bridgePortLearning?: boolean;
}

/** An IPv4 address on a link ("10.0.0.1/24": ip "10.0.0.1", prefix 24). */
export interface Ipv4Address {
  index: number;
  ip: string;
  prefix: number;
}

/** A link by name or ifindex. */
export type LinkRef = string | number;

function describe(link: LinkRef): string {
  return typeof link === "number" ? `link #${link}` : `link ${link}`;
}

function toLinkInfo(msg: rt.LinkMessage): LinkInfo {
  const { data, attrs } = msg;
  const info: LinkInfo = {
    index: data.index ?? 0,
    name: attrs.ifname ?? "",
    up: data.flags?.up === true,
  };
  if (attrs.mtu !== undefined) info.mtu = attrs.mtu;
  if (attrs.address && attrs.address.length === 6) info.mac = macFromBytes(attrs.address);
  if (attrs.master) info.master = attrs.master;
  if (attrs.link && attrs.link.length >= 4) info.peerIndex = attrs.link.readUInt32LE(0);
  if (attrs.linkinfo) {
    const li = ifla.parseInfo(attrs.linkinfo);
    if (li.kind) info.kind = li.kind;
    if (li.kind === "vxlan" && li.data) info.vxlan = toVxlanInfo(ifla.parseVxlan(li.data));
    if (li.slaveKind === "bridge" && li.slaveData) {
      const port = ifla.parseBridgePort(li.slaveData);
      if (port.learning !== undefined) info.bridgePortLearning = port.learning === 1;
    }
  }
  return info;
}

function toVxlanInfo(v: ifla.Vxlan): VxlanInfo {
  const out: VxlanInfo = {
    vni: v.id ?? 0,
    // IFLA_VXLAN_PORT is big-endian (network order), unlike most attributes.
    dstPort: v.port && v.port.length === 2 ? v.port.readUInt16BE(0) : 0,
    learning: v.learning === 1,
    proxy: v.proxy === 1,
  };
  const local = v.local ?? v.local6;
  if (local) out.local = ipFromBytes(local);
  if (v.link) out.underlay = v.link;
  return out;
}

// -------------------------------------------------------------------- reads

/** The link named `name`, or undefined if there is none. */
export async function getLinkByName(nl: RtNetlinkSocket, name: string): Promise<LinkInfo | undefined> {
  const res = await nlCall("get", describe(name), () => nl.getLink({}, { ifname: name }, PLAIN), ["ENODEV"]);
  const msg = res?.[0];
  return msg ? toLinkInfo(msg) : undefined;
}

async function getLinkByIndex(nl: RtNetlinkSocket, index: number): Promise<LinkInfo | undefined> {
  const res = await nlCall("get", describe(index), () => nl.getLink({ index }, {}, PLAIN), ["ENODEV"]);
  const msg = res?.[0];
  return msg ? toLinkInfo(msg) : undefined;
}

async function getLink(nl: RtNetlinkSocket, link: LinkRef): Promise<LinkInfo | undefined> {
  return typeof link === "number" ? getLinkByIndex(nl, link) : getLinkByName(nl, link);
}

/** The link, or a NetlinkError (code ENODEV) naming it and `op`. */
export async function mustGetLink(nl: RtNetlinkSocket, link: LinkRef, op = "get"): Promise<LinkInfo> {
  const info = await getLink(nl, link);
  if (!info) throw new NetlinkError(op, describe(link), "ENODEV", "no such link");
  return info;
}

async function indexOf(nl: RtNetlinkSocket, link: LinkRef, op: string): Promise<number> {
  return typeof link === "number" ? link : (await mustGetLink(nl, link, op)).index;
}

export async function listLinks(nl: RtNetlinkSocket): Promise<LinkInfo[]> {
  const res = await nlCall("list", "links", () => nl.getLinks(undefined, undefined, PLAIN));
  return (res ?? []).map(toLinkInfo);
}

/**
 * IPv4 addresses in the socket's namespace: of the link `index`, or of every
 * link without it.
 */
export async function listIpv4Addresses(nl: RtNetlinkSocket, index?: number): Promise<Ipv4Address[]> {
  const subject = index === undefined ? "addresses" : describe(index);
  const msgs = await nlCall("list addresses", subject, () => nl.getAddresses({ family: AF_INET }, undefined, PLAIN));
  const out: Ipv4Address[] = [];
  for (const m of msgs ?? []) {
    const at = m.data.index;
    if (at === undefined || (index !== undefined && at !== index) || m.data.family !== AF_INET) continue;
    const a = m.attrs.local ?? m.attrs.address;
    if (!a || a.length !== 4) continue;
    out.push({ index: at, ip: ipFromBytes(a), prefix: m.data.prefixlen ?? 32 });
  }
  return out;
}

// ------------------------------------------------------------------- writes

export async function setMtu(nl: RtNetlinkSocket, link: LinkRef, mtu: number): Promise<void> {
  const index = await indexOf(nl, link, `set mtu ${mtu}`);
  await nlCall(`set mtu ${mtu}`, describe(link), () => nl.setLink({ index }, { mtu }, PLAIN));
}

export async function setUp(nl: RtNetlinkSocket, link: LinkRef): Promise<void> {
  const index = await indexOf(nl, link, "set up");
  await nlCall("set up", describe(link), () => nl.setLink({ index, flags: { up: true }, change: { up: true } }, {}, PLAIN));
}

/** Enslaves `link` to the bridge `master`; no-op if it already is. */
export async function setMaster(nl: RtNetlinkSocket, link: LinkRef, master: LinkRef): Promise<void> {
  const op = `set master ${String(master)}`;
  const info = await mustGetLink(nl, link, op);
  const masterIndex = await indexOf(nl, master, op);
  if (info.master === masterIndex) return;
  await nlCall(op, describe(link), () => nl.setLink({ index: info.index }, { master: masterIndex }, PLAIN));
}

/**
 * Turns MAC learning on or off for a bridge port (`bridge link set dev X
 * learning off`), through the port's slave data on RTM_NEWLINK: the other
 * route, IFLA_PROTINFO on an AF_BRIDGE RTM_SETLINK, must be flagged nested, or
 * the kernel reads its first byte as an STP port state.
 */
export async function setBridgePortLearning(nl: RtNetlinkSocket, link: LinkRef, learning: boolean): Promise<void> {
  const op = `set bridge port learning ${learning ? "on" : "off"}`;
  const index = await indexOf(nl, link, op);
  const slaveData = encodeAttrs(ifla.formatBridgePort({ learning: learning ? 1 : 0 }));
  const linkinfo = encodeAttrs(ifla.formatInfo({ slaveKind: "bridge", slaveData }));
  await nlCall(op, describe(link), () => nl.newLink({ index }, { linkinfo }, PLAIN));
}

/**
 * Moves a link into the namespace open at `netnsFd` (optionally renaming it
 * on the way). A VXLAN device keeps its UDP socket in the namespace it was
 * created in, which is how an overlay namespace reaches the host underlay.
 */
export async function moveLinkToNetns(nl: RtNetlinkSocket, link: LinkRef, netnsFd: number, newName?: string): Promise<void> {
  const index = await indexOf(nl, link, "move to netns");
  const attrs: ifla.LinkAttrs = { netNsFd: netnsFd };
  if (newName !== undefined) attrs.ifname = newName;
  await nlCall(`move to netns fd ${netnsFd}`, describe(link), () => nl.setLink({ index }, attrs, PLAIN));
}

/** Deletes a link; a link that is already gone is fine. */
export async function deleteLink(nl: RtNetlinkSocket, link: LinkRef): Promise<void> {
  const [data, attrs]: [rt.Link, ifla.LinkAttrs] = typeof link === "number" ? [{ index: link }, {}] : [{}, { ifname: link }];
  await nlCall("delete", describe(link), () => nl.delLink(data, attrs, PLAIN), ["ENODEV"]);
}

/**
 * Creates a link of `kind` (linkinfo built from kind + already-encoded data).
 * EEXIST is reported to the caller, which decides whether that is fine.
 */
async function newLink(nl: RtNetlinkSocket, name: string, kind: string, data: Buffer | undefined, attrs: ifla.LinkAttrs, op = `create ${kind}`): Promise<void> {
  const info: ifla.Info = { kind };
  if (data) info.data = data;
  // IFLA_LINKINFO is a nested attribute stream (typed as a plain Buffer here).
  const linkinfo = encodeAttrs(ifla.formatInfo(info));
  await nlCall(op, describe(name), () => nl.newLink({}, { ...attrs, ifname: name, linkinfo }, CREATE_EXCL));
}

function wrongKind(name: string, want: string, got: string | undefined): NetlinkError {
  return new NetlinkError(`ensure ${want}`, describe(name), "EEXIST", `exists with kind ${got ?? "(none)"}`);
}

/** Ensures a bridge `name` exists with `mtu`. Does not bring it up. */
export async function ensureBridge(nl: RtNetlinkSocket, name: string, mtu?: number): Promise<LinkInfo> {
  let info = await getLinkByName(nl, name);
  if (info && info.kind !== "bridge") throw wrongKind(name, "bridge", info.kind);
  if (!info) {
    await newLink(nl, name, "bridge", undefined, {});
    info = await mustGetLink(nl, name, "ensure bridge");
    // Set after creation (not only at creation) so the kernel records it as
    // chosen by the user; otherwise the bridge follows its ports' MTU.
    if (mtu !== undefined) await setMtu(nl, info.index, mtu);
  } else if (mtu !== undefined && info.mtu !== mtu) {
    await setMtu(nl, info.index, mtu);
  }
  return mustGetLink(nl, name, "ensure bridge");
}

export interface VxlanSpec {
  name: string;
  vni: number;
  dstPort: number;
  /** Source address of encapsulated packets (this host's underlay address). */
  local?: string;
  learning: boolean;
  proxy: boolean;
  mtu?: number;
  /** ifindex of the underlay device in the socket's namespace. */
  underlay?: number;
}

/** What makes a VXLAN device what it is; name and MTU aside (MTU is fixed in place). */
export type VxlanParams = Omit<VxlanSpec, "name" | "mtu">;

/**
 * Why the link is not the VXLAN device `want` describes ("vni 1 vs 2,
 * learning on vs off"), or undefined when it is. `local` and `underlay` are
 * compared only when `want` names them.
 */
export function vxlanMismatch(have: LinkInfo, want: VxlanParams): string | undefined {
  if (have.kind !== "vxlan") return `kind ${have.kind ?? "(none)"} vs vxlan`;
  const v = have.vxlan;
  if (v === undefined) return "no VXLAN attributes";
  const onOff = (b: boolean): string => (b ? "on" : "off");
  const diffs: string[] = [];
  if (v.vni !== want.vni) diffs.push(`vni ${v.vni} vs ${want.vni}`);
  if (v.dstPort !== want.dstPort) diffs.push(`dstport ${v.dstPort} vs ${want.dstPort}`);
  if (v.learning !== want.learning) diffs.push(`learning ${onOff(v.learning)} vs ${onOff(want.learning)}`);
  if (v.proxy !== want.proxy) diffs.push(`proxy ${onOff(v.proxy)} vs ${onOff(want.proxy)}`);
  if (want.local !== undefined && v.local !== normalizeIp(want.local)) diffs.push(`local ${v.local ?? "(none)"} vs ${want.local}`);
  if (want.underlay !== undefined && v.underlay !== want.underlay) {
    diffs.push(`underlay #${v.underlay ?? "(none)"} vs #${want.underlay}`);
  }
  return diffs.length > 0 ? diffs.join(", ") : undefined;
}

/**
 * Ensures a VXLAN device matching `spec`. VNI, port, addresses and flags
 * cannot all be changed in place, so a mismatching device is deleted and
 * recreated; that also drops its FDB entries and bridge membership, which a
 * reconcile pass restores. Does not enslave it or bring it up.
 */
export async function ensureVxlan(nl: RtNetlinkSocket, spec: VxlanSpec): Promise<LinkInfo> {
  const existing = await getLinkByName(nl, spec.name);
  if (existing && existing.kind !== "vxlan") throw wrongKind(spec.name, "vxlan", existing.kind);
  if (existing && vxlanMismatch(existing, spec) === undefined) {
    if (spec.mtu !== undefined && existing.mtu !== spec.mtu) await setMtu(nl, existing.index, spec.mtu);
    return mustGetLink(nl, spec.name, "ensure vxlan");
  }
  if (existing) await deleteLink(nl, existing.index);

  if (!Number.isInteger(spec.vni) || spec.vni < 1 || spec.vni > 0xffffff) {
    throw new NetlinkError("ensure vxlan", describe(spec.name), undefined, `invalid VNI ${spec.vni}`);
  }
  const port = Buffer.alloc(2);
  port.writeUInt16BE(spec.dstPort);
  const v: ifla.Vxlan = {
    id: spec.vni,
    port,
    learning: spec.learning ? 1 : 0,
    proxy: spec.proxy ? 1 : 0,
  };
  if (spec.local !== undefined) {
    if (addressFamily(spec.local) === AF_INET) v.local = ipToBuffer(spec.local);
    else v.local6 = ipToBuffer(spec.local);
  }
  if (spec.underlay !== undefined) v.link = spec.underlay;
  const attrs: ifla.LinkAttrs = {};
  if (spec.mtu !== undefined) attrs.mtu = spec.mtu;
  await newLink(nl, spec.name, "vxlan", encodeAttrs(ifla.formatVxlan(v)), attrs);
  return mustGetLink(nl, spec.name, "ensure vxlan");
}

/**
 * Creates a veth pair: `name` in the socket's namespace and `peerName`
 * created directly in the namespace open at `peerNetnsFd` (or alongside
 * `name` without it), both with `mtu`. Idempotent on `name`: if a veth of that
 * name exists it is returned (its MTU corrected), without looking at the peer,
 * which may live in a namespace this socket cannot see.
 */
export async function createVethPair(nl: RtNetlinkSocket, name: string, peerName: string, mtu?: number, peerNetnsFd?: number): Promise<LinkInfo> {
  const existing = await getLinkByName(nl, name);
  if (existing) {
    if (existing.kind !== "veth") throw wrongKind(name, "veth", existing.kind);
    if (mtu !== undefined && existing.mtu !== mtu) await setMtu(nl, existing.index, mtu);
    return mustGetLink(nl, name, "create veth");
  }
  // VETH_INFO_PEER carries a whole ifinfomsg followed by the peer's IFLA_* attributes.
  const peerAttrs: ifla.LinkAttrs = { ifname: peerName };
  if (mtu !== undefined) peerAttrs.mtu = mtu;
  if (peerNetnsFd !== undefined) peerAttrs.netNsFd = peerNetnsFd;
  const peer = Buffer.concat([rt.formatLink({}), encodeAttrs(ifla.formatLinkAttrs(peerAttrs))]);
  const data = encodeAttrs((out) => out.push(VETH_INFO_PEER, peer));
  const attrs: ifla.LinkAttrs = {};
  if (mtu !== undefined) attrs.mtu = mtu;
  await newLink(nl, name, "veth", data, attrs, `create veth (peer ${peerName})`);
  return mustGetLink(nl, name, "create veth");
}

/** Ensures `cidr` (e.g. "10.0.0.1/24") is assigned to `link`. Other addresses are left alone. */
export async function ensureAddress(nl: RtNetlinkSocket, link: LinkRef, cidr: string): Promise<void> {
  const op = `add address ${cidr}`;
  const slash = cidr.indexOf("/");
  const ip = slash < 0 ? "" : cidr.slice(0, slash);
  const prefixlen = Number(cidr.slice(slash + 1));
  const family = net.isIP(ip) === 0 ? 0 : addressFamily(ip);
  if (!family || !Number.isInteger(prefixlen) || prefixlen < 0 || prefixlen > (family === AF_INET ? 32 : 128)) {
    throw new NetlinkError(op, describe(link), undefined, "invalid CIDR");
  }
  const index = await indexOf(nl, link, op);
  const addr = ipToBuffer(ip);
  const have = await nlCall("list addresses", describe(link), () => nl.getAddresses({ family }, undefined, PLAIN));
  const present = (have ?? []).some(
    (a) => a.data.index === index && a.data.prefixlen === prefixlen && (a.attrs.local ?? a.attrs.address)?.equals(addr) === true,
  );
  if (present) return;
  // For IPv4 the kernel wants IFA_LOCAL (our address) as well as IFA_ADDRESS.
  const attrs: rt.AddressAttrs = family === AF_INET ? { local: addr, address: addr } : { address: addr };
  await nlCall(op, describe(link), () => nl.newAddress({ family, prefixlen, index }, attrs, CREATE_EXCL), ["EEXIST"]);
}
