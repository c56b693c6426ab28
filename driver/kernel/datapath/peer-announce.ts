/**
 * Peers announced to the local containers when a sync programs them.
 *
 * Design note. A container that asks for a peer's address (ARP, or a
 * Neighbor Solicitation) before the peer's neighbor entry exists on vxlan0
 * gets no answer from the device's proxy; its own entry stays INCOMPLETE
 * until its next retry (1 s by default), and its first packets wait that
 * long. So each neighbor entry a sync adds, or whose MAC it changes, is
 * announced into br0 on the peer's behalf, from the peer's MAC, right after
 * the tables are programmed:
 *   - IPv4: a gratuitous ARP in reply form (sender = target = the peer),
 *     broadcast. Linux's arp_process updates an entry it already holds with
 *     it, even with arp_accept=0, and creates none; the reply form because
 *     vxlan0's proxy consumes every ARP frame the bridge floods to it and
 *     would answer a request form with a reply of its own, bounced at br0;
 *   - IPv6: an unsolicited Neighbor Advertisement with the override flag to
 *     all-nodes (ff02::1), which updates an existing entry the same way
 *     (ndisc_recv_na). The copy flooded to vxlan0 finds no FDB entry for
 *     33:33:00:00:00:01 and is dropped there (counted in its tx_dropped).
 * Containers that never asked are left alone, and nothing leaves the host.
 * One frame per change, not a repeat: the bridge is local and does not lose
 * frames, and there is no window to cover (a question asked before the
 * entry existed left an INCOMPLETE entry this frame updates; one asked after
 * is answered by the proxy).
 *
 * Best effort: the entry is programmed whatever happens here, and the
 * container's own retry still finds it. A failure is logged (one line per
 * sync, naming the network and the first address that failed) and counted
 * in tsoverlay_peer_announcements_total, never thrown into the sync.
 */
import { messageOf } from "../../../lib/errors.js";
import { metrics } from "../../../lib/metrics.js";
import { ipFamilyOf, ipToBytes, macToBytes } from "../../../lib/net.js";
import { mustGetLink } from "../links.js";
import { PacketSender } from "../packet-socket.js";
import { ETHERTYPE_ARP, ETHERTYPE_IPV6, encodeArp, encodeEthernetHeader, internetChecksum } from "../vxlan-codec.js";
import { BRIDGE_NAME, type DatapathContext, type NetworkState } from "./context.js";

/** A neighbor entry as programmed: ip → mac (canonical forms). */
export interface Announced {
  ip: string;
  mac: string;
}

const BROADCAST = "ff:ff:ff:ff:ff:ff";
const ALL_NODES_MAC = "33:33:00:00:00:01";
const ALL_NODES = "ff02::1";
const IPPROTO_ICMPV6 = 58;
const ND_NEIGHBOR_ADVERTISEMENT = 136;
const ND_FLAG_OVERRIDE = 0x20000000;
const ND_OPT_TARGET_LINK_ADDRESS = 2;
/** ICMPv6 header and flags (8), target (16), target link-layer address option (8). */
const NA_LENGTH = 32;
const IPV6_HEADER_LENGTH = 40;

