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
 * containers' DNS.
 */
import { setupChain, teardownChain, type Chain } from "./chain.js";
import type { Iptables } from "./iptables.js";

export const DNS_GUARD_CHAIN = "TSOVERLAY-INPUT";

/** Docker's default bridge, its user-defined bridges, the loopback. */
const DOCKER_SIDE = ["docker+", "br-+", "lo"];

export function dnsGuardChain(address: string, port: number, gatewayBridge: string): Chain {
  const rules: string[][] = [];
  for (const iface of [gatewayBridge, ...DOCKER_SIDE]) {
    for (const proto of ["udp", "tcp"]) rules.push(["-i", iface, "-p", proto, "--dport", String(port), "-j", "ACCEPT"]);
  }
  for (const proto of ["udp", "tcp"]) rules.push(["-p", proto, "--dport", String(port), "-j", "DROP"]);
  return { table: "filter", name: DNS_GUARD_CHAIN, entries: [{ chain: "INPUT", match: ["-d", `${address}/32`] }], rules };
}

export async function ensureDnsGuard(ipt: Iptables, address: string, port: number, gatewayBridge: string): Promise<void> {
  await setupChain(ipt, dnsGuardChain(address, port, gatewayBridge));
}

export async function removeDnsGuard(ipt: Iptables, address: string, port: number, gatewayBridge: string): Promise<void> {
  await teardownChain(ipt, dnsGuardChain(address, port, gatewayBridge));
}
