/**
 * Who may ask the name service: containers (through the gateway bridge, or a
 * Docker bridge, whose containers get the same daemon `dns` setting) and the
 * host itself. A query for the listener's address that arrives any other way
 * — from the underlay, from outside — is dropped, so the listener is never an
 * open resolver, whatever routes a neighbour sets up towards it.
 *
 * One chain of our own (TSOVERLAY-INPUT, chain.ts), entered from INPUT for
 * the listener's address only. Allowed sources are ACCEPTed there rather than
 * RETURNed: a host firewall that drops unknown traffic must not silence the
 * containers' DNS. Docker bridges with a name of their own
 * (`-o com.docker.network.bridge.name=…`) come and go with their networks:
 * their rules are added and deleted inside the chain, before the DROPs.
 */
import { setupChain, teardownChain, type Chain } from "./chain.js";
import type { Iptables } from "./iptables.js";

export const DNS_GUARD_CHAIN = "TSOVERLAY-INPUT";

/** Docker's default bridge, its user-defined bridges, the loopback. */
const DOCKER_SIDE = ["docker+", "br-+", "lo"];

/** What iptables takes as an interface name. */
const IFACE_RE = /^[A-Za-z0-9_.-]{1,15}$/;

const acceptFrom = (iface: string, port: number): string[][] =>
  ["udp", "tcp"].map((proto) => ["-i", iface, "-p", proto, "--dport", String(port), "-j", "ACCEPT"]);

export function dnsGuardChain(address: string, port: number, gatewayBridge: string): Chain {
  const rules: string[][] = [];
  for (const iface of [gatewayBridge, ...DOCKER_SIDE]) rules.push(...acceptFrom(iface, port));
  for (const proto of ["udp", "tcp"]) rules.push(["-p", proto, "--dport", String(port), "-j", "DROP"]);
  return { table: "filter", name: DNS_GUARD_CHAIN, entries: [{ chain: "INPUT", match: ["-d", `${address}/32`] }], rules };
}

export async function ensureDnsGuard(ipt: Iptables, address: string, port: number, gatewayBridge: string): Promise<void> {
  await setupChain(ipt, dnsGuardChain(address, port, gatewayBridge));
}

export async function removeDnsGuard(ipt: Iptables, address: string, port: number, gatewayBridge: string): Promise<void> {
  await teardownChain(ipt, dnsGuardChain(address, port, gatewayBridge));
}

/**
 * Lets the containers of Docker bridges with names of their own ask too:
 * exactly `bridges` (besides the fixed rules), so a removed network's rule
 * goes, also one left from before a restart. Names the fixed rules cover, and
 * names iptables would not take, are skipped.
 */
export async function allowDockerBridges(ipt: Iptables, port: number, gatewayBridge: string, bridges: readonly string[]): Promise<void> {
  // The fixed rules' own patterns ("docker+" is iptables' prefix match).
  const covered = (n: string): boolean => n === gatewayBridge || DOCKER_SIDE.some((p) => (p.endsWith("+") ? n.startsWith(p.slice(0, -1)) : n === p));
  const wanted = new Set(bridges.filter((n) => IFACE_RE.test(n) && !covered(n)));
  const present = new Set<string>();
  for (const line of (await ipt.listRules("filter", DNS_GUARD_CHAIN)) ?? []) {
    const iface = /^-A \S+ -i (\S+) .*-j ACCEPT$/.exec(line)?.[1];
    if (iface !== undefined && !covered(iface)) present.add(iface);
  }
  for (const iface of present) if (!wanted.has(iface)) for (const rule of acceptFrom(iface, port)) await ipt.deleteRule("filter", DNS_GUARD_CHAIN, rule);
  for (const iface of wanted) for (const rule of acceptFrom(iface, port)) await ipt.ensureRule("filter", DNS_GUARD_CHAIN, rule, 1);
}
