import net from "node:net";
import ipaddr from "ipaddr.js";
import type { ProxyProtocolVersion } from "./binding.js";

/**
 * PROXY protocol headers (haproxy doc/proxy-protocol.txt), sent once to the backend before any
 * payload, in one write. Only the TCP (STREAM) forms are produced: a v2 DGRAM header would have
 * to precede every datagram and few UDP services understand it.
 */

/** The 12-byte v2 signature "\r\n\r\n\0\r\nQUIT\n". */
export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** The connection as the client made it: client address → the proxy address it reached. */
export interface ConnectionEndpoints {
  family: 4 | 6;
  srcIp: string;
  srcPort: number;
  dstIp: string;
  dstPort: number;
}

/** "::ffff:1.2.3.4" → "1.2.3.4" (a v4 client seen through an IPv6 socket). */
export function unmapIPv4(ip: string): string {
  return ip.toLowerCase().startsWith("::ffff:") && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

/** Endpoints of an accepted socket, or undefined when they are unknown or of mixed families. */
export function endpointsOf(socket: net.Socket): ConnectionEndpoints | undefined {
  const { remoteAddress, remotePort, localAddress, localPort } = socket;
  if (!remoteAddress || remotePort === undefined || !localAddress || localPort === undefined) return undefined;
  const srcIp = unmapIPv4(withoutZone(remoteAddress));
  const dstIp = unmapIPv4(withoutZone(localAddress));
  const family = net.isIP(srcIp);
  if (family === 0 || family !== net.isIP(dstIp)) return undefined;
  return { family: family as 4 | 6, srcIp, srcPort: remotePort, dstIp, dstPort: localPort };
}

/** "fe80::1%eth0" → "fe80::1": the header has no room for a zone. */
const withoutZone = (ip: string): string => ip.replace(/%.*$/, "");

export function encodeProxyHeader(version: ProxyProtocolVersion, ep: ConnectionEndpoints | undefined): Buffer {
  return version === "v1" ? encodeV1(ep) : encodeV2(ep);
}

/** "PROXY TCP4 src dst sport dport\r\n" (≤ 107 bytes), or "PROXY UNKNOWN\r\n". */
export function encodeV1(ep: ConnectionEndpoints | undefined): Buffer {
  if (!ep) return Buffer.from("PROXY UNKNOWN\r\n", "latin1");
  const src = ipaddr.parse(ep.srcIp).toString();
  const dst = ipaddr.parse(ep.dstIp).toString();
  return Buffer.from(`PROXY TCP${ep.family} ${src} ${dst} ${ep.srcPort} ${ep.dstPort}\r\n`, "latin1");
}

/**
 * Binary v2: signature, 0x21 (version 2, command PROXY), family/transport (0x11 TCP over IPv4,
 * 0x21 TCP over IPv6, 0x00 unspecified), big-endian length, then src addr, dst addr, src port,
 * dst port. No TLVs.
 */
export function encodeV2(ep: ConnectionEndpoints | undefined): Buffer {
  const addrLen = ep === undefined ? 0 : ep.family === 4 ? 12 : 36;
  const out = Buffer.alloc(16 + addrLen);
  PROXY_V2_SIGNATURE.copy(out, 0);
  out[12] = 0x21;
  out[13] = ep === undefined ? 0x00 : ep.family === 4 ? 0x11 : 0x21;
  out.writeUInt16BE(addrLen, 14);
  if (ep) {
    const ipLen = ep.family === 4 ? 4 : 16;
    Buffer.from(ipaddr.parse(ep.srcIp).toByteArray()).copy(out, 16);
    Buffer.from(ipaddr.parse(ep.dstIp).toByteArray()).copy(out, 16 + ipLen);
    out.writeUInt16BE(ep.srcPort, 16 + 2 * ipLen);
    out.writeUInt16BE(ep.dstPort, 18 + 2 * ipLen);
  }
  return out;
}
