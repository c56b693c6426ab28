/**
 * Who may ask the name service: containers (through the gateway bridge, or a
 * Docker bridge, whose containers get the same daemon `dns` setting) and the
 * host itself. A query for the listener's address that arrives any other way
 * — from the underlay, from outside, from a bridge that is not Docker's — is
 * refused, so the listener is never an open resolver, whatever routes a
 * neighbour sets up towards it.
 *
 * One chain of our own (TSOVERLAY-INPUT, chain.ts), entered from INPUT for
 * the listener's address only:
 *   ACCEPT from each Docker bridge, by its exact name (docker0, br-<id>, a
 *          name given with com.docker.network.bridge.name), as Docker lists
 *          them: added and deleted as bridge networks come and go;
 *   ACCEPT from the gateway bridge and from lo (always);
 *   REJECT anything else (UDP: port unreachable, TCP: reset), last.
 * Exact names, not the `docker+` / `br-+` patterns: other software names its
 * bridges br-… too (OpenStack's br-ex, OpenWrt's br-lan), and those are not
 * Docker's containers. Allowed sources are ACCEPTed rather than RETURNed: a
 * host firewall that drops unknown traffic must not silence the containers'
 * DNS. Refused with REJECT rather than DROP: a container whose daemon lists
 * the name service first but whose bridge is not (yet) allowed — Docker has
 * not answered since the plugin started — is told at once and asks its next
 * resolver, instead of waiting out a timeout on every lookup; to anyone else
 * it looks like a closed port.
 */
import { ensureTail, teardownChain, type Chain } from "./chain.js";
import type { Iptables } from "./iptables.js";

export const DNS_GUARD_CHAIN = "TSOVERLAY-INPUT";

/** What iptables takes as an interface name (no pattern: "+" is refused). */
const IFACE_RE = /^[A-Za-z0-9_.-]{1,15}$/;

const acceptFrom = (iface: string, port: number): string[][] =>
  ["udp", "tcp"].map((proto) => ["-i", iface, "-p", proto, "--dport", String(port), "-j", "ACCEPT"]);

/** The final rules: refuse the rest, in the way each protocol understands at once. */
const refusals = (port: number): string[][] => [
  ["-p", "udp", "--dport", String(port), "-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
  ["-p", "tcp", "--dport", String(port), "-j", "REJECT", "--reject-with", "tcp-reset"],
];

/** Rules of the guard before exact names (patterns, DROP): removed when the guard is set up. */
const superseded = (port: number): string[][] => [
  ...acceptFrom("docker+", port),
  ...acceptFrom("br-+", port),
  ...["udp", "tcp"].map((proto) => ["-p", proto, "--dport", String(port), "-j", "DROP"]),
];

/** The sources always allowed: the gateway bridge (tsoverlay's containers) and the host itself. */
const fixedSources = (gatewayBridge: string): string[] => [gatewayBridge, "lo"];

export function dnsGuardChain(address: string, port: number, gatewayBridge: string): Chain {
  return {
    table: "filter",
    name: DNS_GUARD_CHAIN,
    entries: [{ chain: "INPUT", match: ["-d", `${address}/32`] }],
    rules: [...fixedSources(gatewayBridge).flatMap((i) => acceptFrom(i, port)), ...refusals(port)],
  };
}

/**
 * Sets the chain up (idempotent): the fixed ACCEPTs, the refusals last, the
 * jump from INPUT. Docker bridges' rules already there (from before a plugin
 * restart) are kept until the bridges are read again (allowDockerBridges).
 */
export async function ensureDnsGuard(ipt: Iptables, address: string, port: number, gatewayBridge: string): Promise<void> {
  await ipt.ensureChain("filter", DNS_GUARD_CHAIN);
  // First, so that no rule of the old shape is left after the refusals, or lets a pattern in.
  for (const rule of superseded(port)) await ipt.deleteRule("filter", DNS_GUARD_CHAIN, rule);
  // Each missing one first in the chain, the last first: they read in this order on a fresh chain.
  const accepts = fixedSources(gatewayBridge).flatMap((iface) => acceptFrom(iface, port));
  for (const rule of accepts.reverse()) await ipt.ensureRule("filter", DNS_GUARD_CHAIN, rule, 1);
  await ensureTail(ipt, "filter", DNS_GUARD_CHAIN, refusals(port));
  await ipt.ensureRule("filter", "INPUT", ["-d", `${address}/32`, "-j", DNS_GUARD_CHAIN], 1);
}

export async function removeDnsGuard(ipt: Iptables, address: string, port: number, gatewayBridge: string): Promise<void> {
  await teardownChain(ipt, dnsGuardChain(address, port, gatewayBridge));
}

/**
 * Lets the containers of exactly these Docker bridges ask (besides the fixed
 * sources): a bridge no longer listed loses its rule, also one left from
 * before a restart. Names iptables would not take as one interface are
 * skipped. Until the first call after a start, the rules of the previous run
 * stay (they were Docker's bridges then); on a fresh boot there are none, and
 * Docker's containers are refused until Docker has answered.
 */
export async function allowDockerBridges(ipt: Iptables, port: number, gatewayBridge: string, bridges: readonly string[]): Promise<void> {
  const fixed = new Set(fixedSources(gatewayBridge));
  const wanted = new Set(bridges.filter((n) => IFACE_RE.test(n) && !fixed.has(n)));
  const present = new Set<string>();
  for (const line of (await ipt.listRules("filter", DNS_GUARD_CHAIN)) ?? []) {
    const iface = /^-A \S+ -i (\S+) .*-j ACCEPT$/.exec(line)?.[1];
    if (iface !== undefined && !fixed.has(iface)) present.add(iface);
  }
  for (const iface of present) if (!wanted.has(iface)) for (const rule of acceptFrom(iface, port)) await ipt.deleteRule("filter", DNS_GUARD_CHAIN, rule);
  for (const iface of wanted) for (const rule of acceptFrom(iface, port)) await ipt.ensureRule("filter", DNS_GUARD_CHAIN, rule, 1);
}
