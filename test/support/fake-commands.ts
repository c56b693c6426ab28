import type { CommandResult } from "../../driver/kernel/host-command.js";
import type { CommandRunner } from "../../driver/kernel/kernel-tables.js";

/**
 * A command runner for the kernel-tables reader: answers each command line
 * (`bin args…`, with `@<namespace path>` when run in a namespace) from a
 * table, records what was run, and fails what it does not know as a missing
 * binary would.
 */
export function fakeCommands(answers: (line: string, netnsPath: string | undefined) => CommandResult | Error | undefined): {
  run: CommandRunner;
  ran: string[];
} {
  const ran: string[] = [];
  const run: CommandRunner = async (bin, args, opts) => {
    const line = [bin, ...args].join(" ");
    ran.push(opts.netnsPath === undefined ? line : `${line} @${opts.netnsPath}`);
    const a = answers(line, opts.netnsPath);
    if (a instanceof Error) throw a;
    if (a === undefined) throw Object.assign(new Error(`spawn ${bin} ENOENT`), { code: "ENOENT" });
    return a;
  };
  return { run, ran };
}
