/**
 * `npm run bench -- startup` (issue 20, item 2): what starting a container
 * costs on tsoverlay against Docker's bridge (same host) and Docker's swarm
 * overlay, same lab, same run.
 *  - `docker run -d` wall time, and from issuing it to the first reply of a
 *    container already pinging the new one's address every 10 ms (on the
 *    other host; for the bridge, on the same host): the pinger-first trial of
 *    convergence-trial.ts.
 *  - Inside the plugin: CreateEndpoint and Join p50/p95 (its own timings).
 *  - `iptables` processes per container start and removal, from the
 *    plugin's counter (tsoverlay_iptables_runs_total, iptables and
 *    iptables-restore; the rule keeper's periodic iptables-save is off the
 *    call path and not counted): without ports, and with one published TCP
 *    port (`-p 80`, the default `hybrid` mode adds kernel DNAT).
 * Targets: `docker run` p50 ≤ 1.2× bridge; at most one iptables process per
 * container start, none for a container without ports.
 *
 * Uses the running lab if there is one (and leaves it up), otherwise brings
 * up two hosts and takes them down at the end. BENCH_TRIALS (30) per system;
 * BENCH_SWARM=0 leaves swarm out. Writes test/bench/results/startup.json
 * (BENCH_OUT overrides).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { docker, dockerOk, type Lab, type LabHost } from "../e2e/support/lab.js";
import { metricsOf, sample } from "../e2e/support/metrics.js";
import { createNetworkOn, removeNetworkOn } from "../e2e/support/overlay.js";
import { withSwarm } from "./swarm.js";
import { onLab } from "./bench-lab.js";
import { failed, pingerFirstTrial, pluginTimings } from "./convergence-trial.js";
import { percentile, round } from "./stats.js";
import { machine } from "./machine.js";

const TRIALS = Number(process.env.BENCH_TRIALS ?? 30);
const SWARM = process.env.BENCH_SWARM !== "0";
const OUT = process.env.BENCH_OUT ?? "test/bench/results/startup.json";
const TARGETS = { runToBridge: 1.2, iptablesWithPorts: 1, iptablesWithoutPorts: 0 };
const NETS = {
  tsoverlay: { network: "start-tso", subnet: "10.94.0.0/24", prefix: "10.94.0" },
  bridge: { network: "start-br", subnet: "10.93.0.0/24", prefix: "10.93.0" },
  swarm: { network: "start-swarm", subnet: "10.92.0.0/24", prefix: "10.92.0" },
};
/** iptables processes on Docker's call path: iptables and iptables-restore. Not iptables-save: the rule keeper's look every reconcile period, off the call path. */
const onCallPath = (metrics: string): number =>
  (sample(metrics, "tsoverlay_iptables_runs_total", 'command="iptables"') ?? 0) +
  (sample(metrics, "tsoverlay_iptables_runs_total", 'command="iptables-restore"') ?? 0);

const stats = (v: number[]): { n: number; p50: number; p95: number; max: number } => ({
  n: v.length,
  p50: round(percentile(v, 50), 1),
  p95: round(percentile(v, 95), 1),
  max: v.length === 0 ? Number.NaN : Math.max(...v),
});

interface Series {
  runMs: number[];
  firstReplyMs: number[];
  failures: string[];
  /** iptables processes the plugin ran per container started (tsoverlay only). */
  iptablesPerStart?: number[];
}

/** TRIALS containers started on `a` (each with `runArgs`) while `pingerHost`'s pinger waits for their address. */
async function series(
  l: Lab,
  a: LabHost,
  pingerHost: LabHost,
  net: { network: string; prefix: string },
  label: string,
  runArgs: string[] = [],
  counted = false,
): Promise<Series> {
  const pinger = `${net.network}-pinger-${label}`;
  await dockerOk(pingerHost, ["run", "-d", "--name", pinger, "--network", net.network, l.testImage, "sleep", "3600"]);
  const s: Series = { runMs: [], firstReplyMs: [], failures: [], ...(counted ? { iptablesPerStart: [] } : {}) };
  try {
    for (let i = 0; i < TRIALS; i++) {
      const before = counted ? onCallPath(await metricsOf(a)) : 0;
      const t = await pingerFirstTrial(l, a, pingerHost, {
        network: net.network,
        pinger,
        ip: `${net.prefix}.${100 + i}`,
        name: `${net.network}-${label}-${i}`,
        runArgs,
      });
      if (failed(t)) {
        s.failures.push(t.failed);
        continue;
      }
      s.runMs.push(t.runMs);
      s.firstReplyMs.push(t.fromRunIssued);
      // The trial removed its container too: a start is counted with its removal.
      if (counted) s.iptablesPerStart!.push(onCallPath(await metricsOf(a)) - before);
    }
  } finally {
    await docker(pingerHost, ["rm", "-f", pinger]);
  }
  return s;
}

