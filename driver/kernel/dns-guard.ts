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
 *
 * The chain, its fixed rules and its jump are set up at start and kept by the
 * RuleKeeper (rule-keeper.ts); the bridges' rules change in one
 * iptables-restore when Docker's bridges do, and in none when they do not.
 * A guard of the pattern era (docker+, br-+, DROP) is rewritten at the first
 * start that finds it.
 */
import { commit, OwnedChain } from "./chain.js";
import type { Iptables, RuleDump } from "./iptables.js";
import type { KeptRules } from "./rule-keeper.js";
import type { Logger } from "../../lib/log.js";

export const DNS_GUARD_CHAIN = "TSOVERLAY-INPUT";

/** What iptables takes as an interface name (no pattern: "+" is refused). */
const IFACE_RE = /^[A-Za-z0-9_.-]{1,15}$/;

/** In the words iptables-save prints them (the implicit `-m udp|tcp` written out). */
const acceptFrom = (iface: string, port: number): string[][] =>
  ["udp", "tcp"].map((proto) => ["-i", iface, "-p", proto, "-m", proto, "--dport", String(port), "-j", "ACCEPT"]);

/** The final rules: refuse the rest, in the way each protocol understands at once. */
const refusals = (port: number): string[][] => [
  ["-p", "udp", "-m", "udp", "--dport", String(port), "-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
  ["-p", "tcp", "-m", "tcp", "--dport", String(port), "-j", "REJECT", "--reject-with", "tcp-reset"],
];

/** The sources always allowed: the gateway bridge (tsoverlay's containers) and the host itself. */
const fixedSources = (gatewayBridge: string): string[] => [gatewayBridge, "lo"];

const BRIDGE_RULE_RE = /^-i (\S+) -p (udp|tcp) -m (udp|tcp) --dport (\d+) -j ACCEPT$/;

export interface DnsGuardOptions {
  iptables: Iptables;
  /** The name service's address and port. */
  address: string;
  port: number;
  gatewayBridge: string;
  log: Logger;
}

export class DnsGuard implements KeptRules {
  private readonly chain: OwnedChain;

  constructor(private readonly o: DnsGuardOptions) {
    // Docker's bridges first (each inserted at the top), then the fixed sources, then the refusals.
    this.chain = new OwnedChain({
      table: "filter",
      name: DNS_GUARD_CHAIN,
      entries: [{ chain: "INPUT", match: ["-d", `${o.address}/32`] }],
      tail: [...fixedSources(o.gatewayBridge).flatMap((i) => acceptFrom(i, o.port)), ...refusals(o.port)],
    });
  }

  chains(): readonly OwnedChain[] {
    return [this.chain];
  }

  /**
   * Docker bridges' rules already there (from before a plugin restart) are
   * kept until the bridges are read again (allowDockerBridges); on a fresh
   * boot there are none, and Docker's containers are refused until Docker
   * has answered.
   */
  adopt(dump: RuleDump): void {
    const fixed = new Set(fixedSources(this.o.gatewayBridge));
    this.chain.adopt(dump, (rule) => {
      const m = BRIDGE_RULE_RE.exec(rule.join(" "));
      return m !== null && IFACE_RE.test(m[1]!) && !fixed.has(m[1]!) && m[2] === m[3] && m[4] === String(this.o.port);
    });
  }

  /**
   * Lets the containers of exactly these Docker bridges ask (besides the fixed
   * sources): a bridge no longer listed loses its rules, also one left from
   * before a restart. Names iptables would not take as one interface are
   * skipped.
   */
  async allowDockerBridges(bridges: readonly string[]): Promise<void> {
    const fixed = new Set(fixedSources(this.o.gatewayBridge));
    const wanted = [...new Set(bridges.filter((n) => IFACE_RE.test(n) && !fixed.has(n)))];
    await this.o.iptables.exclusive(async (s) => {
      this.chain.set(wanted.flatMap((iface) => acceptFrom(iface, this.o.port)));
      if ((await commit(s, [this.chain])) > 0) this.o.log.info({ bridges: wanted }, "Docker's bridges allowed to ask the name service");
    });
  }
}
