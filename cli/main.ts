#!/usr/bin/env node
import { Command, CommanderError, Option } from "commander";
import type { ClusterSnapshot } from "../driver/cluster/cluster-view.js";
import { hosts, networks, ports, ps, UsageError, type Output } from "./cluster-commands.js";
import { findSocket, getView, postAction, PluginRefused, PluginUnreachable } from "./plugin-client.js";
import { probe } from "./probe-command.js";
import { peers } from "./peers-command.js";
import { doctor } from "./doctor-command.js";
import type { Finding, ProbeReport } from "../driver/api.js";
import type { PeerReport } from "../driver/peers/peer-sync.js";
import { messageOf } from "../lib/errors.js";
import { printable } from "./printable.js";
import { VERSION } from "../lib/version.js";
import { notReady, status, type Got, type PluginStatus } from "./status-command.js";
import { bundleReport, defaultBundleName, supportBundle } from "./support-command.js";
import { writeFile } from "node:fs/promises";
import { hostname } from "node:os";

/**
 * The `tsoverlay` command: what Docker cannot show of a remote driver's
 * networks, for the whole cluster, from any host. It asks the local plugin
 * (which reads the cluster store) and prints Docker-style tables, or JSON.
 *
 * Exit status: 0 done; 1 the command ran and found a problem; 2 a usage
 * error (an unknown command, option or network); 3 the plugin could not be
 * reached or is not ready.
 */

/** A probe runs a few dozen exchanges of at most a second each. */
const PROBE_TIMEOUT_MS = 90_000;
const EXIT = { ok: 0, problem: 1, usage: 2, unreachable: 3 } as const;

interface Globals {
  socket?: string;
  json?: boolean;
  quiet?: boolean;
}

