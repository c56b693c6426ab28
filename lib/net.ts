/**
 * IP addresses, CIDRs and MACs: the one place they are parsed and printed,
 * on ipaddr.js. IPv4 addresses are also handled as unsigned 32-bit integers
 * (`Ipv4`) so that ranges and subnets are plain arithmetic (the IPAM's pools,
 * the egress bridge's slots). Parsers are strict: ipaddr.parse alone accepts
 * octal, hex and short forms ("10.1" is 10.0.0.1), which no user means.
 */
import net from "node:net";
import ipaddr from "ipaddr.js";
import { failure, success, type Result } from "./result.js";

/** An IPv4 address as an unsigned 32-bit integer, so ranges are plain arithmetic. */
export type Ipv4 = number;

/**
 * The value of a canonical dotted quad (four decimal octets, no leading
 * zeros), or undefined for any other text. The common case, read without
 * ipaddr.js: a host reads every peer's addresses on every change, and at
 * 10,000 peers ipaddr's parse was a fifth of that work.
 */
function canonicalQuad(text: string): Ipv4 | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (p.length === 0 || p.length > 3 || (p.length > 1 && p.charCodeAt(0) === 48)) return undefined;
    let octet = 0;
    for (let i = 0; i < p.length; i++) {
      const digit = p.charCodeAt(i) - 48;
      if (digit < 0 || digit > 9) return undefined;
      octet = octet * 10 + digit;
    }
    if (octet > 255) return undefined;
    n = n * 256 + octet;
  }
  return n;
}

/** Strict dotted quad: no octal/hex/short forms, which ipaddr.parse would accept. */
export function parseIpv4(text: string): Result<Ipv4> {
  const quad = canonicalQuad(text);
  if (quad !== undefined) return success(quad);
  if (!ipaddr.IPv4.isValidFourPartDecimal(text)) return failure(`invalid IPv4 address ${text}`);
  return success(
    ipaddr.IPv4.parse(text)
      .toByteArray()
      .reduce((n, octet) => n * 256 + octet, 0),
  );
}

export function formatIpv4(ip: Ipv4): string {
  return ipaddr.fromByteArray([(ip >>> 24) & 255, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255]).toString();
}

/** The address as a packet carries it: 4 bytes, network order (ipFromBytes reads them back). */
export function ipv4ToBuffer(ip: Ipv4): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(ip, 0);
  return bytes;
}

export interface PrefixLimits {
  min: number;
  max: number;
}

/** Prefix lengths accepted for pools: /31 and /32 have no room for a gateway and a host. */
export const POOL_PREFIX: PrefixLimits = { min: 8, max: 30 };

/** An IPv4 network: `network` has no host bits set. Immutable. */
export class Subnet {
  private constructor(
    readonly network: Ipv4,
    readonly prefix: number,
  ) {}

  /**
   * Parses "a.b.c.d/nn"; refuses host bits the way Docker does ("it should be
   * 10.0.0.0/24"). `what` names the value in errors ("subnet", "sub-pool", …).
   */
  static parse(text: string, limits: PrefixLimits = { min: 0, max: 32 }, what = "subnet"): Result<Subnet> {
    const match = /^([^/]+)\/(0|[1-9]\d?)$/.exec(text);
    const ip = match?.[1] === undefined ? undefined : parseIpv4(match[1]);
    const prefix = Number(match?.[2]);
    if (!ip?.ok || !(prefix >= 0 && prefix <= 32)) {
      return failure(`invalid ${what} ${text}: expected an IPv4 CIDR such as 10.0.0.0/24`);
    }
    const subnet = Subnet.containing(ip.value, prefix);
    if (subnet.network !== ip.value) return failure(`invalid ${what} ${text}: it should be ${subnet.toString()}`);
    if (prefix < limits.min || prefix > limits.max) {
      return failure(`invalid ${what} ${text}: the prefix length must be between /${limits.min} and /${limits.max}`);
    }
    return success(subnet);
  }

  /** The /prefix network that contains `ip`. */
  static containing(ip: Ipv4, prefix: number): Subnet {
    const size = 2 ** (32 - prefix);
    return new Subnet(ip - (ip % size), prefix);
  }

  get size(): number {
    return 2 ** (32 - this.prefix);
  }

  get broadcast(): Ipv4 {
    return this.network + this.size - 1;
  }

  /** Lowest address a host may use; /31 and /32 have no network/broadcast (RFC 3021). */
  get firstHost(): Ipv4 {
    return this.prefix >= 31 ? this.network : this.network + 1;
  }

  get lastHost(): Ipv4 {
    return this.prefix >= 31 ? this.broadcast : this.broadcast - 1;
  }

  contains(ip: Ipv4): boolean {
    return ip >= this.network && ip <= this.broadcast;
  }

  containsSubnet(other: Subnet): boolean {
    return this.contains(other.network) && this.contains(other.broadcast);
  }

  overlaps(other: Subnet): boolean {
    return this.network <= other.broadcast && other.network <= this.broadcast;
  }

  equals(other: Subnet): boolean {
    return this.network === other.network && this.prefix === other.prefix;
  }

  /** True for the two addresses no host may take (network and broadcast). */
  isReserved(ip: Ipv4): boolean {
    return this.contains(ip) && (ip < this.firstHost || ip > this.lastHost);
  }

