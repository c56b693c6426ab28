/**
 * `npm run bench -- proxy`: our userland proxy (proxy/, a ProxyManager in its own Node process)
 * against Docker's docker-proxy (Debian docker.io 20.10, started as dockerd starts it), against the
 * kernel path Docker takes with --userland-proxy=false (DNAT of the loopback port, proxy-kernel.ts,
 * in a second namespace tsb-proxy-kernel with its own backends) and against no proxy at all, in
 * one run on loopback inside a throwaway network namespace (tsb-proxy):
 * TCP throughput (iperf3: one stream each way, 8 streams), new connections per second (50
 * concurrent connect/echo/close loops), TCP and UDP round-trip time (64 B ping-pong), UDP
 * requests per second (50 flows), and memory per published port with 1,000 TCP bindings.
 * Prints a table with ours/docker-proxy ratios against the targets (reported, never enforced)
 * and writes test/bench/results/proxy.json (BENCH_PROXY_WORKERS=N: our proxy with N accept workers,
 * written to test/bench/results/proxy-workers-N.json instead).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Binding } from "../../proxy/index.js";
import { run } from "../e2e/support/lab.js";
import { startKernelPath } from "./proxy-kernel.js";
import { BenchNetns, DOCKER_PROXY, Lines, type DockerProxySpec } from "./proxy-lab.js";
import { pick, printTable, rows, targetsOf, type Measured, type PerTarget, type Rate, type Rtt, type Target } from "./proxy-report.js";
import { measureDockerProxyMemory, measureOurMemory, OurProxy, startDockerProxies } from "./proxy-targets.js";
import { machine } from "./machine.js";
import { round } from "./stats.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 20_000);
/** Accept workers for our proxy's traffic runs (the plugin's TSOVERLAY_PROXY_WORKERS); memory is always measured without. */
const WORKERS = Number(process.env.BENCH_PROXY_WORKERS ?? 0);
const RESULTS = WORKERS > 0 ? `test/bench/results/proxy-workers-${WORKERS}.json` : "test/bench/results/proxy.json";
const CONCURRENCY = 50;
const BINDINGS = 1000;
const NETNS = "tsb-proxy";
const KERNEL_NETNS = "tsb-proxy-kernel";
const LOOPBACK = "127.0.0.1";
const BACKEND = { iperf: 5201, echo: 7000 };
/** Host ports of the 1,000 memory bindings: ours, then docker-proxy's (below the ephemeral range, see proxy-lab.ts). */
const MEMORY_PORTS = { ours: 8000, dockerProxy: 9000 };

const TARGETS: Target[] = ["direct", "dockerProxy", "ours", "kernel"];
/** Where each target listens for the iperf3 and the echo (TCP and UDP) traffic. */
const PORTS: PerTarget<{ iperf: number; echo: number }> = {
  direct: BACKEND,
  dockerProxy: { iperf: 6001, echo: 6002 },
  ours: { iperf: 6101, echo: 6102 },
  kernel: { iperf: 6201, echo: 6202 },
};

/** Where a target's load generator runs, and the ports it aims at. */
interface Aim {
  ns: BenchNetns;
  iperf: number;
  echo: number;
}

const say = (msg: string): void => void process.stderr.write(`[bench] ${msg}\n`);

/** Each figure is measured this many times per target, interleaved; the median sample is reported. */
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
/** Every sample, per figure and target, for the results file. */
const samples: Record<string, PerTarget<number[]>> = {};

/**
 * Measures every target ROUNDS times, round-robin (direct, docker-proxy, ours, direct, …) so a
 * slow spell of the shared VM hits all three alike, and keeps the sample whose `key` is the median.
 */
