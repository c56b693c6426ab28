/**
 * iptables, driven idempotently: `-C` before `-A`/`-I`, `-D` until `-C` no
 * longer matches, chains created and removed with their jumps. Runs in the
 * host namespace (host-command.ts); the chains we own are values in
 * chain.ts. Every argument must match a conservative pattern: callers build
 * rules from validated values only, and anything odd is refused rather than
 * passed on.
 * Calls on one instance run one at a time (`-C` then `-A` must not interleave).
 */
import { Mutex } from "../../lib/keyed-mutex.js";
import { runHostCommand, type CommandResult } from "./host-command.js";
import { messageOf } from "../../lib/errors.js";

export type Table = "filter" | "nat";

/** A failed iptables call; `rule` is the command line ("iptables -t nat -A …"). */
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
  /** Binary (default "iptables", looked up in PATH). */
  bin?: string;
  /** The namespace that plays "the host"; default: the process's own. */
  netnsPath?: string;
}

const ARG_RE = /^[A-Za-z0-9_.,/:!+-]+$/;
const TIMEOUT_MS = 30_000;
/** Upper bound on `-D` loops (a rule duplicated by hand many times). */
const MAX_DELETE_LOOPS = 64;

const commandLine = (table: Table, args: readonly string[]): string => `iptables -t ${table} ${args.join(" ")}`;

export class Iptables {
  private readonly bin: string;
  private readonly netnsPath: string | undefined;
  private readonly mutex = new Mutex();

  constructor(opts: IptablesOptions = {}) {
    const bin = opts.bin ?? "iptables";
    if (bin === "" || bin.startsWith("-")) throw new IptablesError(`invalid iptables binary ${JSON.stringify(bin)}`, bin);
    this.bin = bin;
    this.netnsPath = opts.netnsPath;
  }

  /** Runs one call; exit codes in `ok` are results, anything else an IptablesError naming the rule. */
  exec(table: Table, args: readonly string[], ok: readonly number[] = [0]): Promise<number> {
    return this.serial(() => this.execNow(table, args, ok));
  }

  /** `-S <chain>` lines, or undefined when there is no such chain. */
  listRules(table: Table, chain: string): Promise<string[] | undefined> {
    return this.serial(async () => {
      const r = await this.spawn(table, ["-S", chain]);
      if (r.code === 1) return undefined;
      if (r.code !== 0) throw failed(table, ["-S", chain], r);
      return r.stdout.split("\n").filter((l) => l.startsWith("-A "));
    });
  }

  /** A built-in chain's policy ("ACCEPT", "DROP"), or undefined for a chain of our own or none. */
  policy(table: Table, chain: string): Promise<string | undefined> {
    return this.serial(async () => {
      const r = await this.spawn(table, ["-S", chain]);
      if (r.code !== 0) return undefined;
      return /^-P \S+ (\S+)$/m.exec(r.stdout)?.[1];
    });
  }

  chainExists(table: Table, chain: string): Promise<boolean> {
    return this.serial(() => this.chainExistsNow(table, chain));
  }

  /** Creates the chain if missing; true when it was created. */
  ensureChain(table: Table, chain: string): Promise<boolean> {
    return this.serial(async () => {
      if (await this.chainExistsNow(table, chain)) return false;
      await this.execNow(table, ["-N", chain]);
      return true;
    });
  }

  /** Adds the rule if missing, at `position` (1-based) or appended; true when it was added. */
  ensureRule(table: Table, chain: string, rule: readonly string[], position?: number): Promise<boolean> {
    return this.serial(async () => {
      if ((await this.execNow(table, ["-C", chain, ...rule], [0, 1])) === 0) return false;
      const add = position === undefined ? ["-A", chain, ...rule] : ["-I", chain, String(position), ...rule];
      await this.execNow(table, add);
      return true;
    });
  }

  /** Deletes every copy of a rule; an absent rule (or chain) is fine. */
  deleteRule(table: Table, chain: string, rule: readonly string[]): Promise<void> {
    return this.serial(async () => {
      if (!(await this.chainExistsNow(table, chain))) return;
      for (let i = 0; i < MAX_DELETE_LOOPS; i++) {
        if ((await this.execNow(table, ["-C", chain, ...rule], [0, 1])) !== 0) return;
        await this.execNow(table, ["-D", chain, ...rule]);
      }
      const del = ["-D", chain, ...rule];
      throw new IptablesError(`${commandLine(table, del)} still matches after ${MAX_DELETE_LOOPS} deletions`, commandLine(table, del));
    });
  }

  /** Deletes the jumps to `chain` from `parents`, then flushes and deletes it. */
  removeChain(table: Table, chain: string, jumps: readonly { parent: string; rule: readonly string[] }[]): Promise<boolean> {
    return this.serial(async () => {
      if (!(await this.chainExistsNow(table, chain))) return false;
      for (const j of jumps) {
        while ((await this.execNow(table, ["-C", j.parent, ...j.rule], [0, 1])) === 0) {
          await this.execNow(table, ["-D", j.parent, ...j.rule]);
        }
      }
      await this.execNow(table, ["-F", chain]);
      await this.execNow(table, ["-X", chain]);
      return true;
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    return this.mutex.run(fn);
  }

  private async chainExistsNow(table: Table, chain: string): Promise<boolean> {
    // `-S <chain>` exits 1 when there is no such chain.
    return (await this.execNow(table, ["-S", chain], [0, 1])) === 0;
  }

  private async execNow(table: Table, args: readonly string[], ok: readonly number[] = [0]): Promise<number> {
    const r = await this.spawn(table, args);
    if (!ok.includes(r.code)) throw failed(table, args, r);
    return r.code;
  }

  private async spawn(table: Table, args: readonly string[]): Promise<CommandResult> {
    const rule = commandLine(table, args);
    const full = ["-w", "5", "-t", table, ...args];
    const odd = full.find((a) => !ARG_RE.test(a));
    if (odd !== undefined) throw new IptablesError(`${rule} failed: refusing iptables argument ${JSON.stringify(odd)}`, rule);
    try {
      return await runHostCommand(this.bin, full, { netnsPath: this.netnsPath, timeoutMs: TIMEOUT_MS });
    } catch (err) {
      throw new IptablesError(`${rule} failed: ${messageOf(err)}`, rule, { cause: err });
    }
  }
}

function failed(table: Table, args: readonly string[], r: { code: number; stderr: string }): IptablesError {
  const rule = commandLine(table, args);
  const detail = r.stderr.trim().split("\n")[0] ?? "";
  return new IptablesError(`${rule} failed (exit ${r.code})${detail ? `: ${detail}` : ""}`, rule);
}
