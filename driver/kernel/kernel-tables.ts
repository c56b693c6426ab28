/**
 * The kernel tables of this host as the plugin sees them, as text for
 * `tsoverlay support-bundle`: each overlay namespace the datapath made under
 * `<runDir>/netns/` (links with details, addresses, routes, neighbors, the
 * bridge FDB, its iptables rules) and the plugin's own namespace (links,
 * addresses, routes, iptables, the WireGuard interface). Commands run as
 * everywhere else (host-command.ts: `nsenter --net=<namespace>`, execFile,
 * never a shell), one after the other: this is read once, by hand, and the
 * host should not notice.
 *
 * WireGuard's private key is never asked for: `wg show <iface>` prints it as
 * "(hidden)", and neither `wg showconf` nor `wg show … private-key|dump` is
 * run. A command that fails becomes a line saying so; the rest carries on.
 */
import { readdir } from "node:fs/promises";
import path from "node:path";
import { messageOf } from "../../lib/errors.js";
import { runHostCommand, type CommandResult } from "./host-command.js";

export type CommandRunner = (bin: string, args: readonly string[], opts: { netnsPath?: string; timeoutMs: number }) => Promise<CommandResult>;

export interface KernelTablesOptions {
  /** The datapath's run directory: overlay namespaces are `<runDir>/netns/vni-<vni>`. */
  runDir: string;
  /** The WireGuard interface of encrypted networks. */
  wireguardIface: string;
  /** The namespace that plays "the host"; default: the process's own. */
  hostNetnsPath?: string;
  /** Default: runHostCommand. */
  run?: CommandRunner;
}

/** One overlay namespace's tables. */
export interface NamespaceTables {
  /** Its name under `<runDir>/netns/`, e.g. "vni-4097". */
  namespace: string;
  /** The VNI in its name, if it has one. */
  vni: number | undefined;
  text: string;
}

export interface KernelTables {
  /** The plugin's own namespace. */
  host: string;
  namespaces: NamespaceTables[];
}

const TIMEOUT_MS = 10_000;
const NAMESPACE_RE = /^vni-(\d+)$/;

/** What is read in each overlay namespace. */
const OVERLAY_COMMANDS: readonly (readonly string[])[] = [
  ["ip", "-d", "link", "show"],
  ["ip", "-d", "addr", "show"],
  ["ip", "route", "show", "table", "all"],
  ["ip", "neigh", "show"],
  ["bridge", "fdb", "show"],
  ["iptables-save"],
];

/** What is read in the plugin's own namespace. */
function hostCommands(wireguardIface: string): (readonly string[])[] {
  return [["ip", "-d", "link", "show"], ["ip", "addr", "show"], ["ip", "route", "show"], ["iptables-save"], ["wg", "show", wireguardIface]];
}

export async function readKernelTables(opts: KernelTablesOptions): Promise<KernelTables> {
  const run = opts.run ?? runHostCommand;
  const host = await section(run, hostCommands(opts.wireguardIface), opts.hostNetnsPath);
  const dir = path.join(opts.runDir, "netns");
  let entries: string[];
  try {
    entries = (await readdir(dir)).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw new Error(`cannot list the overlay namespaces in ${dir}: ${messageOf(e)}`, { cause: e });
    entries = []; // no network has had an endpoint here yet
  }
  const namespaces: NamespaceTables[] = [];
  for (const namespace of entries) {
    const m = NAMESPACE_RE.exec(namespace);
    const text = await section(run, OVERLAY_COMMANDS, path.join(dir, namespace));
    namespaces.push({ namespace, vni: m === null ? undefined : Number(m[1]), text });
  }
  return { host, namespaces };
}

/** Each command's output under a "# command" line; a failure as one line saying so. */
async function section(run: CommandRunner, commands: readonly (readonly string[])[], netnsPath: string | undefined): Promise<string> {
  let out = "";
  for (const [bin, ...args] of commands) {
    const line = [bin, ...args].join(" ");
    out += `# ${line}\n`;
    try {
      const r = await run(bin!, args, { timeoutMs: TIMEOUT_MS, ...(netnsPath === undefined ? {} : { netnsPath }) });
      out += r.stdout;
      if (r.stdout !== "" && !r.stdout.endsWith("\n")) out += "\n";
      if (r.code !== 0) out += `# failed: ${line} exited ${r.code}: ${firstLine(r.stderr)}\n`;
    } catch (e) {
      out += `# failed: ${line}: ${messageOf(e)}\n`;
    }
    out += "\n";
  }
  return out;
}

function firstLine(text: string): string {
  return text.trim().split("\n")[0] ?? "";
}
