/**
 * Permanent forwarding entries the overlay programs from cluster state:
 *  - FDB entries on a VXLAN device: "MAC m lives behind remote VTEP d"
 *    (family AF_BRIDGE, NTF_SELF so the VXLAN driver's own table is used,
 *    like `bridge fdb add m dev vx dst d self permanent`);
 *  - neighbor (ARP/NDP) entries on a device: "IP i has MAC m", permanent so
 *    the kernel never expires or re-resolves them.
 * The list functions return parsed entries so a reconcile loop can diff
 * desired against actual state.
 */
import type { RtNetlinkSocket, rt } from "netlink";
import { ipFromBytes, macFromBytes } from "../../lib/net.js";
import { CREATE_REPLACE, PLAIN, addressFamily, ipToBuffer, macToBuffer, nlCall } from "./rtnetlink.js";

const AF_UNSPEC = 0;
const AF_BRIDGE = 7;

/** Deleting an entry that is not there is success. */
const GONE = ["ENOENT"] as const;

// ---------------------------------------------------------------------- FDB

export interface FdbEntry {
  /** ifindex of the VXLAN device. */
  ifindex: number;
  mac: string;
  /** Remote VTEP (underlay) address. */
  dst: string;
}

export interface FdbEntryState extends FdbEntry {
  permanent: boolean;
}

function fdbSubject(e: FdbEntry): string {
  return `fdb ${e.mac} dst ${e.dst} on link #${e.ifindex}`;
}

function fdbMessage(e: FdbEntry): [rt.Neighbor, rt.NeighborAttrs] {
  return [
    { family: AF_BRIDGE, ifindex: e.ifindex, state: { permanent: true }, flags: { self: true } },
    { lladdr: macToBuffer(e.mac), dst: ipToBuffer(e.dst) },
  ];
}

/** Adds the entry, or points the MAC's existing entry at `dst`. Idempotent. */
export async function replaceFdbEntry(nl: RtNetlinkSocket, e: FdbEntry): Promise<void> {
  const [data, attrs] = fdbMessage(e);
  await nlCall("replace", fdbSubject(e), () => nl.newNeighbor(data, attrs, CREATE_REPLACE));
}

/** Removes the MAC→dst entry; already absent is fine. */
export async function deleteFdbEntry(nl: RtNetlinkSocket, e: FdbEntry): Promise<void> {
  const [data, attrs] = fdbMessage(e);
  await nlCall("delete", fdbSubject(e), () => nl.delNeighbor(data, attrs, PLAIN), GONE);
}

/**
 * The VXLAN device's own FDB entries that have a remote destination (one
 * element per MAC/dst pair). Bridge-learned entries and the bridge's
 * own-address entries are not included.
 */
export async function listFdbEntries(nl: RtNetlinkSocket, ifindex: number): Promise<FdbEntryState[]> {
  // The dump cannot be filtered by port with a bare ndmsg; filter here.
  const msgs = await nlCall("list", `fdb on link #${ifindex}`, () => nl.getNeighbors({ family: AF_BRIDGE }, undefined, PLAIN));
  const out: FdbEntryState[] = [];
  for (const m of msgs ?? []) {
    const { data, attrs } = m;
    if (data.family !== AF_BRIDGE || data.ifindex !== ifindex || data.flags?.self !== true) continue;
    if (!attrs.lladdr || !attrs.dst) continue;
    out.push({
      ifindex,
      mac: macFromBytes(attrs.lladdr),
      dst: ipFromBytes(attrs.dst),
      permanent: data.state?.permanent === true,
    });
  }
  return out;
}

// ------------------------------------------------------- bridge FDB (master)

/**
 * The bridge's own forwarding table, per port: `bridge fdb … master`. Static
 * entries (NUD_NOARP) never age and are never replaced by learning; a
 * "permanent" master entry is different: it marks an address local to the
 * bridge (frames to it are not forwarded), so it is never what we add.
 */
export interface BridgeFdbEntry {
  /** ifindex of the bridge port. */
  port: number;
  mac: string;
  /** "static": set by a program; "local": the port's own address; "learned": from traffic. */
  kind: "static" | "local" | "learned";
}

function bridgeFdbMessage(port: number, mac: string): [rt.Neighbor, rt.NeighborAttrs] {
  return [{ family: AF_BRIDGE, ifindex: port, state: { noarp: true }, flags: { master: true } }, { lladdr: macToBuffer(mac) }];
}

