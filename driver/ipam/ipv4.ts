import ipaddr from "ipaddr.js";
import { failure, success, type Result } from "../result.js";

/** An IPv4 address as an unsigned 32-bit integer, so ranges are plain arithmetic. */
export type Ipv4 = number;

/** Strict dotted quad: no octal/hex/short forms, which ipaddr.parse would accept. */
export function parseIpv4(text: string): Result<Ipv4> {
  if (!ipaddr.IPv4.isValidFourPartDecimal(text)) return failure(`invalid IPv4 address ${text}`);
  return success(ipaddr.IPv4.parse(text).toByteArray().reduce((n, octet) => n * 256 + octet, 0));
}

export function formatIpv4(ip: Ipv4): string {
  return ipaddr.fromByteArray([(ip >>> 24) & 255, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255]).toString();
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
