/**
 * An iptables chain of our own, as a value, after the CNI portmap plugin's
 * `chain` (plugins/meta/portmap/chain.go): the table, the name, where it is
 * entered from, and the rules it always holds. Egress (TSOVERLAY-FWD,
 * TSOVERLAY-POSTROUTING) and the port DNAT fast path (TSOVERLAY-DNAT) keep
 * their rules in such chains, so the lifecycle lives here once:
 *  - setup: create the chain, put each fixed rule at its position (a rule
 *    deleted by hand goes back where it belongs: DROP before ACCEPT), then
 *    put each jump first in its entry chain;
 *  - teardown: delete the jumps, flush, delete the chain.
 * Rules that come and go with networks or ports (MASQUERADE, DNAT) are added
 * and deleted by their owners inside the chain; setup leaves them alone.
 * Everything goes through `Iptables` (`-C` before `-A`/`-I`, argument
 * whitelist, no shell); owning the chain is what lets cleanup be "delete
 * the jump, flush, delete" instead of hunting for individual rules.
 */
import type { Iptables, Table } from "./iptables.js";

/** A jump into the chain: `-A <chain> <match…> -j <name>`, kept in first position. */
export interface ChainEntry {
  chain: string;
  match: readonly string[];
}

export interface Chain {
  table: Table;
  name: string;
  /** The jumps into it, one per entry (portmap's entryChains × entryRules, paired). */
  entries: readonly ChainEntry[];
  /** The rules it always holds, in this order. */
  rules: readonly (readonly string[])[];
}

/** What `setupChain` changed (for the caller's log). */
export interface ChainChanges {
  created: boolean;
  added: { chain: string; rule: readonly string[]; position: number }[];
}

function jumps(c: Chain): { parent: string; rule: readonly string[] }[] {
  return c.entries.map((e) => ({ parent: e.chain, rule: [...e.match, "-j", c.name] }));
}

/** Creates what is missing: the chain, its fixed rules at their positions, the jumps. Idempotent. */
export async function setupChain(ipt: Iptables, c: Chain): Promise<ChainChanges> {
  const changes: ChainChanges = { created: await ipt.ensureChain(c.table, c.name), added: [] };
  for (const [i, rule] of c.rules.entries()) {
    if (await ipt.ensureRule(c.table, c.name, rule, i + 1)) changes.added.push({ chain: c.name, rule, position: i + 1 });
  }
  for (const j of jumps(c)) {
    if (await ipt.ensureRule(c.table, j.parent, j.rule, 1)) changes.added.push({ chain: j.parent, rule: j.rule, position: 1 });
  }
  return changes;
}

/** Deletes the jumps, then flushes and deletes the chain; true if it existed. */
export function teardownChain(ipt: Iptables, c: Chain): Promise<boolean> {
  return ipt.removeChain(c.table, c.name, jumps(c));
}

/**
 * The refusals that end a chain whose accepts are inserted first (the DNS
 * guard, the gateway bridge's input gate): when missing, or followed by
 * anything, they are deleted and appended again, in order.
 */
export async function ensureTail(ipt: Iptables, table: Table, chain: string, rules: readonly (readonly string[])[]): Promise<void> {
  const refusal = / -j (REJECT|DROP)\b/;
  const lines = (await ipt.listRules(table, chain)) ?? [];
  const tail = lines.slice(-rules.length);
  const inPlace = tail.length === rules.length && tail.every((l) => refusal.test(l)) && lines.filter((l) => refusal.test(l)).length === rules.length;
  if (inPlace) return;
  for (const rule of rules) await ipt.deleteRule(table, chain, rule);
  for (const rule of rules) await ipt.ensureRule(table, chain, rule);
}
