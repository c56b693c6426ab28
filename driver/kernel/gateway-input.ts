/**
 * The input gate of the gateway bridge: what a container of a tsoverlay
 * network may reach of its own host. Its traffic to any address of the host
 * (the gateway bridge's, the underlay's, Docker's bridges', 127.0.0.1 is
 * martian) arrives on the gateway bridge; without a gate it reached every
 * service the host runs (the Consul agent, the metrics port, an SSH daemon).
 *
 * One chain of our own (chain.ts) in the filter table, entered from INPUT for
 * packets in on the gateway bridge:
 *   ACCEPT replies and errors of what the host started (the proxy's
 *          connections to containers, conntrack ESTABLISHED,RELATED);
 *   ACCEPT the name service (its address, UDP and TCP), when it runs;
 *   ACCEPT each published port (proto, port, its host address if one): these
 *          come and go with the ports (port-rules.ts changes them, with the
 *          DNAT fast path's, in one iptables-restore), after the fixed accepts;
 *   REJECT the rest, last (TCP: reset, others: port unreachable), so that a
 *          container is told at once, as by a closed port.
 * Egress to the outside and to other hosts is routed (FORWARD), not input,
 * and is not this chain's business. Nothing is removed when the plugin stops:
 * the gateway bridge outlives it, and so does its gate.
 */
import type { GatePort } from "../contracts/port-rules.js";
import type { Chain } from "./chain.js";

export const GATEWAY_INPUT_CHAIN = "TSOVERLAY-GW-INPUT";

const REFUSALS: readonly (readonly string[])[] = [
  ["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
  ["-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
];

/** A published port's accept, in the words `iptables -S` prints it (so that rules read back compare equal). */
export function gatePortRule(p: GatePort): string[] {
  return [...(p.hostIp === "" ? [] : ["-d", `${p.hostIp}/32`]), "-p", p.proto, "-m", p.proto, "--dport", String(p.hostPort), "-j", "ACCEPT"];
}

const PORT_RULE_RE = /^(?:-d \d+\.\d+\.\d+\.\d+\/32 )?-p (tcp|udp) -m (tcp|udp) --dport \d+ -j ACCEPT$/;

/** True for a published port's accept as a previous run wrote it. */
export function isGatePortRule(rule: readonly string[]): boolean {
  const m = PORT_RULE_RE.exec(rule.join(" "));
  return m !== null && m[1] === m[2];
}

/** The gate's chain: the fixed accepts first, the published ports after them, the refusals last. */
export function gatewayInputChain(gatewayBridge: string, nameServer?: { address: string; port: number }): Chain {
  return {
    table: "filter",
    name: GATEWAY_INPUT_CHAIN,
    entries: [{ chain: "INPUT", match: ["-i", gatewayBridge] }],
    head: [
      ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
      ...(nameServer === undefined
        ? []
        : (["udp", "tcp"] as const).map((proto) => gatePortRule({ proto, hostIp: nameServer.address, hostPort: nameServer.port }))),
    ],
    tail: REFUSALS,
  };
}