async function swarmSeries(l: Lab, a: LabHost, b: LabHost): Promise<Series> {
  return withSwarm(a, b, NETS.swarm, () => series(l, a, b, NETS.swarm, "plain"));
}

async function main(): Promise<void> {
  await onLab(2, async (l) => {
    const [a, b] = [l.hosts[0]!, l.hosts[1]!];
    const since = Date.now();
    await createNetworkOn([a, b], NETS.tsoverlay.network, NETS.tsoverlay.subnet);
    let tso: Series;
    let tsoPorts: Series;
    try {
      tso = await series(l, a, b, NETS.tsoverlay, "plain", [], true);
      tsoPorts = await series(l, a, b, NETS.tsoverlay, "port", ["-p", "80"], true);
    } finally {
      await removeNetworkOn([a, b], NETS.tsoverlay.network);
    }
    const plugin = {
      createEndpoint: stats(pluginTimings(a, "/NetworkDriver.CreateEndpoint", since)),
      join: stats(pluginTimings(a, "/NetworkDriver.Join", since)),
    };
    await dockerOk(a, ["network", "create", "-d", "bridge", "--subnet", NETS.bridge.subnet, NETS.bridge.network]);
    let bridge: Series;
    try {
      bridge = await series(l, a, a, NETS.bridge, "plain");
    } finally {
      await docker(a, ["network", "rm", NETS.bridge.network]);
    }
    const swarm = SWARM ? await swarmSeries(l, a, b) : undefined;

    const p50 = (v: number[]): number => percentile(v, 50);
    const runRatio = p50(tso.runMs) / p50(bridge.runMs);
    const maxIptables = (s: Series): number => Math.max(...(s.iptablesPerStart ?? [Number.NaN]));
    const verdicts = [
      { target: `docker run p50 ≤ ${TARGETS.runToBridge}× bridge`, value: round(runRatio, 2), met: runRatio <= TARGETS.runToBridge },
      {
        target: `iptables processes per container start and removal without ports: ${TARGETS.iptablesWithoutPorts} (max over trials)`,
        value: maxIptables(tso),
        met: maxIptables(tso) <= TARGETS.iptablesWithoutPorts,
      },
      {
        target: `iptables processes per container start with one published port: ≤ ${TARGETS.iptablesWithPorts} (start and removal counted together: max over trials, ≤ 2)`,
        value: maxIptables(tsoPorts),
        met: maxIptables(tsoPorts) <= 2 * TARGETS.iptablesWithPorts,
      },
    ];
    const summary = {
      runMs: {
        tsoverlay: stats(tso.runMs),
        tsoverlayWithPort: stats(tsoPorts.runMs),
        bridge: stats(bridge.runMs),
        ...(swarm ? { swarm: stats(swarm.runMs) } : {}),
      },
      firstReplyMs: { tsoverlay: stats(tso.firstReplyMs), bridge: stats(bridge.firstReplyMs), ...(swarm ? { swarm: stats(swarm.firstReplyMs) } : {}) },
      plugin,
      iptablesPerStartAndRemoval: { withoutPorts: stats(tso.iptablesPerStart ?? []), withPort: stats(tsoPorts.iptablesPerStart ?? []) },
    };
    const result = {
      benchmark: "startup",
      date: new Date().toISOString(),
      machine: machine(),
      lab: { hosts: l.hosts.length, docker: l.docker ?? "29" },
      settings: { trials: TRIALS, swarm: SWARM },
      targets: TARGETS,
      summary,
      verdicts,
      tsoverlay: tso,
      tsoverlayWithPort: tsoPorts,
      bridge,
      ...(swarm ? { swarm } : {}),
    };
    mkdirSync(dirname(OUT), { recursive: true });
    writeFileSync(OUT, JSON.stringify(result, null, 2) + "\n");
    console.log(JSON.stringify(summary, null, 2));
    for (const v of verdicts) console.log(`${v.met ? "met    " : "NOT met"}  ${v.target}: ${v.value}`);
    console.log(`wrote ${OUT}`);
    const lost = tso.failures.length + tsoPorts.failures.length;
    if (lost > 0) throw new Error(`${lost} tsoverlay trials got no reply: ${[...tso.failures, ...tsoPorts.failures].slice(0, 3).join("; ")}`);
  });
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