/** Announces `peers` into the network's br0 (see the note above); never throws. */
export async function announcePeers(ctx: DatapathContext, st: NetworkState, peers: readonly Announced[]): Promise<void> {
  if (peers.length === 0) return;
  const count = { ipv4: { sent: 0, failed: 0 }, ipv6: { sent: 0, failed: 0 } };
  let first: { ip: string; err: unknown } | undefined;
  let out: { sender: PacketSender; ifindex: number } | undefined;
  try {
    const ifindex = (await mustGetLink(st.nl, BRIDGE_NAME)).index;
    out = { sender: PacketSender.openIn(st.nsPath), ifindex };
  } catch (err) {
    first = { ip: peers[0]!.ip, err };
  }
  for (const p of peers) {
    const n = count[ipFamilyOf(p.ip) === 4 ? "ipv4" : "ipv6"];
    try {
      if (out === undefined) throw new Error("no way out of br0");
      const frame = announcementOf(p);
      out.sender.send(out.ifindex, frame.ethertype, frame.bytes);
      n.sent++;
    } catch (err) {
      n.failed++;
      first ??= { ip: p.ip, err };
    }
  }
  out?.sender.close();
  for (const family of ["ipv4", "ipv6"] as const) {
    for (const result of ["sent", "failed"] as const) {
      if (count[family][result] > 0) metrics.peerAnnouncements.inc({ family, result }, count[family][result]);
    }
  }
  const where = { subnet: st.spec.subnet, vni: st.spec.vni };
  if (first === undefined) {
    ctx.log.debug({ ...where, announced: peers.length }, "programmed peers announced to local containers");
    return;
  }
  const failed = count.ipv4.failed + count.ipv6.failed;
  ctx.log.warn({ ...where, ip: first.ip, failed, of: peers.length, err: messageOf(first.err) }, "announcing programmed peers to local containers failed");
}

/** The frame that announces one peer: a gratuitous ARP for IPv4, an unsolicited NA for IPv6. */
export function announcementOf(p: Announced): { ethertype: number; bytes: Buffer } {
  return ipFamilyOf(p.ip) === 4 ? { ethertype: ETHERTYPE_ARP, bytes: gratuitousArp(p) } : { ethertype: ETHERTYPE_IPV6, bytes: unsolicitedNa(p) };
}

function gratuitousArp(p: Announced): Buffer {
  const eth = must(encodeEthernetHeader({ dst: BROADCAST, src: p.mac, ethertype: ETHERTYPE_ARP }));
  const arp = must(encodeArp({ op: "reply", senderMac: p.mac, senderIp: p.ip, targetMac: p.mac, targetIp: p.ip }));
  return Buffer.concat([eth, arp]);
}

/** RFC 4861 §4.4 and §7.2.6: from the target address itself, hop limit 255, Override set, Solicited not. */
function unsolicitedNa(p: Announced): Buffer {
  const eth = must(encodeEthernetHeader({ dst: ALL_NODES_MAC, src: p.mac, ethertype: ETHERTYPE_IPV6 }));
  const src = Buffer.from(ipToBytes(p.ip));
  const dst = Buffer.from(ipToBytes(ALL_NODES));
  const ip6 = Buffer.alloc(IPV6_HEADER_LENGTH);
  ip6.writeUInt32BE(6 << 28, 0);
  ip6.writeUInt16BE(NA_LENGTH, 4);
  ip6.writeUInt8(IPPROTO_ICMPV6, 6);
  ip6.writeUInt8(255, 7);
  src.copy(ip6, 8);
  dst.copy(ip6, 24);
  const na = Buffer.alloc(NA_LENGTH);
  na.writeUInt8(ND_NEIGHBOR_ADVERTISEMENT, 0);
  na.writeUInt32BE(ND_FLAG_OVERRIDE, 4);
  src.copy(na, 8);
  na.writeUInt8(ND_OPT_TARGET_LINK_ADDRESS, 24);
  na.writeUInt8(1, 25); // in units of 8 bytes
  Buffer.from(macToBytes(p.mac)).copy(na, 26);
  // The checksum covers a pseudo-header: source, destination, upper-layer length, next header.
  const pseudo = Buffer.alloc(40);
  src.copy(pseudo, 0);
  dst.copy(pseudo, 16);
  pseudo.writeUInt32BE(NA_LENGTH, 32);
  pseudo.writeUInt8(IPPROTO_ICMPV6, 39);
  na.writeUInt16BE(internetChecksum(Buffer.concat([pseudo, na])), 2);
  return Buffer.concat([eth, ip6, na]);
}

function must<T>(r: { ok: true; value: T } | { ok: false; error: string }): T {
  if (!r.ok) throw new Error(`building a peer announcement: ${r.error}`);
  return r.value;
}