/** Makes `mac` a static entry on the bridge port (`bridge fdb replace … master static`). Idempotent. */
export async function replaceBridgeFdbStatic(nl: RtNetlinkSocket, port: number, mac: string): Promise<void> {
  const [data, attrs] = bridgeFdbMessage(port, mac);
  await nlCall("replace", `bridge fdb ${mac} on port #${port}`, () => nl.newNeighbor(data, attrs, CREATE_REPLACE));
}

/** Removes the bridge's entry for `mac` on the port, static or learned; absent is fine. */
export async function deleteBridgeFdb(nl: RtNetlinkSocket, port: number, mac: string): Promise<void> {
  const [data, attrs] = bridgeFdbMessage(port, mac);
  await nlCall("delete", `bridge fdb ${mac} on port #${port}`, () => nl.delNeighbor(data, attrs, PLAIN), GONE);
}

/** The bridge's entries on one port (not the port device's own `self` entries). */
export async function listBridgeFdb(nl: RtNetlinkSocket, port: number): Promise<BridgeFdbEntry[]> {
  const msgs = await nlCall("list", `bridge fdb on port #${port}`, () => nl.getNeighbors({ family: AF_BRIDGE }, undefined, PLAIN));
  const out: BridgeFdbEntry[] = [];
  for (const m of msgs ?? []) {
    const { data, attrs } = m;
    if (data.family !== AF_BRIDGE || data.ifindex !== port || data.flags?.self === true) continue;
    if (attrs.master === undefined || !attrs.lladdr || attrs.lladdr.length !== 6) continue;
    const kind = data.state?.permanent === true ? "local" : data.state?.noarp === true ? "static" : "learned";
    out.push({ port, mac: macFromBytes(attrs.lladdr), kind });
  }
  return out;
}

// ---------------------------------------------------------------- neighbors

export interface NeighborEntry {
  ifindex: number;
  ip: string;
  mac: string;
}

export interface NeighborEntryState {
  ifindex: number;
  ip: string;
  /** Absent while the entry is unresolved (incomplete/failed). */
  mac?: string;
  permanent: boolean;
}

function neighSubject(e: { ifindex: number; ip: string; mac?: string }): string {
  return `neighbor ${e.ip}${e.mac ? ` lladdr ${e.mac}` : ""} on link #${e.ifindex}`;
}

function neighMessage(e: NeighborEntry): [rt.Neighbor, rt.NeighborAttrs] {
  return [
    { family: addressFamily(e.ip), ifindex: e.ifindex, state: { permanent: true } },
    { dst: ipToBuffer(e.ip), lladdr: macToBuffer(e.mac) },
  ];
}

/** Adds or overwrites the permanent IP→MAC entry (also turns a learned entry permanent). Idempotent. */
export async function replaceNeighbor(nl: RtNetlinkSocket, e: NeighborEntry): Promise<void> {
  const [data, attrs] = neighMessage(e);
  await nlCall("replace", neighSubject(e), () => nl.newNeighbor(data, attrs, CREATE_REPLACE));
}

/** Removes the entry for `ip` on the device; already absent is fine. */
export async function deleteNeighbor(nl: RtNetlinkSocket, e: { ifindex: number; ip: string }): Promise<void> {
  const data: rt.Neighbor = { family: addressFamily(e.ip), ifindex: e.ifindex };
  await nlCall("delete", neighSubject(e), () => nl.delNeighbor(data, { dst: ipToBuffer(e.ip) }, PLAIN), GONE);
}

/**
 * IPv4 and IPv6 neighbor entries on the device. With `permanentOnly`
 * (default) only the entries a program set — not ones the kernel resolved.
 */
export async function listNeighbors(nl: RtNetlinkSocket, ifindex: number, opts: { permanentOnly?: boolean } = {}): Promise<NeighborEntryState[]> {
  const permanentOnly = opts.permanentOnly ?? true;
  const msgs = await nlCall("list", `neighbors on link #${ifindex}`, () => nl.getNeighbors({ family: AF_UNSPEC }, undefined, PLAIN));
  const out: NeighborEntryState[] = [];
  for (const m of msgs ?? []) {
    const { data, attrs } = m;
    if (data.family === AF_BRIDGE || data.ifindex !== ifindex || !attrs.dst) continue;
    const permanent = data.state?.permanent === true;
    if (permanentOnly && !permanent) continue;
    const entry: NeighborEntryState = { ifindex, ip: ipFromBytes(attrs.dst), permanent };
    if (attrs.lladdr && attrs.lladdr.length === 6) entry.mac = macFromBytes(attrs.lladdr);
    out.push(entry);
  }
  return out;
}
