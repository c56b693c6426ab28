/**
 * VXLAN datagram codec: pure encode/decode of the UDP payload a VTEP sends and
 * receives. No I/O. `tsoverlay probe` builds and reads its packets with it.
 * One wire format in one module, layer by layer: each layer's encoder sits
 * beside its decoder so the two stay each other's inverse, all decoders share
 * the bounds checks and the form of their errors, and the whole-datagram
 * functions at the end chain the layers by ethertype. No layer is long; the
 * module's length is the number of layers.
 *
 * Layers handled, and why:
 * - VXLAN header (RFC 7348): carries the VNI that selects the overlay network.
 * - Inner Ethernet II header, with at most one 802.1Q tag: source MACs per VNI
 *   are what a VTEP learns, and the ethertype selects the next layer.
 * - ARP for IPv4 over Ethernet: needed to answer/suppress ARP from the store.
 * - IPv4 header (checksum computed on encode, verified on decode): enough to
 *   build and recognise probes such as ICMP echo.
 *
 * Deliberately not handled:
 * - Outer IP/UDP: the UDP socket already stripped them.
 * - Ethernet FCS: VXLAN does not carry it.
 * - IPv6 inner packets: recognised by ethertype only; the packet is returned
 *   raw in `payload`. The same goes for any other ethertype.
 * - Stacked VLAN tags (QinQ, 0x88a8 or a second 0x8100): rejected.
 * - IPv4 fragment reassembly, option parsing (options are raw bytes), and
 *   layer-4 checksums (`internetChecksum` is exported so callers can build them).
 * - VXLAN extensions (GPE, GBP): flag bits other than I are ignored on decode,
 *   as RFC 7348 requires for reserved bits, and written as zero on encode.
 * - Minimum Ethernet frame padding: not added on encode (the kernel does not
 *   need it inside VXLAN); tolerated on decode (ARP: returned as `payload`;
 *   IPv4: trimmed off using the total length).
 *
 * Decoders never throw, whatever the input; every problem comes back as a
 * `failure("<layer>: <what> (<details>)")`. Decoded buffers are views into the
 * input (no copies): copy them if the receive buffer is going to be reused.
 */
import { ipFromBytes, ipv4ToBuffer, parseIpv4 } from "../../lib/net.js";
import { failure, success, type Result } from "../../lib/result.js";

export const VXLAN_HEADER_LENGTH = 8;
export const VXLAN_MAX_VNI = 0xffffff;
export const ETHERNET_HEADER_LENGTH = 14;
export const VLAN_TAG_LENGTH = 4;
export const ARP_PACKET_LENGTH = 28;
export const IPV4_MIN_HEADER_LENGTH = 20;
export const IPV4_MAX_HEADER_LENGTH = 60;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_QINQ = 0x88a8;
export const ETHERTYPE_IPV6 = 0x86dd;

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

const VXLAN_FLAG_I = 0x08;
const ARP_HTYPE_ETHERNET = 1;
const ARP_OP_REQUEST = 1;
const ARP_OP_REPLY = 2;

/** A decoded layer and the bytes that follow it (a view into the input). */
export interface Decoded<T> {
  value: T;
  rest: Buffer;
}

export interface VxlanHeader {
  vni: number;
}

export interface VlanTag {
  /** VLAN identifier, 12 bits. */
  id: number;
  /** Priority code point (802.1p), 3 bits. */
  priority: number;
  /** Drop eligible indicator. */
  dei: boolean;
}

export interface VlanTagInput {
  id: number;
  priority?: number;
  dei?: boolean;
}

export interface EthernetHeader {
  dst: string;
  src: string;
  /** The ethertype of the payload: for a tagged frame, the one after the tag. */
  ethertype: number;
  vlan?: VlanTag;
}

export interface EthernetHeaderInput {
  dst: string;
  src: string;
  ethertype: number;
  vlan?: VlanTagInput;
}

export type ArpOp = "request" | "reply";

export interface ArpPacket {
  op: ArpOp;
  senderMac: string;
  senderIp: string;
  targetMac: string;
  targetIp: string;
}