async function perTarget<T>(what: string, key: (t: T) => number, measure: (aim: Aim) => Promise<T>): Promise<PerTarget<T>> {
  const all: PerTarget<T[]> = { direct: [], dockerProxy: [], ours: [], kernel: [] };
  for (let r = 1; r <= ROUNDS; r++) {
    for (const t of TARGETS) {
      say(`${what}: ${t} (${r}/${ROUNDS})`);
      all[t].push(await measure({ ns: t === "kernel" ? kernelNs : ns, ...PORTS[t] }));
    }
  }
  const median = (xs: T[]): T => [...xs].sort((a, b) => key(a) - key(b))[Math.floor((xs.length - 1) / 2)]!;
  samples[what] = { direct: all.direct.map(key), dockerProxy: all.dockerProxy.map(key), ours: all.ours.map(key), kernel: all.kernel.map(key) };
  return { direct: median(all.direct), dockerProxy: median(all.dockerProxy), ours: median(all.ours), kernel: median(all.kernel) };
}

function gbits(iperfJson: string): number {
  const j = JSON.parse(iperfJson) as { end: { sum_received: { bits_per_second: number } } };
  return round(j.end.sum_received.bits_per_second / 1e9, 2);
}

async function iperf(ns: BenchNetns, port: number, extra: string[]): Promise<number> {
  const args = ["-c", LOOPBACK, "-p", String(port), "-t", String(SECONDS), "-J", ...extra];
  for (let attempt = 1; ; attempt++) {
    const r = await ns.exec("iperf3", args, (SECONDS + 30) * 1000);
    if (r.code === 0) return gbits(r.stdout);
    if (attempt === 2) throw new Error(`iperf3 ${args.join(" ")}: ${r.stdout.slice(-500)} ${r.stderr}`);
    await sleep(1000); // the server may still be closing the previous test
  }
}