  /** The n-th usable host address, 1-based: hostAddress(1) of 10.0.0.0/24 is 10.0.0.1. */
  hostAddress(n: number): Result<Ipv4> {
    const ip = this.firstHost + n - 1;
    if (!Number.isInteger(n) || n < 1 || ip > this.lastHost) {
      return failure(`subnet ${this.toString()} has no host address number ${n}`);
    }
    return success(ip);
  }

  /** Usable host addresses, lowest first. */
  hosts(): Generator<Ipv4> {
    return addressRange(this.firstHost, this.lastHost);
  }

  /** The consecutive /prefix blocks covering this subnet, lowest first. */
  *split(prefix: number): Generator<Subnet> {
    if (!Number.isInteger(prefix) || prefix < this.prefix || prefix > 32) {
      throw new RangeError(`cannot split ${this.toString()} into /${prefix} blocks`);
    }
    const step = 2 ** (32 - prefix);
    for (let network = this.network; network <= this.broadcast; network += step) yield new Subnet(network, prefix);
  }

  toString(): string {
    return `${formatIpv4(this.network)}/${this.prefix}`;
  }
}

/** Every address from `first` to `last` inclusive. */
export function* addressRange(first: Ipv4, last: Ipv4): Generator<Ipv4> {
  for (let ip = first; ip <= last; ip += 1) yield ip;
}

// ------------------------------------------------- addresses of any family

/** Canonical text of an IPv4 or IPv6 address ("::ffff:1.2.3.4" stays IPv6); throws on anything else. */
export function normalizeIp(ip: string): string {
  if (canonicalQuad(ip) !== undefined) return ip;
  if (net.isIP(ip) === 0) throw new TypeError(`invalid IP address ${JSON.stringify(ip)}`);
  return ipaddr.parse(ip).toString();
}

export function ipFamilyOf(ip: string): 4 | 6 {
  const v = net.isIP(ip);
  if (v !== 4 && v !== 6) throw new TypeError(`invalid IP address ${JSON.stringify(ip)}`);
  return v;
}

export function ipToBytes(ip: string): number[] {
  return ipaddr.parse(normalizeIp(ip)).toByteArray();
}

export function ipFromBytes(bytes: ArrayLike<number>): string {
  if (bytes.length !== 4 && bytes.length !== 16) throw new TypeError(`invalid IP address length ${bytes.length}`);
  return ipaddr.fromByteArray(Array.from(bytes)).toString();
}

/** An IPv4 address in 127.0.0.0/8 or ::1 (false for what is not an address). */
export function isLoopback(ip: string): boolean {
  return net.isIP(ip) !== 0 && ipaddr.process(ip).range() === "loopback";
}

/** An address in CIDR form with host bits allowed ("10.0.0.7/24": an interface address). */
export interface IfaceCidr {
  ip: string;
  prefix: number;
}

/** Parses "a.b.c.d/nn" (IPv4 only), host bits allowed. */
export function parseIfaceCidr4(text: string): Result<IfaceCidr> {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(text);
  const prefix = Number(m?.[2]);
  if (m === null || !ipaddr.IPv4.isValidFourPartDecimal(m[1]!) || !(prefix >= 0 && prefix <= 32)) {
    return failure(`invalid IPv4 CIDR ${JSON.stringify(text)}`);
  }
  return success({ ip: ipaddr.IPv4.parse(m[1]!).toString(), prefix });
}

/** The address part of "a.b.c.d/nn" (or the text itself when it has no prefix). */
export function addressOf(cidr: string): string {
  return cidr.split("/")[0] ?? cidr;
}

/** "10.0.0.7", 24 → "10.0.0.0/24" (IPv4 or IPv6). */
export function networkOf(ip: string, prefix: number): string {
  const parsed = ipaddr.parse(ip);
  const cidr = `${parsed.toString()}/${prefix}`;
  const network = parsed.kind() === "ipv4" ? ipaddr.IPv4.networkAddressFromCIDR(cidr) : ipaddr.IPv6.networkAddressFromCIDR(cidr);
  return `${network.toString()}/${prefix}`;
}

/** "10.0.0.7/24" → "10.0.0.0/24"; throws on what is not a CIDR. */
export function normalizeSubnet(cidr: string): string {
  const slash = cidr.indexOf("/");
  const prefix = Number(cidr.slice(slash + 1));
  if (slash < 0 || net.isIP(cidr.slice(0, slash)) === 0 || !Number.isInteger(prefix)) throw new TypeError(`invalid subnet ${JSON.stringify(cidr)}`);
  return networkOf(cidr.slice(0, slash), prefix);
}

// ---------------------------------------------------------------------- MACs

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;

/**
 * Docker's convention: a container MAC derived from its IPv4 address
 * (02:42:a.b.c.d). Addresses are unique cluster-wide, so the MACs are too,
 * and a reused address keeps its MAC, which keeps peers' tables consistent.
 */
export function macFromIpv4(ip: string): string {
  return [
    "02",
    "42",
    ...ipaddr.IPv4.parse(ip)
      .toByteArray()
      .map((o) => o.toString(16).padStart(2, "0")),
  ].join(":");
}

/** Lower-case colon form, or undefined if it is not a MAC. */
export function normalizeMac(mac: string): string | undefined {
  const m = mac.trim().toLowerCase();
  return MAC.test(m) ? m : undefined;
}

export function macToBytes(mac: string): number[] {
  const m = normalizeMac(mac);
  if (m === undefined) throw new TypeError(`invalid MAC address ${JSON.stringify(mac)}`);
  return m.split(":").map((b) => parseInt(b, 16));
}

export function macFromBytes(bytes: ArrayLike<number>): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(":");
}
