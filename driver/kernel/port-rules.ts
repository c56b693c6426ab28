/**
 * The kernel's rules for published ports (the domain's PortRules): the DNAT
 * fast path's chain (port-dnat.ts, hybrid mode only) and the gateway
 * bridge's gate (gateway-input.ts), changed together. Publishing a
 * container's ports, or revoking them, is one iptables-restore with a nat and
 * a filter section, whatever the number of ports; publishing what is already
 * in place is none (chain.ts: what is wanted is compared with what is known).
 * Both chains and their jumps are set up at start and kept by the RuleKeeper,
 * never on a container's way in.
 *
 * After a restart the rules a previous run left are taken over (`adopt`) and
 * kept while the endpoints are restored (`keepLeftovers`), so that the fast
 * path of an endpoint not yet restored keeps working; the first sync without
 * it (after the restore) removes what nothing wants, and in userland mode the
 * DNAT chain of a previous hybrid run with it.
 */
import type { PortRules, WantedPortRules } from "../contracts/port-rules.js";
import type { Logger } from "../../lib/log.js";
import { commit, jumpsOf, linesOf, OwnedChain } from "./chain.js";
import { gatePortRule, gatewayInputChain, isGatePortRule } from "./gateway-input.js";
import type { Iptables, RestoreSection, RuleDump } from "./iptables.js";
import { DNAT_CHAIN_SPEC, dnatRuleArgs, flushUdpFlows, isDnatRule, udpPortOf } from "./port-dnat.js";
import type { KeptRules } from "./rule-keeper.js";

export interface KernelPortRulesOptions {
  iptables: Iptables;
  /** The egress gateway bridge: traffic arriving from it is hairpin traffic and stays on the proxy. */
  gatewayBridge: string;
  /** Hybrid mode: the DNAT fast path is kept. */
  fastPath: boolean;
  /** The name service's address and port, when it runs (the gate lets containers ask it). */
  nameServer?: { address: string; port: number };
  /** conntrack-tools binary (default "conntrack"); runs where `netnsPath` says, like iptables. */
  conntrack?: string;
  netnsPath?: string;
  log: Logger;
}

type Rule = readonly string[];

export class KernelPortRules implements PortRules, KeptRules {
  private readonly gate: OwnedChain;
  private readonly dnat: OwnedChain | undefined;
  private readonly log: Logger;
  /** Taken over at start; kept while restoring. */
  private leftovers: { gate: Rule[]; dnat: Rule[] } = { gate: [], dnat: [] };
  /** Userland mode: what removes a DNAT chain a previous hybrid run left. */
  private staleDnat: RestoreSection | undefined;

  constructor(private readonly o: KernelPortRulesOptions) {
    this.log = o.log.child({ component: "port-rules" });
    this.gate = new OwnedChain(gatewayInputChain(o.gatewayBridge, o.nameServer));
    this.dnat = o.fastPath ? new OwnedChain(DNAT_CHAIN_SPEC) : undefined;
  }

  chains(): readonly OwnedChain[] {
    return this.dnat === undefined ? [this.gate] : [this.gate, this.dnat];
  }

  adopt(dump: RuleDump): void {
    this.leftovers = {
      gate: this.gate.adopt(dump, isGatePortRule),
      dnat: this.dnat?.adopt(dump, (r) => isDnatRule(this.o.gatewayBridge, r)) ?? [],
    };
    const chain = dump.get(DNAT_CHAIN_SPEC.table)?.has(DNAT_CHAIN_SPEC.name) === true;
    if (this.dnat !== undefined || !chain) return;
    const jumps = jumpsOf(DNAT_CHAIN_SPEC).filter((j) => (dump.get(DNAT_CHAIN_SPEC.table)?.get(j.parent) ?? []).includes(j.line));
    this.staleDnat = {
      table: DNAT_CHAIN_SPEC.table,
      lines: [...jumps.map((j) => ["-D", j.parent, ...j.rule]), ["-F", DNAT_CHAIN_SPEC.name], ["-X", DNAT_CHAIN_SPEC.name]],
    };
    this.log.info(
      { chain: DNAT_CHAIN_SPEC.name, rules: linesOf(dump, DNAT_CHAIN_SPEC).length },
      "userland mode: the DNAT chain of a previous run goes once the restore is over",
    );
  }

  async sync(wanted: () => WantedPortRules, opts: { keepLeftovers?: boolean } = {}): Promise<void> {
    const keep = opts.keepLeftovers === true;
    const udp = await this.o.iptables.exclusive(async (s) => {
      const w = wanted();
      const before = new Set((this.dnat?.changing() ?? []).map((r) => r.join(" ")));
      this.gate.set([...w.gate.map(gatePortRule), ...(keep ? this.leftovers.gate : [])]);
      this.dnat?.set([...w.dnat.map((r) => dnatRuleArgs(this.o.gatewayBridge, r)), ...(keep ? this.leftovers.dnat : [])]);
      const stale = keep || this.staleDnat === undefined ? [] : [this.staleDnat];
      await commit(s, this.chains(), stale);
      if (!keep) {
        this.leftovers = { gate: [], dnat: [] };
        if (this.staleDnat !== undefined) this.log.info({ chain: DNAT_CHAIN_SPEC.name }, "DNAT chain of a previous run removed (userland mode)");
        this.staleDnat = undefined;
      }
      const after = new Set((this.dnat?.changing() ?? []).map((r) => r.join(" ")));
      const added = [...after].filter((k) => !before.has(k));
      const removed = [...before].filter((k) => !after.has(k));
      for (const rule of added) this.log.info({ rule }, "port DNAT added");
      for (const rule of removed) this.log.info({ rule }, "port DNAT removed");
      return [...added, ...removed].flatMap((k) => udpPortOf(k.split(" ")) ?? []);
    });
    for (const p of udp)
      await flushUdpFlows(p, {
        ...(this.o.conntrack === undefined ? {} : { conntrack: this.o.conntrack }),
        ...(this.o.netnsPath === undefined ? {} : { netnsPath: this.o.netnsPath }),
        log: this.log,
      });
  }
}