async function load<T>(ns: BenchNetns, args: (string | number)[]): Promise<T> {
  const r = await ns.execScript("proxy-load.ts", args.map(String), (SECONDS + 120) * 1000);
  if (r.code !== 0) throw new Error(`proxy-load ${args.join(" ")} failed (${r.code}): ${r.stderr.slice(-1000)}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as T;
}

async function startBackends(ns: BenchNetns): Promise<void> {
  const iperfd = ns.spawn("iperf3", ["-s", "-p", String(BACKEND.iperf), "--forceflush"]);
  const echo = ns.spawnScript("proxy-echo.ts", [String(BACKEND.echo)], { stdio: ["ignore", "pipe", "inherit"] });
  await Promise.all([
    new Lines(iperfd.stdout!).until(/Server listening/, 10_000, "iperf3 -s"),
    new Lines(echo.stdout!).until(/"ready"/, 60_000, "echo backend"),
  ]);
}

function forwardings(hostPorts: { iperf: number; echo: number }): DockerProxySpec[] {
  return [
    { proto: "tcp", hostPort: hostPorts.iperf, containerIp: LOOPBACK, containerPort: BACKEND.iperf },
    { proto: "tcp", hostPort: hostPorts.echo, containerIp: LOOPBACK, containerPort: BACKEND.echo },
    { proto: "udp", hostPort: hostPorts.echo, containerIp: LOOPBACK, containerPort: BACKEND.echo },
  ];
}

function asBinding(s: DockerProxySpec): Binding {
  return { proto: s.proto, hostIp: "0.0.0.0", hostPort: s.hostPort, backendIp: s.containerIp, backendPort: s.containerPort };
}

async function startProxies(fifoDir: string): Promise<void> {
  await startDockerProxies(ns, forwardings(PORTS.dockerProxy), fifoDir, 1);
  const ours = await OurProxy.start(ns, WORKERS);
  await ours.add(forwardings(PORTS.ours).map(asBinding));
  await startKernelPath(
    kernelNs,
    forwardings(PORTS.kernel).map((f) => ({ proto: f.proto, hostPort: f.hostPort, backendPort: f.containerPort })),
  );
}

const gb = (g: number): number => g;
const perSec = (r: Rate): number => r.perSec;
const p50 = (r: Rtt): number => r.p50Us;

async function measureTcp(): Promise<Measured["tcp"]> {
  return {
    single: await perTarget("iperf3 1 stream", gb, (a) => iperf(a.ns, a.iperf, [])),
    reverse: await perTarget("iperf3 1 stream -R", gb, (a) => iperf(a.ns, a.iperf, ["-R"])),
    parallel8: await perTarget("iperf3 -P 8", gb, (a) => iperf(a.ns, a.iperf, ["-P", "8"])),
  };
}

async function measureEcho(): Promise<Omit<Measured, "tcp" | "memory">> {
  return {
    connects: await perTarget("connects/s", perSec, (a) => load<Rate>(a.ns, ["connects", a.echo, SECONDS, CONCURRENCY])),
    tcpRtt: await perTarget("TCP RTT", p50, (a) => load<Rtt>(a.ns, ["tcp-rtt", a.echo, SAMPLES])),
    udpRtt: await perTarget("UDP RTT", p50, (a) => load<Rtt>(a.ns, ["udp-rtt", a.echo, SAMPLES])),
    udpRps: await perTarget("UDP req/s", perSec, (a) => load<Rate>(a.ns, ["udp-rps", a.echo, SECONDS, CONCURRENCY])),
  };
}

function memoryBindings(first: number): DockerProxySpec[] {
  return Array.from({ length: BINDINGS }, (_, i) => ({ proto: "tcp" as const, hostPort: first + i, containerIp: LOOPBACK, containerPort: BACKEND.echo }));
}

async function measureMemory(fifoDir: string): Promise<Measured["memory"] & Record<string, unknown>> {
  say(`memory: ${BINDINGS} bindings in one ProxyManager`);
  const ours = await measureOurMemory(ns, memoryBindings(MEMORY_PORTS.ours).map(asBinding));
  say(`memory: ${BINDINGS} docker-proxy processes`);
  const docker = await measureDockerProxyMemory(ns, memoryBindings(MEMORY_PORTS.dockerProxy), fifoDir);
  const per = (bytes: number): number => Math.round(bytes / BINDINGS);
  return {
    bindings: BINDINGS,
    oursBytes: per(ours.rssGrowth),
    dockerProxyBytes: per(docker.memAvailableDrop),
    dockerProxyPssBytes: per(docker.pssSum),
    ratio: round(ours.rssGrowth / docker.memAvailableDrop, 4),
    ratioToPss: round(ours.rssGrowth / docker.pssSum, 4),
    ours: { ...ours, pssGrowthPerBinding: per(ours.pssGrowth), heapUsedGrowthPerBinding: per(ours.heapUsedGrowth) },
    dockerProxy: docker,
    method:
      "ours: RSS growth of the proxy process (process.memoryUsage().rss after 3× gc() and 0.9 s) from before to after adding the bindings, " +
      "after one warm-up binding so first-use code is in the baseline; dockerProxy: MemAvailable drop (settled) and Σ Pss (smaps_rollup) of the processes",
  };
}

function compare(v: PerTarget<number>): Record<string, number> {
  return {
    direct: v.direct,
    dockerProxy: v.dockerProxy,
    ours: v.ours,
    kernel: v.kernel,
    ratio: round(v.ours / v.dockerProxy, 3),
    kernelRatio: round(v.kernel / v.dockerProxy, 3),
    oursToDirect: round(v.ours / v.direct, 3),
    dockerProxyToDirect: round(v.dockerProxy / v.direct, 3),
    kernelToDirect: round(v.kernel / v.direct, 3),
  };
}

async function meta(): Promise<Record<string, unknown>> {
  const version = async (cmd: string, args: string[]): Promise<string> => (await run(cmd, args)).stdout.trim().split("\n")[0] ?? "";
  return {
    date: new Date().toISOString(),
    ...machine(),
    node: process.version,
    dockerProxy: { path: DOCKER_PROXY, package: `docker.io ${await version("dpkg-query", ["-W", "-f", "${Version}", "docker.io"])}` },
    iperf3: await version("iperf3", ["--version"]),
    seconds: SECONDS,
    rounds: ROUNDS,
    rttSamples: SAMPLES,
    concurrency: CONCURRENCY,
    netns: NETNS,
    kernelNetns: KERNEL_NETNS,
    proxyWorkers: WORKERS,
    loadGenerator:
      "TCP throughput: iperf3 -J (receiver-side rate); connects, RTT and UDP: test/bench/proxy-load.ts (Node, one process per measurement) " +
      "against test/bench/proxy-echo.ts (Node TCP+UDP echo); all on 127.0.0.1 in the namespace",
    notes: [
      `Only ${cpus().length} CPUs: the load generator, the proxy and the backend share them, so a proxied run has three busy processes where a direct one has two.`,
      'docker-proxy: -proto P -host-ip 0.0.0.0 -host-port N -container-ip 127.0.0.1 -container-port M, fd 3 = status pipe (FIFO), started only after it wrote "0\\n"; ours: a ProxyManager with the plugin\'s defaults, hostIp 0.0.0.0.',
      `kernel: no proxy process; DNAT of 127.0.0.1:PORT in nat OUTPUT with Docker's loopback guard (raw PREROUTING -d 127.0.0.0/8 ! -i lo -j DROP), in ${KERNEL_NETNS} with its own echo and iperf3 (a nat table turns conntrack on for the whole namespace); backend on lo, so no route_localnet and no MASQUERADE as with a bridge (test/bench/proxy-kernel.ts).`,
      `Each figure is the median of ${ROUNDS} samples per target, taken round-robin; single samples on this shared 2-vCPU VM swing ±25 % (see samples), more when loadAverage shows other work.`,
    ],
  };
}

