/**
 * Keeps the plugin's iptables chains as they should be, off Docker's call
 * path: at start, before anything uses them, and then every reconcile period.
 * One pass is one iptables-save, compared with what every part wants
 * (chain.ts: `OwnedChain.drift`), and, only when something differs, one
 * iptables-restore that writes the differing chains whole and puts missing
 * jumps first in their entry chains. A chain flushed by hand, a rule deleted,
 * a jump lost to a firewall reload come back within a period; a settled host
 * costs one iptables-save per period and nothing else.
 *
 * The first pass also hands the dump to each part (`adopt`), so that the
 * changing rules a previous run left (ports, MASQUERADE, peers, Docker's
 * bridges) are kept until their owner says what it wants now, rather than
 * flushed and made again while the plugin restarts.
 */
import type { Logger } from "../../lib/log.js";
import { metrics } from "../../lib/metrics.js";
import { messageOf } from "../../lib/errors.js";
import { byTable, type OwnedChain } from "./chain.js";
import type { Iptables, RestoreSection, RuleDump } from "./iptables.js";

/** A part of the plugin's iptables state: its chains, and how it takes over what a previous run left. */
export interface KeptRules {
  /** Its chains, wanting what they must hold now. */
  chains(): readonly OwnedChain[];
  /** At start, before the first repair: takes over the changing rules found in the dump. */
  adopt?(dump: RuleDump): void;
}

export interface RuleKeeperOptions {
  iptables: Iptables;
  parts: readonly KeptRules[];
  log: Logger;
}

export class RuleKeeper {
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: RuleKeeperOptions) {
    this.log = o.log.child({ component: "iptables" });
  }

  /** Takes over what a previous run left, then makes every chain and jump as wanted. */
  async start(): Promise<void> {
    await this.pass(true);
  }

  /**
   * Compares the kernel with what is wanted and writes what differs; returns
   * the chains (and `<entry>→<chain>` jumps) it had to repair.
   */
  pass(adopt = false): Promise<string[]> {
    return this.o.iptables.exclusive(async (s) => {
      const dump = await s.save();
      if (adopt) for (const p of this.o.parts) p.adopt?.(dump);
      const chains = this.o.parts.flatMap((p) => p.chains());
      const fixes: RestoreSection[] = [];
      const repaired: string[] = [];
      const rewritten: OwnedChain[] = [];
      for (const c of chains) {
        const d = c.drift(dump);
        if (d.chain) {
          fixes.push(c.whole());
          repaired.push(c.name);
          rewritten.push(c);
        }
        for (const j of d.jumps) {
          fixes.push({ table: c.spec.table, lines: [["-I", j.parent, "1", ...j.rule]] });
          repaired.push(`${j.parent}→${c.name}`);
        }
      }
      if (fixes.length > 0) {
        try {
          await s.restore(byTable(fixes));
        } catch (err) {
          for (const c of rewritten) c.forget();
          throw err;
        }
      }
      for (const c of chains) c.settled();
      for (const what of repaired) metrics.iptablesRepairs.inc({ chain: what.split("→").pop()! });
      if (repaired.length > 0)
        this.log[adopt ? "info" : "warn"]({ repaired }, adopt ? "iptables chains set up" : "iptables chains repaired (changed behind the plugin's back)");
      return repaired;
    });
  }

  /** Runs a pass every `periodMs`; a failed pass is logged and the next one tries again. */
  run(periodMs: number): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = setInterval(() => {
      this.running = this.pass().catch((err: unknown) => this.log.error({ err: messageOf(err) }, "checking the iptables chains failed"));
    }, periodMs);
    this.timer.unref();
  }

  /** Stops the periodic passes (a pass under way finishes). */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
