/**
 * An iptables chain of our own, as a value, after the CNI portmap plugin's
 * `chain` (plugins/meta/portmap/chain.go): the table, the name, where it is
 * entered from, and its rules: fixed ones before (`head`) and after (`tail`)
 * a set of rules that come and go (published ports, MASQUERADE per network,
 * VXLAN peers, Docker's bridges). Egress, the DNAT fast path, the gateway
 * bridge's gate and the two guards keep their rules in such chains.
 *
 * Design note. The plugin holds, per chain, the rules it wants and the
 * changing rules it knows the kernel to hold (`OwnedChain`); iptables is
 * never asked "is this rule there?" one rule at a time.
 *  - A change is the difference between the two, written as one
 *    iptables-restore together with the other chains of the same change
 *    (`commit`): `-D` for what goes, `-I` before the tail (or `-A`) for what
 *    comes.
 *    Nothing changed: no process at all. So adding a rule that is already
 *    wanted costs nothing, and cannot duplicate it.
 *  - When what the kernel holds is not known (the first write, a write that
 *    failed), the chain is written whole: declaring it in the restore creates
 *    it, or flushes it, and its rules follow in the same table transaction,
 *    so no packet sees it half made.
 *  - What changed behind our back (a rule deleted by hand, a chain flushed, a
 *    jump lost) is found by comparing one iptables-save with what is wanted
 *    (`drift`), off Docker's call path: the RuleKeeper (rule-keeper.ts) does
 *    it at start and every reconcile period, and rewrites what differs.
 * Jumps into a chain are put first in their entry chain when missing; other
 * software's rules in the built-in chains are never touched. The rules are
 * written in the words `iptables-save` prints them, so that what is read back
 * compares equal to what is wanted.
 */
import type { IptablesSession, RestoreSection, RuleDump, Table } from "./iptables.js";

/** A jump into the chain: `-A <chain> <match…> -j <name>`, put first in `chain` when missing. */
export interface ChainEntry {
  chain: string;
  match: readonly string[];
}

export interface Chain {
  table: Table;
  name: string;
  /** The jumps into it (portmap's entryChains × entryRules, paired). */
  entries: readonly ChainEntry[];
  /** Fixed rules before the changing ones, in this order. */
  head?: readonly (readonly string[])[];
  /** Fixed rules after the changing ones, in this order. */
  tail?: readonly (readonly string[])[];
}

type Rule = readonly string[];
const keyOf = (rule: Rule): string => rule.join(" ");

/** The jump rules of a chain, as `-A <parent> …` lines and as arguments. */
export function jumpsOf(c: Chain): { parent: string; rule: Rule; line: string }[] {
  return c.entries.map((e) => {
    const rule = [...e.match, "-j", c.name];
    return { parent: e.chain, rule, line: `-A ${e.chain} ${keyOf(rule)}` };
  });
}

/** One chain of ours: what the plugin wants in it, and what it knows the kernel holds of the changing part. */
export class OwnedChain {
  readonly head: readonly Rule[];
  readonly tail: readonly Rule[];
  private readonly wanted = new Map<string, Rule>();
  /** The changing rules the kernel holds, as far as we know; undefined: not known, write the chain whole. */
  private known: Set<string> | undefined;

  constructor(readonly spec: Chain) {
    this.head = spec.head ?? [];
    this.tail = spec.tail ?? [];
  }

  get name(): string {
    return this.spec.name;
  }

  /** The changing rules wanted, in the order they are added. */
  changing(): Rule[] {
    return [...this.wanted.values()];
  }

  has(rule: Rule): boolean {
    return this.wanted.has(keyOf(rule));
  }

  add(rule: Rule): void {
    this.wanted.set(keyOf(rule), [...rule]);
  }

  delete(rule: Rule): void {
    this.wanted.delete(keyOf(rule));
  }

  /** Wants exactly these changing rules. */
  set(rules: Iterable<Rule>): void {
    this.wanted.clear();
    for (const r of rules) this.add(r);
  }

  /** Every rule it should hold, in order. */
  rules(): Rule[] {
    return [...this.head, ...this.wanted.values(), ...this.tail];
  }