function results(m: Measured): Record<string, unknown> {
  return {
    tcp: { unit: "Gbit/s", single: compare(m.tcp.single), reverse: compare(m.tcp.reverse), parallel8: compare(m.tcp.parallel8) },
    connectsPerSec: { ...compare(pick(m.connects, "perSec")), errors: pick(m.connects, "errors") },
    rtt: {
      unit: "µs",
      tcp: { p50: compare(pick(m.tcpRtt, "p50Us")), p99: compare(pick(m.tcpRtt, "p99Us")) },
      udp: { p50: compare(pick(m.udpRtt, "p50Us")), p99: compare(pick(m.udpRtt, "p99Us")), lost: pick(m.udpRtt, "lost") },
    },
    udpRequestsPerSec: { ...compare(pick(m.udpRps, "perSec")), lost: pick(m.udpRps, "lost") },
    memoryPerBinding: m.memory,
    targets: targetsOf(rows(m)),
    samples: { rounds: ROUNDS, note: "every sample per figure and target (Gbit/s, per second, or p50 µs); the tables show the median", ...samples },
  };
}

const ns = new BenchNetns(NETNS);
const kernelNs = new BenchNetns(KERNEL_NETNS);

async function main(): Promise<void> {
  const fifoDir = mkdtempSync(join(tmpdir(), "tsb-proxy-"));
  const cleanup = async (): Promise<void> => {
    await Promise.all([ns.destroy(), kernelNs.destroy()]);
    rmSync(fifoDir, { recursive: true, force: true });
  };
  for (const [sig, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const)
    process.once(sig, () => void cleanup().finally(() => process.exit(code)));

  const started = Date.now();
  const loadAtStart = loadavg().map((l) => round(l, 2));
  let measured: Measured;
  try {
    await Promise.all([ns.create(), kernelNs.create()]);
    await Promise.all([startBackends(ns), startBackends(kernelNs)]);
    await startProxies(fifoDir);
    const tcp = await measureTcp();
    const echo = await measureEcho();
    const memory = await measureMemory(fifoDir);
    measured = { tcp, ...echo, memory };
  } finally {
    await cleanup();
  }
  const timing = {
    durationSeconds: Math.round((Date.now() - started) / 1000),
    loadAverage1_5_15: { start: loadAtStart, end: loadavg().map((l) => round(l, 2)) },
  };
  const result = { meta: { ...(await meta()), ...timing }, ...results(measured) };
  mkdirSync("test/bench/results", { recursive: true });
  writeFileSync(RESULTS, JSON.stringify(result, null, 2) + "\n");
  printTable(
    rows(measured),
    `${NETNS}: loopback, ${cpus().length} CPUs shared by load generator, proxy and backend; ${SECONDS} s per rate run, ${SAMPLES} RTT samples, median of ${ROUNDS} rounds, ${WORKERS} accept workers`,
  );
  console.log(`wrote ${RESULTS}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
