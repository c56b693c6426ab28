/**
 * The plugin's one iptables owner: every iptables, iptables-restore and
 * iptables-save process of the plugin (per binary and namespace) goes
 * through one instance, made once by the composition root and handed to
 * every user, and runs one at a time. Two processes of ours never contend
 * for the xtables lock, and work that reads, decides and writes
 * (`exclusive`) sees no other write in between.
 *
 * Design note.
 *  - Batches, not rule-by-rule calls. A change to our chains is one
 *    `iptables-restore --noflush -w` with a section per table; what the
 *    plugin's chains hold is read with one `iptables-save`. The single
 *    `iptables` calls that remain (`exec`, `listRules`, `policy`) serve the
 *    doctor and tests.
 *  - Counted. Each process started is counted by command (`runs()`), which
 *    the metrics export and the kernel tests assert on: a container start
 *    may cost one process, or none.
 *  - Arguments are checked, never interpreted: every token (of a command
 *    line, or of a line fed to iptables-restore) must match a conservative
 *    pattern; callers build rules from validated values only, and anything
 *    odd is refused rather than passed on. No shell anywhere.
 * Runs in the host namespace (host-command.ts: nsenter when tests play the
 * host in a namespace); the chains we own are values in chain.ts.
 */
import { Mutex } from "../../lib/keyed-mutex.js";
import { runHostCommand, type CommandResult } from "./host-command.js";
import { messageOf } from "../../lib/errors.js";

export type Table = "filter" | "nat" | "raw";

/** The processes the owner starts. */
export type IptablesCommand = "iptables" | "iptables-restore" | "iptables-save";
export const IPTABLES_COMMANDS: readonly IptablesCommand[] = ["iptables", "iptables-restore", "iptables-save"];

/** A failed iptables call; `rule` is the command line ("iptables -t nat -A …", or the restore line that failed). */
export class IptablesError extends Error {
  constructor(
    message: string,
    readonly rule: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "IptablesError";
  }
}

export interface IptablesOptions {
  /** Binary (default "iptables", looked up in PATH); `<bin>-restore` and `<bin>-save` go with it. */
  bin?: string;
  /** The namespace that plays "the host"; default: the process's own. */
  netnsPath?: string;
}

/** One table's part of an iptables-restore: chains declared (created, or flushed if they exist), then rule lines as tokens. */
export interface RestoreSection {
  table: Table;
  declare?: readonly string[];
  lines: readonly (readonly string[])[];
}

/** What iptables-save printed: per table, per chain (built-in and our own alike), its rules as `-A <chain> …` lines, in order. */
export type RuleDump = ReadonlyMap<string, ReadonlyMap<string, readonly string[]>>;

/** What may run while the owner is held: the same calls, without queueing again. */
export interface IptablesSession {
  exec(table: Table, args: readonly string[], ok?: readonly number[]): Promise<number>;
  restore(sections: readonly RestoreSection[]): Promise<void>;
  save(): Promise<RuleDump>;
  /** iptables-save's text as it printed it, here or in another namespace (support bundles). */
  saveText(netnsPath?: string): Promise<CommandResult>;
}

const ARG_RE = /^[A-Za-z0-9_.,/:!+-]+$/;
const TIMEOUT_MS = 30_000;
const WAIT_S = "5";

const commandLine = (table: Table, args: readonly string[]): string => `iptables -t ${table} ${args.join(" ")}`;

export class Iptables {
  private readonly bin: string;
  private readonly netnsPath: string | undefined;
  private readonly mutex = new Mutex();
  private readonly counts: Record<IptablesCommand, number> = { iptables: 0, "iptables-restore": 0, "iptables-save": 0 };
  private readonly session: IptablesSession;

  constructor(opts: IptablesOptions = {}) {
    const bin = opts.bin ?? "iptables";
    if (bin === "" || bin.startsWith("-")) throw new IptablesError(`invalid iptables binary ${JSON.stringify(bin)}`, bin);
    this.bin = bin;
    this.netnsPath = opts.netnsPath;
    this.session = {
      exec: (table, args, ok) => this.execNow(table, args, ok),
      restore: (sections) => this.restoreNow(sections),
      save: async () => parseDump(await this.saveNow()),
      saveText: (netnsPath) => this.spawn("iptables-save", [], { netnsPath }),
    };
  }

  /** Processes started so far, by command. */
  runs(): Readonly<Record<IptablesCommand, number>> {
    return { ...this.counts };
  }

  /** Runs `work` with the owner to itself: no other process or work of this owner runs meanwhile. */
  exclusive<T>(work: (s: IptablesSession) => Promise<T>): Promise<T> {
    return this.mutex.run(() => work(this.session));
  }

  /** Runs one call; exit codes in `ok` are results, anything else an IptablesError naming the rule. */
  exec(table: Table, args: readonly string[], ok: readonly number[] = [0]): Promise<number> {
    return this.exclusive((s) => s.exec(table, args, ok));
  }

  /** `-S <chain>` lines, or undefined when there is no such chain. */
  listRules(table: Table, chain: string): Promise<string[] | undefined> {
    return this.exclusive(async () => {
      const r = await this.run(table, ["-S", chain]);
      if (r.code === 1) return undefined;
      if (r.code !== 0) throw failed(table, ["-S", chain], r);
      return r.stdout.split("\n").filter((l) => l.startsWith("-A "));
    });
  }

