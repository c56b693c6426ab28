/**
 * Egress's iptables rules, all in two chains of our own (chain.ts):
 * TSOVERLAY-FWD in filter (entered first thing from FORWARD) and
 * TSOVERLAY-POSTROUTING in nat (entered first thing from POSTROUTING).
 * FWD's rules are fixed and ordered (DROP between networks before any
 * ACCEPT); POSTROUTING holds one MASQUERADE rule per network, added and
 * deleted with it. Every iptables failure becomes an EgressError naming the
 * network and the rule.
 */
import type { Logger } from "../../../lib/log.js";
import type { Subnet } from "../../../lib/net.js";
import { setupChain, teardownChain, type Chain, type ChainChanges } from "../chain.js";
import { IptablesError, type Iptables } from "../iptables.js";
import { EgressError } from "./errors.js";

/** The filter chain jumped to from FORWARD. */
export const FWD_CHAIN = "TSOVERLAY-FWD";
/** The nat chain jumped to from POSTROUTING. */
export const NAT_CHAIN = "TSOVERLAY-POSTROUTING";

function forwardChain(bridge: string): Chain {
  return {
    table: "filter",
    name: FWD_CHAIN,
    entries: [{ chain: "FORWARD", match: [] }],
    rules: [
      ["-i", bridge, "-o", bridge, "-j", "DROP"],
      ["-i", bridge, "-j", "ACCEPT"],
      ["-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
      // Published ports on the kernel fast path (port-dnat.ts) reach containers as DNATed connections.
      ["-o", bridge, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"],
      ["-o", bridge, "-j", "DROP"],
    ],
  };
}

/** Its MASQUERADE rules come and go with networks. */
const NAT: Chain = { table: "nat", name: NAT_CHAIN, entries: [{ chain: "POSTROUTING", match: [] }], rules: [] };

export class EgressRules {
  private readonly fwd: Chain;

  constructor(
    private readonly iptables: Iptables,
    private readonly bridge: string,
    private readonly log: Logger,
  ) {
    this.fwd = forwardChain(bridge);
  }

  /** Both chains, FWD's rules, both jumps: whatever is missing. */
  async ensureChains(network: string): Promise<void> {
    for (const chain of [this.fwd, NAT]) this.logChanges(chain, await this.ipt(network, (t) => setupChain(t, chain)));
  }

  async ensureMasquerade(network: string, cidr: Subnet): Promise<void> {
    const rule = this.masqueradeRule(cidr);
    if (await this.ipt(network, (t) => t.ensureRule(NAT.table, NAT.name, rule))) {
      this.log.info({ table: NAT.table, chain: NAT.name, rule: rule.join(" ") }, "iptables rule added");
    }
  }

  async removeMasquerade(network: string, cidr: Subnet): Promise<void> {
    await this.ipt(network, (t) => t.deleteRule(NAT.table, NAT.name, this.masqueradeRule(cidr)));
  }

  /** Jumps, rules and both chains. `what` names the occasion in errors. */
  async removeChains(what: string): Promise<void> {
    for (const chain of [this.fwd, NAT]) await this.ipt(what, (t) => teardownChain(t, chain));
  }

  private masqueradeRule(cidr: Subnet): string[] {
    return ["-s", cidr.toString(), "!", "-o", this.bridge, "-j", "MASQUERADE"];
  }

  private logChanges(chain: Chain, changes: ChainChanges): void {
    if (changes.created) this.log.info({ table: chain.table, chain: chain.name }, "iptables chain created");
    for (const a of changes.added) {
      this.log.info({ table: chain.table, chain: a.chain, rule: a.rule.join(" "), position: a.position }, "iptables rule added");
    }
  }

  /** Runs an iptables step; its failure becomes an EgressError naming the network and the rule. */
  private async ipt<T>(network: string, fn: (ipt: Iptables) => Promise<T>): Promise<T> {
    try {
      return await fn(this.iptables);
    } catch (err) {
      if (!(err instanceof IptablesError)) throw err;
      throw new EgressError(`egress ${network}: ${err.message}`, network, err.rule, { cause: err });
    }
  }
}
