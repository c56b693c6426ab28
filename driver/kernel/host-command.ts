/**
 * Runs a command-line tool (iptables, conntrack) in the host's network
 * namespace: directly, or through `nsenter --net=<netnsPath>` when tests play
 * the host in a namespace. execFile, never a shell; `input`, when given, is
 * written to the command's standard input (iptables-restore reads its rules there).
 */
import { execFile } from "node:child_process";

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Resolves with the exit code and output; rejects only when the command could not run or timed out. */
export function runHostCommand(
  bin: string,
  args: readonly string[],
  opts: { netnsPath?: string; timeoutMs: number; env?: NodeJS.ProcessEnv; input?: string },
): Promise<CommandResult> {
  const [file, argv] = opts.netnsPath === undefined ? [bin, [...args]] : ["nsenter", [`--net=${opts.netnsPath}`, bin, ...args]];
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      argv,
      { timeout: opts.timeoutMs, encoding: "utf8", ...(opts.env === undefined ? {} : { env: opts.env }) },
      (err, stdout, stderr) => {
        if (!err) return resolve({ code: 0, stdout, stderr });
        const code = (err as { code?: unknown }).code;
        if (typeof code === "number") return resolve({ code, stdout, stderr });
        // ExecFileException is an Error; its Omit<>-built type hides that from the rule.
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
        reject(err); // not started (ENOENT), killed by the timeout, …
      },
    );
    if (opts.input === undefined) return;
    // A command that exits before reading all of it (or never starts) must not fail the write: its exit says what happened.
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(opts.input);
  });
}
