/**
 * The kernel fast path for published ports (proxy-mode "hybrid"): DNAT in
 * the plugin's own nat chain, the way Docker's DOCKER chain works next to
 * docker-proxy. This module holds the chain's shape and its rules' words;
 * port-rules.ts changes them (with the gate's, in one iptables-restore).
 *
 *   PREROUTING  -m addrtype --dst-type LOCAL                 -j TSOVERLAY-DNAT
 *   OUTPUT      ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j TSOVERLAY-DNAT
 *   TSOVERLAY-DNAT [-d <hostIp>/32] ! -i <gateway bridge> -p tcp -m tcp --dport 8080
 *                  -j DNAT --to-destination 10.10.0.5:80
 *
 * What stays on the userland proxy, and why:
 *  - loopback (127.0.0.0/8 is excluded in OUTPUT): DNAT of a loopback
 *    destination to another host needs route_localnet, which opens
 *    127.0.0.1 to the network; the proxy listening on 127.0.0.1 does it safely.
 *  - hairpin (`! -i <bridge>`): a container reaching a published port on its
 *    own host arrives from the gateway bridge; DNATed, it would be routed
 *    back out of the same bridge (which the egress FORWARD rules drop) and
 *    answered directly by its neighbour on br0, bypassing the reverse NAT.
 *  - IPv6: the overlays are IPv4; the proxy's [::] socket bridges the families.
 * The DNATed connections are let through FORWARD by the egress chain's
 * `--ctstate DNAT` rule. In hybrid mode the chain and its jumps are kept for
 * as long as the plugin runs (rule-keeper.ts), with or without ports; in
 * userland mode the plugin has no nat rule of its own, and a chain left by a
 * previous hybrid run is removed once what was published is restored.
 *
 * UDP and conntrack: NAT is decided on a flow's first packet only, and a UDP
 * client that keeps sending keeps its conntrack entry alive forever. Without
 * a flush, a client of a republished port would stay mapped to the old
 * container (or to the proxy, if it started before the rule): Docker's
 * moby#8795. So UDP flows to the host port are deleted whenever its rule is
 * added or removed (`conntrack -D`, the conntrack-tools CLI in the image).
 */
import type { DnatRule } from "../contracts/port-rules.js";
import type { Logger } from "../../lib/log.js";
import type { Chain } from "./chain.js";
import { runHostCommand } from "./host-command.js";

export const DNAT_CHAIN = "TSOVERLAY-DNAT";

/** Entered for local destinations; loopback from the host itself stays on the proxy (see above). */
export const DNAT_CHAIN_SPEC: Chain = {
  table: "nat",
  name: DNAT_CHAIN,
  entries: [
    { chain: "PREROUTING", match: ["-m", "addrtype", "--dst-type", "LOCAL"] },
    { chain: "OUTPUT", match: ["!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL"] },
  ],
};

const IP = String.raw`\d+\.\d+\.\d+\.\d+`;
const DNAT_RULE_RE = new RegExp(String.raw`^(?:-d ${IP}/32 )?! -i (\S+) -p (tcp|udp) -m (tcp|udp) --dport \d+ -j DNAT --to-destination ${IP}:\d+$`);

/** The rule as `iptables -S` prints it, so that rules read back compare equal to the ones wanted. */
export function dnatRuleArgs(gatewayBridge: string, r: DnatRule): string[] {
  return [
    ...(r.hostIp === "" ? [] : ["-d", `${r.hostIp}/32`]),
    "!",
    "-i",
    gatewayBridge,
    "-p",
    r.proto,
    "-m",
    r.proto,
    "--dport",
    String(r.hostPort),
    "-j",
    "DNAT",
    "--to-destination",
    `${r.containerIp}:${r.containerPort}`,
  ];
}

/** True for a rule of ours as a previous run wrote it (a rule added by hand is not taken over). */
export function isDnatRule(gatewayBridge: string, rule: readonly string[]): boolean {
  const m = DNAT_RULE_RE.exec(rule.join(" "));
  return m !== null && m[1] === gatewayBridge && m[2] === m[3];
}

/** The UDP port a DNAT rule's words name, if it is UDP (for the conntrack flush). */
export function udpPortOf(rule: readonly string[]): { hostIp: string; hostPort: number } | undefined {
  const line = rule.join(" ");
  const m = new RegExp(String.raw`^(?:-d (${IP})/32 )?.*-p udp .*--dport (\d+) `).exec(line);
  return m === null ? undefined : { hostIp: m[1] ?? "", hostPort: Number(m[2]) };
}

/** Best effort: a failure is logged (the port works, a long-lived UDP client may stay on its old mapping). */
export async function flushUdpFlows(p: { hostIp: string; hostPort: number }, o: { conntrack?: string; netnsPath?: string; log: Logger }): Promise<void> {
  const args = ["-D", "-p", "udp", "--orig-port-dst", String(p.hostPort), ...(p.hostIp === "" ? [] : ["--orig-dst", p.hostIp])];
  const outcome = await runHostCommand(o.conntrack ?? "conntrack", args, { netnsPath: o.netnsPath, timeoutMs: 10_000 }).then(
    // Exit 1 = no entry matched.
    (res) => (res.code === 0 || res.code === 1 ? undefined : `exit ${res.code}: ${res.stderr.trim().split("\n")[0] ?? ""}`),
    (err: Error) => err.message.split("\n")[0],
  );
  if (outcome !== undefined) o.log.warn({ ...p, err: outcome }, "flushing the port's UDP conntrack entries failed");
}