export interface Ipv4Header {
  /** Header length in 32-bit words (5..15). */
  ihl: number;
  /** The whole second byte (DSCP and ECN). */
  tos: number;
  totalLength: number;
  identification: number;
  dontFragment: boolean;
  moreFragments: boolean;
  /** In 8-byte units. */
  fragmentOffset: number;
  ttl: number;
  protocol: number;
  checksum: number;
  src: string;
  dst: string;
  /** Raw option bytes (ihl * 4 - 20 of them), unparsed. */
  options: Buffer;
}

/**
 * What the encoder needs. Header length, total length and checksum are always
 * computed, so a decoded `Ipv4Header` can be passed back in as is.
 */
export interface Ipv4HeaderInput {
  src: string;
  dst: string;
  protocol: number;
  /** Default 64. */
  ttl?: number;
  /** Default 0. */
  tos?: number;
  /** Default 0. */
  identification?: number;
  /** Default false. */
  dontFragment?: boolean;
  /** Default false. */
  moreFragments?: boolean;
  /** Default 0. */
  fragmentOffset?: number;
  /** Raw option bytes, padded by the caller to a multiple of 4, at most 40. */
  options?: Uint8Array;
}

export interface VxlanDatagram {
  vni: number;
  ethernet: EthernetHeader;
  arp?: ArpPacket;
  ipv4?: Ipv4Header;
  /**
   * The bytes after the innermost decoded header: the IPv4 payload (trimmed to
   * the total length), whatever follows the ARP body (normally padding, often
   * empty), or the whole Ethernet payload for any other ethertype.
   */
  payload: Buffer;
}

/**
 * Input of `encodeVxlanDatagram`. Give at most one of `arp` and `ipv4`; with
 * neither, `ethernet.ethertype` is required and `payload` is the Ethernet
 * payload. With `arp`, `payload` is appended after the ARP body; with `ipv4`,
 * it is the IPv4 payload. A decoded `VxlanDatagram` is a valid input.
 */
export interface VxlanDatagramInput {
  vni: number;
  ethernet: { dst: string; src: string; ethertype?: number; vlan?: VlanTagInput };
  arp?: ArpPacket;
  ipv4?: Ipv4HeaderInput;
  payload?: Uint8Array;
}

// ---------------------------------------------------------------------------
// Addresses and checksum

const MAC_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i;

/** Parses `aa:bb:cc:dd:ee:ff` (either case) into 6 bytes. */
export function parseMac(mac: string): Result<Buffer> {
  if (typeof mac !== "string" || !MAC_RE.test(mac)) {
    return failure(`invalid MAC address ${JSON.stringify(mac)} (want aa:bb:cc:dd:ee:ff)`);
  }
  return success(Buffer.from(mac.replaceAll(":", ""), "hex"));
}

/** Formats 6 bytes as a lower-case `aa:bb:cc:dd:ee:ff` string. */
export function formatMac(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 6), (b) => b.toString(16).padStart(2, "0")).join(":");
}

/** A dotted quad as the 4 bytes a header carries. */
function ipv4Field(text: string): Result<Buffer> {
  const ip = parseIpv4(text);
  return ip.ok ? success(ipv4ToBuffer(ip.value)) : ip;
}

/**
 * RFC 1071 Internet checksum (ones' complement of the ones' complement sum of
 * 16-bit big-endian words; an odd trailing byte is padded with zero). Over data
 * that already contains a correct checksum it yields 0.
 */