  /** A built-in chain's policy ("ACCEPT", "DROP"), or undefined for a chain of our own or none. */
  policy(table: Table, chain: string): Promise<string | undefined> {
    return this.exclusive(async () => {
      const r = await this.run(table, ["-S", chain]);
      if (r.code !== 0) return undefined;
      return /^-P \S+ (\S+)$/m.exec(r.stdout)?.[1];
    });
  }

  /** One iptables-restore of these sections (see RestoreSection). */
  restore(sections: readonly RestoreSection[]): Promise<void> {
    return this.exclusive((s) => s.restore(sections));
  }

  /** One iptables-save, parsed. */
  save(): Promise<RuleDump> {
    return this.exclusive((s) => s.save());
  }

  private async execNow(table: Table, args: readonly string[], ok: readonly number[] = [0]): Promise<number> {
    const r = await this.run(table, args);
    if (!ok.includes(r.code)) throw failed(table, args, r);
    return r.code;
  }

  private async run(table: Table, args: readonly string[]): Promise<CommandResult> {
    const rule = commandLine(table, args);
    const full = ["-w", WAIT_S, "-t", table, ...args];
    const odd = full.find((a) => !ARG_RE.test(a));
    if (odd !== undefined) throw new IptablesError(`${rule} failed: refusing iptables argument ${JSON.stringify(odd)}`, rule);
    return this.spawn("iptables", full, { what: rule });
  }

  private async restoreNow(sections: readonly RestoreSection[]): Promise<void> {
    const input: string[] = [];
    for (const s of sections) {
      input.push(`*${s.table}`);
      for (const name of s.declare ?? []) input.push(`:${checked(name, `:${name}`)} - [0:0]`);
      for (const tokens of s.lines) input.push(tokens.map((t) => checked(t, tokens.join(" "))).join(" "));
      input.push("COMMIT");
    }
    if (sections.length === 0) return;
    const r = await this.spawn("iptables-restore", ["-w", WAIT_S, "--noflush"], { input: `${input.join("\n")}\n` });
    if (r.code === 0) return;
    // "line 3 failed": name the line, as a rule.
    const at = Number(/line (\d+) failed/.exec(r.stderr)?.[1]);
    const line = Number.isInteger(at) && at >= 1 ? input[at - 1] : undefined;
    const rule = line ?? "iptables-restore";
    throw new IptablesError(`iptables-restore failed (exit ${r.code})${line === undefined ? "" : ` at ${JSON.stringify(line)}`}: ${firstLine(r.stderr)}`, rule);
  }

  private async saveNow(): Promise<string> {
    const r = await this.spawn("iptables-save", []);
    if (r.code !== 0) throw new IptablesError(`iptables-save failed (exit ${r.code}): ${firstLine(r.stderr)}`, "iptables-save");
    return r.stdout;
  }

  /** Starts one process (counted), in the host namespace unless told otherwise. */
  private async spawn(
    command: IptablesCommand,
    args: readonly string[],
    o: { what?: string; input?: string; netnsPath?: string } = {},
  ): Promise<CommandResult> {
    const bin = command === "iptables" ? this.bin : `${this.bin}${command.slice("iptables".length)}`;
    this.counts[command]++;
    const netnsPath = o.netnsPath ?? this.netnsPath;
    try {
      return await runHostCommand(bin, args, {
        timeoutMs: TIMEOUT_MS,
        ...(netnsPath === undefined ? {} : { netnsPath }),
        ...(o.input === undefined ? {} : { input: o.input }),
      });
    } catch (err) {
      const what = o.what ?? command;
      throw new IptablesError(`${what} failed: ${messageOf(err)}`, what, { cause: err });
    }
  }
}

function checked(token: string, line: string): string {
  if (!ARG_RE.test(token)) throw new IptablesError(`iptables-restore: refusing iptables argument ${JSON.stringify(token)} in ${JSON.stringify(line)}`, line);
  return token;
}

function firstLine(text: string): string {
  return text.trim().split("\n")[0] ?? "";
}

function failed(table: Table, args: readonly string[], r: { code: number; stderr: string }): IptablesError {
  const rule = commandLine(table, args);
  const detail = firstLine(r.stderr);
  return new IptablesError(`${rule} failed (exit ${r.code})${detail ? `: ${detail}` : ""}`, rule);
}

/** iptables-save's text as tables of chains of `-A` lines (counters and comments left out). */
export function parseDump(text: string): RuleDump {
  const tables = new Map<string, Map<string, string[]>>();
  let chains: Map<string, string[]> | undefined;
  for (const line of text.split("\n")) {
    if (line.startsWith("*")) {
      chains = new Map();
      tables.set(line.slice(1).trim(), chains);
    } else if (chains === undefined) {
      continue;
    } else if (line.startsWith(":")) {
      const name = line.slice(1).split(" ")[0]!;
      if (!chains.has(name)) chains.set(name, []);
    } else if (line.startsWith("-A ")) {
      const name = line.split(" ")[1]!;
      const rules = chains.get(name) ?? [];
      rules.push(line.trimEnd());
      chains.set(name, rules);
    }
  }
  return tables;
}
