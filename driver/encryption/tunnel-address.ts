/**
 * A host's tunnel address: where its encrypted networks' VXLAN devices send
 * from and are reached at, inside the WireGuard interface's subnet.
 *
 * Design note: the address is derived, not allocated. The tunnel subnet's
 * host bits are taken from the low bits of the host's VTEP address, which
 * the cluster already holds unique and checked (record-checks.ts: a host
 * record's VTEP is its own). So no store record, no allocation to leak when
 * a host goes, and a forged record cannot claim another host's tunnel
 * address. Two VTEPs that agree in all those low bits (an underlay wider
 * than the tunnel subnet) would collide: `collisions` finds them and neither
 * is given encrypted peers.
 */
import { addressOf, formatIpv4, networkOf, parseIfaceCidr4, parseIpv4 } from "../../lib/net.js";
import { failure, success, type Result } from "../../lib/result.js";

export interface TunnelSubnet {
  /** Network address, e.g. "100.76.0.0". */
  base: string;
  prefix: number;
}

/** Parses a tunnel subnet setting ("100.76.0.0/16"), /8 to /24. */
export function parseTunnelSubnet(text: string): Result<TunnelSubnet> {
  const c = parseIfaceCidr4(text);
  if (!c.ok) return failure(`tunnel subnet ${JSON.stringify(text)} is not an IPv4 CIDR`);
  if (c.value.prefix < 8 || c.value.prefix > 24) return failure(`tunnel subnet ${text} must be between /8 and /24`);
  return success({ base: addressOf(networkOf(c.value.ip, c.value.prefix)), prefix: c.value.prefix });
}

const toInt = (ip: string): number => {
  const r = parseIpv4(ip);
  if (!r.ok) throw new TypeError(r.error);
  return r.value;
};

/** The tunnel address of the host whose VTEP is `vtep`. A host part of all zeros or all ones is moved one inward. */
export function tunnelAddressOf(vtep: string, subnet: TunnelSubnet): string {
  const hostBits = 32 - subnet.prefix;
  const hostMask = 2 ** hostBits - 1;
  let host = (toInt(vtep) & hostMask) >>> 0;
  if (host === 0) host = 1;
  if (host === hostMask) host = hostMask - 1;
  return formatIpv4(toInt(subnet.base) + host);
}

/** VTEPs whose tunnel addresses collide with another VTEP's. */
export function collisions(vteps: readonly string[], subnet: TunnelSubnet): Set<string> {
  const byAddress = new Map<string, string[]>();
  for (const v of new Set(vteps)) {
    const a = tunnelAddressOf(v, subnet);
    byAddress.set(a, [...(byAddress.get(a) ?? []), v]);
  }
  return new Set([...byAddress.values()].filter((vs) => vs.length > 1).flat());
}
