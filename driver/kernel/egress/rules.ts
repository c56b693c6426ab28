/**
 * Egress's iptables rules, all in two chains of our own (chain.ts):
 * TSOVERLAY-FWD in filter (entered first thing from FORWARD) and
 * TSOVERLAY-POSTROUTING in nat (entered first thing from POSTROUTING).
 * FWD's rules are fixed and ordered (DROP between networks before any
 * ACCEPT); POSTROUTING holds one MASQUERADE rule per network that has a way
 * out, wanted from the network's creation (or its restore) to its removal.
 * Both chains are set up and repaired by the RuleKeeper (rule-keeper.ts),
 * never on a container's way in: a MASQUERADE rule already wanted costs no
 * iptables process. Every iptables failure becomes an EgressError naming the
 * network and the rule.
 */
import type { Subnet } from "../../../lib/net.js";
import { commit, OwnedChain } from "../chain.js";
import { IptablesError, type Iptables, type RuleDump } from "../iptables.js";
import type { KeptRules } from "../rule-keeper.js";
import { EgressError } from "./errors.js";

/** The filter chain jumped to from FORWARD. */
export const FWD_CHAIN = "TSOVERLAY-FWD";
/** The nat chain jumped to from POSTROUTING. */
export const NAT_CHAIN = "TSOVERLAY-POSTROUTING";

const MASQUERADE_RE = /^-s (\d+\.\d+\.\d+\.\d+\/\d+) ! -o (\S+) -j MASQUERADE$/;

export class EgressRules implements KeptRules {
  private readonly fwd: OwnedChain;
  private readonly nat = new OwnedChain({ table: "nat", name: NAT_CHAIN, entries: [{ chain: "POSTROUTING", match: [] }] });

  constructor(
    private readonly iptables: Iptables,
    private readonly bridge: string,
  ) {
    this.fwd = new OwnedChain({
      table: "filter",
      name: FWD_CHAIN,
      entries: [{ chain: "FORWARD", match: [] }],
      head: [
        ["-i", bridge, "-o", bridge, "-j", "DROP"],
        ["-i", bridge, "-j", "ACCEPT"],
        ["-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        // Published ports on the kernel fast path (port-dnat.ts) reach containers as DNATed connections.
        ["-o", bridge, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"],
        ["-o", bridge, "-j", "DROP"],
      ],
    });
  }

  chains(): readonly OwnedChain[] {
    return [this.fwd, this.nat];
  }

  /** The MASQUERADE rules a previous run left (networks restored here want them again). */
  adopt(dump: RuleDump): void {
    this.nat.adopt(dump, (rule) => MASQUERADE_RE.exec(rule.join(" "))?.[2] === this.bridge);
  }

  /** The network's MASQUERADE rule wanted (`on`) or not; an iptables process only when that changes it. */
  async masquerade(network: string, cidr: Subnet, on: boolean): Promise<boolean> {
    const rule = ["-s", cidr.toString(), "!", "-o", this.bridge, "-j", "MASQUERADE"];
    try {
      return await this.iptables.exclusive(async (s) => {
        if (on) this.nat.add(rule);
        else this.nat.delete(rule);
        return (await commit(s, [this.nat])) > 0;
      });
    } catch (err) {
      if (!(err instanceof IptablesError)) throw err;
      throw new EgressError(`egress ${network}: ${err.message}`, network, err.rule, { cause: err });
    }
  }
}
