import {
  decodeIpv4,
  decodeVxlanDatagram,
  encodeIpv4,
  encodeVxlanDatagram,
  internetChecksum,
  IPPROTO_ICMP,
  IPPROTO_UDP,
  IPV4_MIN_HEADER_LENGTH,
} from "../vxlan-codec.js";
import { ipFromBytes } from "../../../lib/net.js";

/**
 * The probe's packets, whole IPv4 packets as a raw socket sends and
 * receives them (outer header included, DF set: a probe that the path
 * cannot carry must be dropped or refused, never fragmented).
 *
 * A VXLAN probe carries an ICMP echo request from one of this host's
 * endpoints (inner source: its address and MAC, which the peer programs) to
 * the network's gateway address, which is the peer's br0. The frame goes to
 * the broadcast MAC (we do not know the peer bridge's own MAC); the peer's
 * bridge hands it to its IP stack, which answers the endpoint: the reply is
 * encapsulated back to this host's VTEP, where the probe sees it (and the
 * endpoint's container gets a stray echo reply, which it drops).
 */

export const VXLAN_OUTER_OVERHEAD = IPV4_MIN_HEADER_LENGTH + 8 + 8 + 14; // outer IP, UDP, VXLAN, inner Ethernet
const ICMP_ECHO_REQUEST = 8;
const ICMP_ECHO_REPLY = 0;
const ICMP_UNREACHABLE = 3;
const BROADCAST = "ff:ff:ff:ff:ff:ff";
/** The smallest probe: headers, and 8 bytes of ICMP. */
export const MIN_PROBE_SIZE = VXLAN_OUTER_OVERHEAD + IPV4_MIN_HEADER_LENGTH + 8;

export interface VxlanProbeSpec {
  srcVtep: string;
  dstVtep: string;
  port: number;
  srcPort: number;
  vni: number;
  innerSrcIp: string;
  innerSrcMac: string;
  innerDstIp: string;
  id: number;
  seq: number;
  /** The outer packet's total length. */
  size: number;
}

function icmpEcho(type: number, id: number, seq: number, dataLength: number): Buffer {
  const icmp = Buffer.alloc(8 + Math.max(0, dataLength));
  icmp.writeUInt8(type, 0);
  icmp.writeUInt16BE(id, 4);
  icmp.writeUInt16BE(seq, 6);
  for (let i = 8; i < icmp.length; i++) icmp[i] = i & 0xff;
  icmp.writeUInt16BE(internetChecksum(icmp), 2);
  return icmp;
}

function must<T>(r: { ok: true; value: T } | { ok: false; error: string }): T {
  if (!r.ok) throw new Error(`building a probe: ${r.error}`);
  return r.value;
}

export function vxlanProbe(s: VxlanProbeSpec): Buffer {
  const innerIpLength = s.size - VXLAN_OUTER_OVERHEAD;
  const icmp = icmpEcho(ICMP_ECHO_REQUEST, s.id, s.seq, innerIpLength - IPV4_MIN_HEADER_LENGTH - 8);
  const datagram = must(
    encodeVxlanDatagram({
      vni: s.vni,
      ethernet: { dst: BROADCAST, src: s.innerSrcMac },
      ipv4: { src: s.innerSrcIp, dst: s.innerDstIp, protocol: IPPROTO_ICMP, dontFragment: true, identification: s.seq },
      payload: icmp,
    }),
  );
  const udp = Buffer.alloc(8 + datagram.length);
  udp.writeUInt16BE(s.srcPort, 0);
  udp.writeUInt16BE(s.port, 2);
  udp.writeUInt16BE(udp.length, 4);
  // Checksum 0: none, as VXLAN over IPv4 allows (RFC 7348 §5).
  datagram.copy(udp, 8);
  return must(encodeIpv4({ src: s.srcVtep, dst: s.dstVtep, protocol: IPPROTO_UDP, dontFragment: true, identification: s.seq }, udp));
}

/** A plain ICMP echo to the peer's VTEP address: is the host there at all? */
export function plainPing(src: string, dst: string, id: number, seq: number): Buffer {
  return must(encodeIpv4({ src, dst, protocol: IPPROTO_ICMP, dontFragment: true, identification: seq }, icmpEcho(ICMP_ECHO_REQUEST, id, seq, 56)));
}

export type Heard =
  | { kind: "vxlan-reply"; from: string; seq: number }
  | { kind: "ping-reply"; from: string; seq: number }
  /** An ICMP error about one of our UDP probes to `to`:`port`: frag needed (with the MTU it allows), port unreachable, administratively prohibited... */
  | { kind: "unreachable"; from: string; to: string; port: number; code: number; mtu: number | undefined; seq: number };

/** What a received packet (from a raw UDP or ICMP socket) says about the probe `id`; undefined when it is not ours. */
export function hear(packet: Buffer, probe: { id: number; vni: number; port: number; peer: string }): Heard | undefined {
  const ip = decodeIpv4(packet);
  if (!ip.ok) return undefined;
  const { protocol, src } = ip.value.value;
  const body = ip.value.rest;
  if (protocol === IPPROTO_UDP && src === probe.peer && body.length > 8 && body.readUInt16BE(2) === probe.port) {
    const d = decodeVxlanDatagram(body.subarray(8));
    if (!d.ok || d.value.vni !== probe.vni || d.value.ipv4?.protocol !== IPPROTO_ICMP) return undefined;
    const icmp = d.value.payload;
    if (icmp.length < 8 || icmp[0] !== ICMP_ECHO_REPLY || icmp.readUInt16BE(4) !== probe.id) return undefined;
    return { kind: "vxlan-reply", from: src, seq: icmp.readUInt16BE(6) };
  }
  if (protocol !== IPPROTO_ICMP || body.length < 8) return undefined;
  if (body[0] === ICMP_ECHO_REPLY && src === probe.peer && body.readUInt16BE(4) === probe.id)
    return { kind: "ping-reply", from: src, seq: body.readUInt16BE(6) };
  if (body[0] !== ICMP_UNREACHABLE || body.length < 8 + IPV4_MIN_HEADER_LENGTH + 4) return undefined;
  // The quoted packet: its IP header (maybe cut short), then at least 8 bytes of UDP.
  const quoted = body.subarray(8);
  const ihl = (quoted[0]! & 0x0f) * 4;
  if (quoted[9] !== IPPROTO_UDP || quoted.length < ihl + 4) return undefined;
  const to = ipFromBytes(quoted.subarray(16, 20));
  const port = quoted.readUInt16BE(ihl + 2);
  if (to !== probe.peer || port !== probe.port) return undefined;
  const code = body[1]!;
  // The probe's sequence number is its outer IP identification, which the error quotes.
  return { kind: "unreachable", from: src, to, port, code, mtu: code === 4 ? body.readUInt16BE(6) : undefined, seq: quoted.readUInt16BE(4) };
}