  /**
   * Takes over what the kernel holds of the changing part (`accept` says
   * which of its rules are ours: a rule added by hand is not), as wanted and
   * as known. Called at start, so that rewriting the chain keeps them until
   * their owner says otherwise.
   */
  adopt(dump: RuleDump, accept: (rule: string[]) => boolean): Rule[] {
    const fixed = new Set([...this.head, ...this.tail].map(keyOf));
    const taken: Rule[] = [];
    for (const line of linesOf(dump, this.spec)) {
      const key = line.slice(`-A ${this.name} `.length);
      const rule = key.split(" ");
      if (fixed.has(key) || !accept(rule)) continue;
      this.add(rule);
      taken.push(rule);
    }
    return taken;
  }

  /** What the kernel holds is unknown (a write failed): the next write is the whole chain. */
  forget(): void {
    this.known = undefined;
  }

  /** What takes the kernel from what is known to what is wanted: undefined when nothing. */
  delta(): RestoreSection | undefined {
    if (this.known === undefined) return this.whole();
    const lines: string[][] = [];
    for (const key of this.known) if (!this.wanted.has(key)) lines.push(["-D", this.name, ...key.split(" ")]);
    // Before the tail, or appended when there is none (the order rules were wanted in).
    const put = this.tail.length === 0 ? ["-A", this.name] : ["-I", this.name, String(this.head.length + 1)];
    for (const [key, rule] of this.wanted) if (!this.known.has(key)) lines.push([...put, ...rule]);
    return lines.length === 0 ? undefined : { table: this.spec.table, lines };
  }

  /** The chain written whole: declared (created, or flushed), then each rule in order. */
  whole(): RestoreSection {
    return { table: this.spec.table, declare: [this.name], lines: this.rules().map((r) => ["-A", this.name, ...r]) };
  }

  /** Marks what was wanted as held by the kernel (after a write, or a dump that showed it so). */
  settled(): void {
    this.known = new Set(this.wanted.keys());
  }

  /**
   * What differs between the dump and what is wanted: the chain (missing,
   * or its rules not the fixed ones around exactly the wanted set, each
   * once) and the jumps missing from their entry chains.
   */
  drift(dump: RuleDump): { chain: boolean; jumps: { parent: string; rule: Rule }[] } {
    const tables = dump.get(this.spec.table);
    const lines = tables?.get(this.name);
    const jumps = jumpsOf(this.spec).filter((j) => !(tables?.get(j.parent) ?? []).includes(j.line));
    if (lines === undefined) return { chain: true, jumps };
    const prefix = `-A ${this.name} `;
    const keys = lines.map((l) => l.slice(prefix.length));
    const [h, t] = [this.head.length, this.tail.length];
    const fixedOk =
      keys.length >= h + t && this.head.every((r, i) => keys[i] === keyOf(r)) && this.tail.every((r, i) => keys[keys.length - t + i] === keyOf(r));
    const middle = keys.slice(h, keys.length - t);
    const setOk = middle.length === this.wanted.size && new Set(middle).size === middle.length && middle.every((k) => this.wanted.has(k));
    return { chain: !(fixedOk && setOk), jumps };
  }
}

/** The chain's `-A` lines in a dump ([] if it is not there). */
export function linesOf(dump: RuleDump, c: Chain): readonly string[] {
  return dump.get(c.table)?.get(c.name) ?? [];
}

/** Sections of one table merged, in the order given (one COMMIT per table). */
export function byTable(sections: readonly RestoreSection[]): RestoreSection[] {
  const out = new Map<Table, { table: Table; declare: string[]; lines: (readonly string[])[] }>();
  for (const s of sections) {
    const t = out.get(s.table) ?? { table: s.table, declare: [], lines: [] };
    t.declare.push(...(s.declare ?? []));
    t.lines.push(...s.lines);
    out.set(s.table, t);
  }
  return [...out.values()];
}

/**
 * Writes what changed in these chains, all in one iptables-restore (none
 * when nothing changed); to be called while the owner is held. A failed
 * write leaves each chain's state unknown, so that the next write is whole.
 * Returns the number of processes run (0 or 1).
 */
export async function commit(s: IptablesSession, chains: readonly OwnedChain[], extra: readonly RestoreSection[] = []): Promise<number> {
  const sections = byTable([...chains.flatMap((c) => c.delta() ?? []), ...extra]);
  if (sections.length === 0) return 0;
  try {
    await s.restore(sections);
  } catch (err) {
    for (const c of chains) c.forget();
    throw err;
  }
  for (const c of chains) c.settled();
  return 1;
}
