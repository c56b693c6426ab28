/**
 * EgressError: every egress failure names the network it happened for (or
 * "shared egress state") and the step; iptables failures also the rule.
 */
import { Subnet, parseIfaceCidr4, parseIpv4 } from "../../../lib/net.js";
import { messageOf } from "../../../lib/errors.js";

/** A failed egress operation, naming the network and (for iptables) the rule. */
export class EgressError extends Error {
  constructor(
    message: string,
    readonly network?: string,
    readonly rule?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "EgressError";
  }
}

/** Runs `fn`, turning any failure into an EgressError naming the network and the step. */
export async function egressStep<T>(network: string, what: string, fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof EgressError) throw err;
    throw new EgressError(`egress ${network}: ${what} failed: ${messageOf(err)}`, network, undefined, { cause: err });
  }
}

/** Parses an IPv4 CIDR with a prefix length in [minLen, maxLen]; host bits are cleared ("10.10.0.7/24" → 10.10.0.0/24). */
export function parseCidr4(cidr: unknown, what: string, minLen: number, maxLen: number): Subnet {
  const parsed = typeof cidr === "string" ? parseIfaceCidr4(cidr) : undefined;
  const ip = parsed?.ok ? parseIpv4(parsed.value.ip) : undefined;
  if (!parsed?.ok || !ip?.ok || parsed.value.prefix < minLen || parsed.value.prefix > maxLen) {
    throw new EgressError(`egress: invalid ${what} ${JSON.stringify(cidr)} (want an IPv4 CIDR /${minLen}–/${maxLen})`);
  }
  return Subnet.containing(ip.value, parsed.value.prefix);
}