export function internetChecksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < bytes.length; i += 2) {
    sum += ((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0);
  }
  if (bytes.length % 2 === 1) sum += (bytes[bytes.length - 1] ?? 0) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

// ---------------------------------------------------------------------------
// Helpers

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function hex(n: number, digits: number): string {
  return `0x${n.toString(16).padStart(digits, "0")}`;
}

function truncated(layer: string, needed: number, available: number): Result<never> {
  return failure(`${layer}: truncated (${needed} bytes needed, ${available} available)`);
}

function checkUint(layer: string, name: string, value: unknown, max: number): string | undefined {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > max) {
    return `${layer}: ${name} ${String(value)} out of range 0..${max}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// VXLAN header

export function encodeVxlanHeader(vni: number): Result<Buffer> {
  const bad = checkUint("vxlan header", "VNI", vni, VXLAN_MAX_VNI);
  if (bad) return failure(bad);
  const out = Buffer.alloc(VXLAN_HEADER_LENGTH);
  out.writeUInt8(VXLAN_FLAG_I, 0);
  // The VNI sits in bytes 4..6; byte 7 is reserved.
  out.writeUIntBE(vni, 4, 3);
  return success(out);
}

export function decodeVxlanHeader(bytes: Uint8Array): Result<Decoded<VxlanHeader>> {
  const buf = asBuffer(bytes);
  if (buf.length < VXLAN_HEADER_LENGTH) return truncated("vxlan header", VXLAN_HEADER_LENGTH, buf.length);
  const flags = buf.readUInt8(0);
  if ((flags & VXLAN_FLAG_I) === 0) return failure(`vxlan header: I flag not set (flags ${hex(flags, 2)})`);
  return success({ value: { vni: buf.readUIntBE(4, 3) }, rest: buf.subarray(VXLAN_HEADER_LENGTH) });
}

// ---------------------------------------------------------------------------
// Ethernet II

export function encodeEthernetHeader(header: EthernetHeaderInput): Result<Buffer> {
  const layer = "ethernet header";
  const dst = parseMac(header.dst);
  if (!dst.ok) return failure(`${layer}: destination: ${dst.error}`);
  const src = parseMac(header.src);
  if (!src.ok) return failure(`${layer}: source: ${src.error}`);
  const badType = checkUint(layer, "ethertype", header.ethertype, 0xffff);
  if (badType) return failure(badType);
  if (header.ethertype < 0x0600) {
    return failure(`${layer}: ethertype ${hex(header.ethertype, 4)} is an 802.3 length, not an Ethernet II type`);
  }
  if (header.ethertype === ETHERTYPE_VLAN || header.ethertype === ETHERTYPE_QINQ) {
    return failure(`${layer}: ethertype ${hex(header.ethertype, 4)} is a VLAN tag type; use the vlan field (one tag only)`);
  }

  const { vlan } = header;
  const out = Buffer.alloc(ETHERNET_HEADER_LENGTH + (vlan ? VLAN_TAG_LENGTH : 0));
  dst.value.copy(out, 0);
  src.value.copy(out, 6);
  if (vlan) {
    // 4095 is reserved by 802.1Q; 0 is a priority-only tag and is allowed.
    const bad = checkUint(layer, "VLAN id", vlan.id, 4094) ?? checkUint(layer, "VLAN priority", vlan.priority ?? 0, 7);
    if (bad) return failure(bad);
    out.writeUInt16BE(ETHERTYPE_VLAN, 12);
    out.writeUInt16BE(((vlan.priority ?? 0) << 13) | (vlan.dei ? 0x1000 : 0) | vlan.id, 14);
    out.writeUInt16BE(header.ethertype, 16);
  } else {
    out.writeUInt16BE(header.ethertype, 12);
  }
  return success(out);
}

export function decodeEthernetHeader(bytes: Uint8Array): Result<Decoded<EthernetHeader>> {
  const layer = "ethernet header";
  const buf = asBuffer(bytes);
  if (buf.length < ETHERNET_HEADER_LENGTH) return truncated(layer, ETHERNET_HEADER_LENGTH, buf.length);
  const dst = formatMac(buf.subarray(0, 6));
  const src = formatMac(buf.subarray(6, 12));
  let ethertype = buf.readUInt16BE(12);
  let offset = ETHERNET_HEADER_LENGTH;
  let vlan: VlanTag | undefined;

  if (ethertype === ETHERTYPE_VLAN) {
    const needed = ETHERNET_HEADER_LENGTH + VLAN_TAG_LENGTH;
    if (buf.length < needed) return truncated(`${layer} (802.1Q tagged)`, needed, buf.length);
    const tci = buf.readUInt16BE(14);
    vlan = { id: tci & 0x0fff, priority: tci >>> 13, dei: (tci & 0x1000) !== 0 };
    ethertype = buf.readUInt16BE(16);
    offset = needed;
    if (ethertype === ETHERTYPE_VLAN || ethertype === ETHERTYPE_QINQ) {
      return failure(`${layer}: stacked VLAN tags not supported (inner tag type ${hex(ethertype, 4)})`);
    }
  } else if (ethertype === ETHERTYPE_QINQ) {
    return failure(`${layer}: stacked VLAN tags not supported (outer tag type ${hex(ethertype, 4)})`);
  }
  if (ethertype < 0x0600) {
    return failure(`${layer}: 802.3 length field ${hex(ethertype, 4)}, not an Ethernet II ethertype`);
  }

  const value: EthernetHeader = vlan ? { dst, src, ethertype, vlan } : { dst, src, ethertype };
  return success({ value, rest: buf.subarray(offset) });
}

// ---------------------------------------------------------------------------
// ARP (IPv4 over Ethernet only)

export function encodeArp(packet: ArpPacket): Result<Buffer> {
  const layer = "arp";
  if (packet.op !== "request" && packet.op !== "reply") {
    return failure(`${layer}: invalid op ${JSON.stringify(packet.op)} (want "request" or "reply")`);
  }
  const fields = [
    ["sender MAC", parseMac(packet.senderMac)],
    ["sender IP", ipv4Field(packet.senderIp)],
    ["target MAC", parseMac(packet.targetMac)],
    ["target IP", ipv4Field(packet.targetIp)],
  ] as const;
  const out = Buffer.alloc(ARP_PACKET_LENGTH);
  out.writeUInt16BE(ARP_HTYPE_ETHERNET, 0);
  out.writeUInt16BE(ETHERTYPE_IPV4, 2);
  out.writeUInt8(6, 4);
  out.writeUInt8(4, 5);
  out.writeUInt16BE(packet.op === "request" ? ARP_OP_REQUEST : ARP_OP_REPLY, 6);
  let offset = 8;
  for (const [name, parsed] of fields) {
    if (!parsed.ok) return failure(`${layer}: ${name}: ${parsed.error}`);
    offset += parsed.value.copy(out, offset);
  }
  return success(out);
}

export function decodeArp(bytes: Uint8Array): Result<Decoded<ArpPacket>> {
  const layer = "arp";
  const buf = asBuffer(bytes);
  if (buf.length < ARP_PACKET_LENGTH) return truncated(layer, ARP_PACKET_LENGTH, buf.length);
  const htype = buf.readUInt16BE(0);
  if (htype !== ARP_HTYPE_ETHERNET) return failure(`${layer}: unsupported hardware type ${htype} (want 1, Ethernet)`);
  const ptype = buf.readUInt16BE(2);
  if (ptype !== ETHERTYPE_IPV4) return failure(`${layer}: unsupported protocol type ${hex(ptype, 4)} (want 0x0800, IPv4)`);
  const hlen = buf.readUInt8(4);
  if (hlen !== 6) return failure(`${layer}: hardware address length ${hlen} (want 6)`);
  const plen = buf.readUInt8(5);
  if (plen !== 4) return failure(`${layer}: protocol address length ${plen} (want 4)`);
  const opCode = buf.readUInt16BE(6);
  if (opCode !== ARP_OP_REQUEST && opCode !== ARP_OP_REPLY) {
    return failure(`${layer}: unsupported op ${opCode} (want 1 request or 2 reply)`);
  }
  return success({
    value: {
      op: opCode === ARP_OP_REQUEST ? "request" : "reply",
      senderMac: formatMac(buf.subarray(8, 14)),
      senderIp: ipFromBytes(buf.subarray(14, 18)),
      targetMac: formatMac(buf.subarray(18, 24)),
      targetIp: ipFromBytes(buf.subarray(24, 28)),
    },
    rest: buf.subarray(ARP_PACKET_LENGTH),
  });
}

// ---------------------------------------------------------------------------
// IPv4

/** Encodes a whole IPv4 packet: header (with checksum) followed by `payload`. */
export function encodeIpv4(header: Ipv4HeaderInput, payload: Uint8Array): Result<Buffer> {
  const layer = "ipv4 header";
  const src = parseIpv4(header.src);
  if (!src.ok) return failure(`${layer}: source: ${src.error}`);
  const dst = parseIpv4(header.dst);
  if (!dst.ok) return failure(`${layer}: destination: ${dst.error}`);
  const ttl = header.ttl ?? 64;
  const tos = header.tos ?? 0;
  const identification = header.identification ?? 0;
  const fragmentOffset = header.fragmentOffset ?? 0;
  const bad =
    checkUint(layer, "protocol", header.protocol, 0xff) ??
    checkUint(layer, "TTL", ttl, 0xff) ??
    checkUint(layer, "TOS", tos, 0xff) ??
    checkUint(layer, "identification", identification, 0xffff) ??
    checkUint(layer, "fragment offset", fragmentOffset, 0x1fff);
  if (bad) return failure(bad);
  const options = header.options ?? new Uint8Array(0);
  if (options.length % 4 !== 0 || options.length > IPV4_MAX_HEADER_LENGTH - IPV4_MIN_HEADER_LENGTH) {
    return failure(`${layer}: options length ${options.length} must be a multiple of 4 and at most 40`);
  }
  const headerLength = IPV4_MIN_HEADER_LENGTH + options.length;
  const totalLength = headerLength + payload.length;
  if (totalLength > 0xffff) return failure(`ipv4 packet: total length ${totalLength} exceeds 65535`);

  const out = Buffer.alloc(totalLength);
  out.writeUInt8(0x40 | (headerLength / 4), 0);
  out.writeUInt8(tos, 1);
  out.writeUInt16BE(totalLength, 2);
  out.writeUInt16BE(identification, 4);
  out.writeUInt16BE((header.dontFragment ? 0x4000 : 0) | (header.moreFragments ? 0x2000 : 0) | fragmentOffset, 6);
  out.writeUInt8(ttl, 8);
  out.writeUInt8(header.protocol, 9);
  out.writeUInt32BE(src.value, 12);
  out.writeUInt32BE(dst.value, 16);
  out.set(options, IPV4_MIN_HEADER_LENGTH);
  out.writeUInt16BE(internetChecksum(out.subarray(0, headerLength)), 10);
  out.set(payload, headerLength);
  return success(out);
}

/**
 * Decodes an IPv4 packet. `rest` is the payload trimmed to the total length,
 * so Ethernet padding after the packet is dropped.
 */
export function decodeIpv4(bytes: Uint8Array): Result<Decoded<Ipv4Header>> {
  const layer = "ipv4 header";
  const buf = asBuffer(bytes);
  if (buf.length < IPV4_MIN_HEADER_LENGTH) return truncated(layer, IPV4_MIN_HEADER_LENGTH, buf.length);
  const versionIhl = buf.readUInt8(0);
  const version = versionIhl >>> 4;
  if (version !== 4) return failure(`${layer}: version ${version} (want 4)`);
  const ihl = versionIhl & 0x0f;
  if (ihl < 5) return failure(`${layer}: IHL ${ihl} too small (minimum 5)`);
  const headerLength = ihl * 4;
  if (buf.length < headerLength) return truncated(`${layer} (IHL ${ihl})`, headerLength, buf.length);

  // Checked before the lengths: a corrupted header is best reported as such.
  const checksum = buf.readUInt16BE(10);
  if (internetChecksum(buf.subarray(0, headerLength)) !== 0) {
    const scratch = Buffer.from(buf.subarray(0, headerLength));
    scratch.writeUInt16BE(0, 10);
    const want = internetChecksum(scratch);
    return failure(`${layer}: checksum mismatch (got ${hex(checksum, 4)}, want ${hex(want, 4)})`);
  }

  const totalLength = buf.readUInt16BE(2);
  if (totalLength < headerLength) {
    return failure(`${layer}: total length ${totalLength} shorter than header length ${headerLength}`);
  }
  if (buf.length < totalLength) return truncated("ipv4 packet", totalLength, buf.length);

  const flagsFragment = buf.readUInt16BE(6);
  return success({
    value: {
      ihl,
      tos: buf.readUInt8(1),
      totalLength,
      identification: buf.readUInt16BE(4),
      dontFragment: (flagsFragment & 0x4000) !== 0,
      moreFragments: (flagsFragment & 0x2000) !== 0,
      fragmentOffset: flagsFragment & 0x1fff,
      ttl: buf.readUInt8(8),
      protocol: buf.readUInt8(9),
      checksum,
      src: ipFromBytes(buf.subarray(12, 16)),
      dst: ipFromBytes(buf.subarray(16, 20)),
      options: buf.subarray(IPV4_MIN_HEADER_LENGTH, headerLength),
    },
    rest: buf.subarray(headerLength, totalLength),
  });
}

// ---------------------------------------------------------------------------
// Whole datagram

/** Decodes the UDP payload a VTEP receives: VXLAN header, inner frame, and ARP or IPv4 if present. */
export function decodeVxlanDatagram(bytes: Uint8Array): Result<VxlanDatagram> {
  const vxlan = decodeVxlanHeader(bytes);
  if (!vxlan.ok) return vxlan;
  const eth = decodeEthernetHeader(vxlan.value.rest);
  if (!eth.ok) return eth;
  const base = { vni: vxlan.value.value.vni, ethernet: eth.value.value };

  switch (eth.value.value.ethertype) {
    case ETHERTYPE_ARP: {
      const arp = decodeArp(eth.value.rest);
      if (!arp.ok) return arp;
      return success({ ...base, arp: arp.value.value, payload: arp.value.rest });
    }
    case ETHERTYPE_IPV4: {
      const ipv4 = decodeIpv4(eth.value.rest);
      if (!ipv4.ok) return ipv4;
      return success({ ...base, ipv4: ipv4.value.value, payload: ipv4.value.rest });
    }
    default:
      return success({ ...base, payload: eth.value.rest });
  }
}

/** Builds the UDP payload for a VTEP to send. See `VxlanDatagramInput` for the rules. */
export function encodeVxlanDatagram(input: VxlanDatagramInput): Result<Buffer> {
  const { arp, ipv4 } = input;
  const payload = input.payload ?? new Uint8Array(0);
  if (arp && ipv4) return failure("vxlan datagram: both arp and ipv4 given (want at most one)");

  let ethertype: number;
  let body: Buffer;
  if (arp) {
    ethertype = ETHERTYPE_ARP;
    const encoded = encodeArp(arp);
    if (!encoded.ok) return encoded;
    body = Buffer.concat([encoded.value, payload]);
  } else if (ipv4) {
    ethertype = ETHERTYPE_IPV4;
    const encoded = encodeIpv4(ipv4, payload);
    if (!encoded.ok) return encoded;
    body = encoded.value;
  } else {
    if (input.ethernet.ethertype === undefined) {
      return failure("vxlan datagram: ethernet.ethertype required when neither arp nor ipv4 is given");
    }
    ethertype = input.ethernet.ethertype;
    body = asBuffer(payload);
  }
  const given = input.ethernet.ethertype;
  if (given !== undefined && given !== ethertype) {
    return failure(`vxlan datagram: ethernet.ethertype ${hex(given, 4)} contradicts the ${arp ? "arp" : "ipv4"} body (${hex(ethertype, 4)})`);
  }

  const vxlan = encodeVxlanHeader(input.vni);
  if (!vxlan.ok) return vxlan;
  const eth = encodeEthernetHeader({ ...input.ethernet, ethertype });
  if (!eth.ok) return eth;
  return success(Buffer.concat([vxlan.value, eth.value, body]));
}