function program(): Command {
  const root = new Command("tsoverlay")
    .description("See tsoverlay networks across the cluster: containers, ports and hosts on every host")
    .addOption(new Option("--socket <path>", "the plugin's socket (default: $TSOVERLAY_SOCKET, /run/docker/plugins/tsoverlay.sock, or a managed plugin's)"))
    .option("--json", "print JSON instead of a table")
    .version(`tsoverlay version ${VERSION}`, "-v, --version", "print the version of the tsoverlay command")
    .addHelpText(
      "after",
      "\nExit status: 0 done, 1 a problem was found, 2 usage error, 3 the plugin could not be reached.\nRun 'tsoverlay COMMAND --help' for more on a command.",
    )
    .showHelpAfterError()
    .exitOverride();
  const snapshotCommand = (
    name: string,
    description: string,
    render: (s: ClusterSnapshot, network: string | undefined) => Output,
    takesNetwork: boolean,
    quietWhat?: string,
  ) => {
    const c = root.command(name).description(description);
    if (takesNetwork) c.argument("[network]", "only this network (its name or subnet)");
    if (quietWhat !== undefined) c.option("-q, --quiet", `only ${quietWhat}, one per line`);
    c.action(async (network: unknown) => {
      const g = root.opts<Globals>();
      const snapshot = (await getView(findSocket(g.socket), "cluster")) as ClusterSnapshot;
      finish(render(snapshot, typeof network === "string" ? network : undefined), { ...g, quiet: c.opts<{ quiet?: boolean }>().quiet === true });
    });
  };
  snapshotCommand("ps", "List every container endpoint of every tsoverlay network on every host, with its published ports", ps, true, "the containers' names");
  snapshotCommand("networks", "List the cluster's tsoverlay networks", (s) => networks(s), false, "the networks' names");
  snapshotCommand("hosts", "List the hosts running the plugin: VTEP, liveness, versions, endpoints", (s) => hosts(s), false, "the hosts' ids");
  root
    .command("status")
    .description(
      "One screen: this host, the cluster store's health, hosts alive and gone, networks, endpoints, pending teardown, what doctor finds (exit 1 on a problem)",
    )
    .action(async () => {
      const g = root.opts<Globals>();
      const socket = findSocket(g.socket);
      const s = (await getView(socket, "status")) as PluginStatus;
      if (s.ready !== true) return finish(notReady(s), g);
      const got = <T>(p: Promise<unknown>): Promise<Got<T>> =>
        p.then(
          (value) => ({ ok: true as const, value: value as T }),
          (e: unknown) => ({ ok: false as const, error: messageOf(e) }),
        );
      const [cluster, findings] = await Promise.all([got<ClusterSnapshot>(getView(socket, "cluster")), got<Finding[]>(getView(socket, "doctor"))]);
      finish(status(s, cluster, findings), g);
    });
  root
    .command("peers")
    .description("Check every host's neighbor and FDB entries against what it should program: missing, stale, extra (exit 1 on any)")
    .argument("[network]", "only this network (its name or subnet)")
    .action(async (network: string | undefined) => {
      const g = root.opts<Globals>();
      const socket = findSocket(g.socket);
      const [report, snapshot] = await Promise.all([getView(socket, "peers"), getView(socket, "cluster")]);
      finish(peers(report as PeerReport, snapshot as ClusterSnapshot, network), g);
    });
  root
    .command("doctor")
    .description(
      "Check this host for what breaks overlay networks (kernel, forwarding, MTU, Consul, Docker, the plugin), each with its fix (exit 1 on a problem)",
    )
    .action(async () => {
      const g = root.opts<Globals>();
      finish(doctor((await getView(findSocket(g.socket), "doctor")) as Finding[]), g);
    });
  root
    .command("rotate-key")
    .description("Give this host a new WireGuard key (encrypted networks) and publish it; the other hosts take it within moments and connections carry on")
    .action(async () => {
      const g = root.opts<Globals>();
      const r = (await postAction(findSocket(g.socket), "rotate-key")) as { publicKey: string };
      finish({ json: r, text: `new WireGuard public key: ${printable(r.publicKey)}\n` }, g);
    });
  root
    .command("probe")
    .description(
      "Send VXLAN probes to a peer's VTEP: reachability, round trip, path MTU; tells 'UDP 4789 blocked', 'MTU too small' and 'peer not answering' apart (exit 1 unless all is well)",
    )
    .argument("<target>", "a host (its address or name) or a container address")
    .option("--network <network>", "the network whose VNI to probe with (default: one with containers on both hosts)")
    .action(async (target: string, o: { network?: string }) => {
      const g = root.opts<Globals>();
      finish(probe((await getView(findSocket(g.socket), "probe", { target, network: o.network }, PROBE_TIMEOUT_MS)) as ProbeReport), g);
    });
  root
    .command("support-bundle")
    .description(
      "Write one .tar.gz for a bug report: status, doctor, peers, cluster, the plugin's recent log, this host's kernel tables, the store's records; secrets redacted (exit 1 if a part is missing)",
    )
    .option("-o, --output <file>", "where to write it, - for standard output (default: tsoverlay-support-<host>-<UTC time>.tar.gz here)")
    .action(async (o: { output?: string }) => {
      const g = root.opts<Globals>();
      if (o.output === "-" && process.stdout.isTTY) throw new UsageError("-o -: standard output is a terminal; redirect it to a file or give -o FILE");
      const now = new Date();
      const host = hostname();
      const bundle = await supportBundle(findSocket(g.socket), { now, host });
      const file = o.output ?? defaultBundleName(host, now);
      // Root's only: it holds addresses, names and rules of the whole cluster.
      if (file === "-") process.stdout.write(bundle.archive);
      else await writeFile(file, bundle.archive, { mode: 0o600 });
      const out = bundleReport(bundle, file === "-" ? "standard output" : file);
      if (file !== "-") return finish(out, g);
      process.stderr.write(g.json === true ? `${JSON.stringify(out.json, null, 2)}\n` : out.text);
      if (out.problems > 0) process.exitCode = EXIT.problem;
    });
  snapshotCommand("ports", "List every published port on every host, and what carries it (kernel DNAT or the proxy)", ports, true);
  return root;
}

/** Prints the output as asked; problems found make the exit status 1. */
function finish(out: Output, g: Globals): void {
  if (g.quiet === true && g.json !== true && out.quiet !== undefined) process.stdout.write(out.quiet.map((line) => `${printable(line)}\n`).join(""));
  else process.stdout.write(g.json === true ? `${JSON.stringify(out.json, null, 2)}\n` : out.text);
  if ((out.problems ?? 0) > 0) process.exitCode = EXIT.problem;
}

async function main(argv: string[]): Promise<number> {
  const root = program();
  try {
    await root.parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (e instanceof UsageError || e instanceof PluginRefused) {
      process.stderr.write(`tsoverlay: ${printable(e.message)}\n`);
      return EXIT.usage;
    }
    if (e instanceof PluginUnreachable) {
      process.stderr.write(`tsoverlay: ${printable(e.message)}\n`);
      return EXIT.unreachable;
    }
    process.stderr.write(`tsoverlay: ${printable(messageOf(e))}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv);
