/**
 * Bench results as PNG charts, written beside the JSON they come from
 * (test/bench/results/NAME.json → NAME.png).
 *
 * Design note. A chart is a Vega-Lite spec built from a results file: a
 * declarative spec is a few lines per panel, where hand-drawn SVG would be
 * hundreds and harder to review. Vega renders the spec to SVG without a
 * browser or a canvas (`renderer: "none"`, `toSVG()`), and resvg turns the
 * SVG into a PNG with prebuilt binaries from the npm registry (node-canvas
 * would download its binaries from GitHub, which this machine cannot reach).
 * Text is drawn with the system's DejaVu Sans (`lab.sh packages` installs
 * fonts-dejavu-core). Every sample of a results file is drawn, not only its
 * medians: the dots are the samples, the bars or lines the figures the
 * targets are judged on.
 *
 * `npm run bench -- charts [FILE.json ...]` (charts-cli.ts) renders the
 * given results files, or all of test/bench/results/*.json.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Resvg } from "@resvg/resvg-js";
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { percentile } from "./stats.js";

type Row = Record<string, string | number>;
export type Json = Record<string, unknown>;

const SYSTEMS = { direct: "direct", dockerProxy: "docker-proxy", ours: "tsoverlay", kernel: "kernel DNAT" } as const;
const SYSTEM_ORDER = Object.values(SYSTEMS);
const PANEL = { width: 260, height: 200 };

/** A spec built from plain objects (the panels are assembled by helpers; Vega-Lite validates it when it compiles). */
function vegaLite(spec: Json): TopLevelSpec {
  return { $schema: "https://vega.github.io/schema/vega-lite/v6.json", ...spec } as unknown as TopLevelSpec;
}

/** Which kind of results file this is, from its own fields. */
export function kindOf(results: Json): "proxy" | "churn" | "overlay" | "wireguard" | "convergence" | "startup" | "scale" {
  if (results.benchmark === "churn") return "churn";
  if (results.benchmark === "scale") return "scale";
  if (results.benchmark === "startup") return "startup";
  if (results.benchmark === "convergence") return "convergence";
  if (results.benchmark === "wireguard") return "wireguard";
  if (results.benchmark === "overlay") return "overlay";
  if (typeof results.meta === "object" && results.tcp !== undefined && results.samples !== undefined) return "proxy";
  throw new Error(`not a results file this project writes (no "benchmark" of churn/convergence/overlay/scale/startup/wireguard, no proxy fields)`);
}

/** The Vega-Lite spec of a results file's chart. */
export function chartSpec(results: Json): TopLevelSpec {
  switch (kindOf(results)) {
    case "proxy":
      return proxySpec(results);
    case "churn":
      return churnSpec(results);
    case "overlay":
      return overlaySpec(results);
    case "wireguard":
      return wireguardSpec(results);
    case "convergence":
      return convergenceSpec(results);
    case "startup":
      return startupSpec(results);
    case "scale":
      return scaleSpec(results);
  }
}

/** A results file's chart as PNG bytes. */
export async function renderPng(results: Json): Promise<Buffer> {
  const view = new vega.View(vega.parse(compile(chartSpec(results)).spec), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  const png = new Resvg(svg, {
    background: "white",
    fitTo: { mode: "zoom", value: 2 },
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" },
  }).render();
  return png.asPng();
}

/** Where the benches write their results files, and the README links them from. */
export const RESULTS_DIR = "test/bench/results";

/** The results files in a directory (test/bench/results by default), as paths. */
export function resultsFiles(dir = RESULTS_DIR): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => join(dir, f));
}

/** A results file's contents. */
export function readResults(jsonPath: string): Json {
  try {
    return JSON.parse(readFileSync(jsonPath, "utf8")) as Json;
  } catch (err) {
    throw new Error(`${jsonPath}: cannot read it as JSON: ${(err as Error).message}`, { cause: err });
  }
}

/** Renders FILE.json to FILE.png; returns the PNG's path. */
export async function renderFile(jsonPath: string): Promise<string> {
  const results = readResults(jsonPath);
  let png: Buffer;
  try {
    png = await renderPng(results);
  } catch (err) {
    throw new Error(`${jsonPath}: ${(err as Error).message}`, { cause: err });
  }
  const out = jsonPath.replace(/\.json$/, "") + ".png";
  writeFileSync(out, png);
  return out;
}

// ---- proxy: ours against docker-proxy, the kernel DNAT path and a direct connection ----

function proxySpec(r: Json): TopLevelSpec {
  const samples = r.samples as Record<string, Record<string, number[]> | number | string>;
  const meta = r.meta as Json;
  const rows = (figure: string, label: string): Row[] =>
    Object.entries(SYSTEMS).flatMap(([key, system]) =>
      ((samples[figure] as Record<string, number[]> | undefined)?.[key] ?? []).map((value) => ({ label, system, value })),
    );
  const median = (key: string, label: string, pick: (s: string) => number | undefined): Row[] =>
    Object.entries(SYSTEMS).flatMap(([s, system]) => {
      const value = pick(s);
      return value === undefined ? [] : [{ label, system, value, key }];
    });
  const tcp = r.tcp as Record<string, Record<string, number>>;
  const rtt = r.rtt as Record<string, Record<string, Record<string, number>>>;
  const mem = r.memoryPerBinding as Json;
  const workers = typeof meta.proxyWorkers === "number" && meta.proxyWorkers > 0 ? `, ${meta.proxyWorkers} accept worker(s)` : "";
  return vegaLite({
    title: {
      text: `Published-port proxy on loopback (${String(meta.date).slice(0, 10)}, ${String(meta.cpus)} vCPU${workers})`,
      subtitle: "bars: the median of the rounds; dots: every round",
    },
    config: { font: "DejaVu Sans", legend: { labelLimit: 260 } },
    // Each panel its own colours and axes: one panel's series are not another's.
    resolve: { scale: { color: "independent", y: "independent", xOffset: "independent" }, legend: { color: "independent" } },
    hconcat: [
      groupedPanel(
        "TCP throughput (Gbit/s, higher is better)",
        median("tcp", "1 stream", (s) => tcp.single?.[s]).concat(
          median("tcp", "reverse", (s) => tcp.reverse?.[s]),
          median("tcp", "8 streams", (s) => tcp.parallel8?.[s]),
        ),
        [...rows("iperf3 1 stream", "1 stream"), ...rows("iperf3 1 stream -R", "reverse"), ...rows("iperf3 -P 8", "8 streams")],
        true,
      ),
      groupedPanel(
        "per second (higher is better)",
        median("rate", "TCP connects", (s) => (r.connectsPerSec as Record<string, number>)[s]).concat(
          median("rate", "UDP requests", (s) => (r.udpRequestsPerSec as Record<string, number>)[s]),
        ),
        [...rows("connects/s", "TCP connects"), ...rows("UDP req/s", "UDP requests")],
      ),
      groupedPanel(
        "round trip (µs, lower is better)",
        ["tcp", "udp"].flatMap((proto) => ["p50", "p99"].flatMap((p) => median("rtt", `${proto.toUpperCase()} ${p}`, (s) => rtt[proto]?.[p]?.[s]))),
        [...rows("TCP RTT", "TCP p50"), ...rows("UDP RTT", "UDP p50")],
      ),
      {
        title: `memory per published port (KiB; ${String(mem.bindings)} ports)`,
        ...PANEL,
        data: {
          values: [
            { system: SYSTEMS.ours, kib: Math.round(Number(mem.oursBytes) / 102.4) / 10 },
            { system: SYSTEMS.dockerProxy, kib: Math.round(Number(mem.dockerProxyBytes) / 102.4) / 10 },
          ],
        },
        encoding: {
          x: { field: "system", type: "nominal", sort: SYSTEM_ORDER, title: null, axis: { labelAngle: 0 } },
          y: { field: "kib", type: "quantitative", title: "KiB" },
        },
        layer: [
          { mark: { type: "bar" }, encoding: { color: { field: "system", type: "nominal", scale: { domain: SYSTEM_ORDER }, legend: null } } },
          { mark: { type: "text", dy: -8 }, encoding: { text: { field: "kib", type: "quantitative", format: ",.1f" } } },
        ],
      },
    ],
  });
}

/** Bars of the figures per label and system, with every sample as a dot over them. */
function groupedPanel(title: string, figures: Row[], samples: Row[], legend = false): Json {
  const x = { field: "label", type: "nominal", title: null, axis: { labelAngle: 0 } };
  const xOffset = { field: "system", sort: SYSTEM_ORDER };
  const color = { field: "system", type: "nominal", scale: { domain: SYSTEM_ORDER }, title: null, ...(legend ? {} : { legend: null }) };
  return {
    title,
    ...PANEL,
    layer: [
      { data: { values: figures }, mark: { type: "bar" }, encoding: { x, xOffset, y: { field: "value", type: "quantitative", title: null }, color } },
      {
        data: { values: samples },
        mark: { type: "point", filled: true, color: "black", size: 14, opacity: 0.7 },
        encoding: { x, xOffset, y: { field: "value", type: "quantitative" } },
      },
    ],
  };
}

// ---- churn: addresses moving between hosts, cycle after cycle ----

interface ChurnPing {
  from: string;
  to: string;
  firstOk: boolean;
  firstReplyMs: number;
}

function churnSpec(r: Json): TopLevelSpec {
  const cycles = r.cycles as { seconds: number; pings: ChurnPing[] }[];
  const summary = r.summary as Json;
  const lab = r.lab as Json;
  const perCycle = cycles.map((c, cycle) => ({ cycle, seconds: c.seconds }));
  const pings = cycles.flatMap((c, cycle) => c.pings.map((p) => ({ cycle, ms: p.firstReplyMs, first: p.firstOk ? "first ping answered" : "first ping lost" })));
  const rss = (r.rssSeries as { cycle: number; rssKb: Record<string, number> }[]).flatMap((s) =>
    Object.entries(s.rssKb).map(([host, kb]) => ({ cycle: s.cycle, host, mb: Math.round(kb / 102.4) / 10 })),
  );
  const success = Number(summary.firstPingSuccess) * 100;
  return vegaLite({
    title: {
      text: `Churn: ${cycles.length} cycles on ${String(lab.hosts)} hosts (${String(r.date).slice(0, 10)})`,
      subtitle: `${String(summary.pings)} cross-host first pings, ${success} % answered`,
    },
    config: { font: "DejaVu Sans", legend: { labelLimit: 260 } },
    // Each panel its own colours and axes: one panel's series are not another's.
    resolve: { scale: { color: "independent", y: "independent", xOffset: "independent" }, legend: { color: "independent" } },
    hconcat: [
      {
        title: "docker run returned → first reply (ms), every ping",
        ...PANEL,
        data: { values: pings },
        mark: { type: "point", filled: true, size: 8, opacity: 0.5 },
        encoding: {
          x: { field: "cycle", type: "quantitative" },
          y: { field: "ms", type: "quantitative", title: "ms" },
          color: { field: "first", type: "nominal", scale: { domain: ["first ping answered", "first ping lost"], range: ["#4c78a8", "#e45756"] }, title: null },
        },
      },
      {
        title: "seconds per cycle",
        ...PANEL,
        data: { values: perCycle },
        mark: { type: "line", strokeWidth: 1 },
        encoding: { x: { field: "cycle", type: "quantitative" }, y: { field: "seconds", type: "quantitative", title: "s", scale: { zero: true } } },
      },
      {
        title: "plugin RSS (MB) per host",
        ...PANEL,
        data: { values: rss },
        mark: { type: "line", point: true },
        encoding: {
          x: { field: "cycle", type: "quantitative" },
          y: { field: "mb", type: "quantitative", title: "MB", scale: { zero: true } },
          color: { field: "host", type: "nominal", title: null },
        },
      },
    ],
  });
}

// ---- overlay: throughput against the underlay and Docker's overlay, convergence ----

function overlaySpec(r: Json): TopLevelSpec {
  const runs = r.runs as {
    underlayMtu: number;
    throughputGbits: Record<string, number>;
    pluginLatencyMs: Record<string, { p50: number; p95: number }>;
    convergenceMs: Record<string, unknown>;
  }[];
  const names: Record<string, string> = {
    underlay: "underlay",
    tsoverlay: "tsoverlay",
    tsoverlayEncrypted: "tsoverlay -o encrypted",
    dockerOverlay: "Docker overlay (swarm)",
  };
  const throughput = runs.flatMap((run) =>
    Object.entries(run.throughputGbits).map(([k, value]) => ({ mtu: `underlay MTU ${run.underlayMtu}`, system: names[k] ?? k, value })),
  );
  const latency = runs.flatMap((run) =>
    Object.entries(run.pluginLatencyMs).flatMap(([call, v]) => [
      { mtu: `MTU ${run.underlayMtu}`, label: `${call} p50`, value: v.p50 },
      { mtu: `MTU ${run.underlayMtu}`, label: `${call} p95`, value: v.p95 },
    ]),
  );
  const convergence = runs.flatMap((run) =>
    (["fromDockerRun", "fromContainerStarted"] as const).flatMap((k) => {
      const v = run.convergenceMs[k] as { p50: number; p95: number } | undefined;
      const from = k === "fromDockerRun" ? "from docker run" : "from container start";
      return v === undefined
        ? []
        : [
            { mtu: `MTU ${run.underlayMtu}`, label: `${from} p50`, value: v.p50 },
            { mtu: `MTU ${run.underlayMtu}`, label: `${from} p95`, value: v.p95 },
          ];
    }),
  );
  const bars = (title: string, values: Row[], x: string, color: string, yTitle: string): Json => ({
    title,
    ...PANEL,
    data: { values },
    mark: { type: "bar" },
    encoding: {
      x: { field: x, type: "nominal", title: null, axis: { labelAngle: 0 } },
      xOffset: { field: color },
      y: { field: "value", type: "quantitative", title: yTitle },
      color: { field: color, type: "nominal", title: null },
    },
  });
  return vegaLite({
    title: {
      text: `Overlay across lab hosts (${String(r.date).slice(0, 10)})`,
      subtitle: "iperf3 between containers on two hosts; plugin calls and peer convergence",
    },
    config: { font: "DejaVu Sans", legend: { labelLimit: 260 } },
    // Each panel its own colours and axes: one panel's series are not another's.
    resolve: { scale: { color: "independent", y: "independent", xOffset: "independent" }, legend: { color: "independent" } },
    hconcat: [
      bars("TCP throughput (Gbit/s)", throughput, "mtu", "system", "Gbit/s"),
      bars("plugin call latency (ms)", latency, "mtu", "label", "ms"),
      bars("a new container reachable from another host (ms)", convergence, "mtu", "label", "ms"),
    ],
  });
}

/** One panel per MTU: each datapath's throughput with one and 8 streams, its per-second samples as dots. */
function wireguardSpec(r: Json): TopLevelSpec {
  const runs = r.runs as { underlayMtu: number; runs: { datapath: string; streams: number; gbits: number; samplesGbits: number[] }[] }[];
  const panel = (mtu: number, measured: (typeof runs)[number]["runs"]): Json => {
    const bars = measured.map((m) => ({ datapath: m.datapath, streams: `${m.streams} stream${m.streams === 1 ? "" : "s"}`, value: m.gbits }));
    const dots = measured.flatMap((m) =>
      m.samplesGbits.map((value) => ({ datapath: m.datapath, streams: `${m.streams} stream${m.streams === 1 ? "" : "s"}`, value })),
    );
    const encoding = {
      x: { field: "datapath", type: "nominal", title: null, sort: null, axis: { labelAngle: -30 } },
      xOffset: { field: "streams" },
      y: { field: "value", type: "quantitative", title: "Gbit/s" },
      color: { field: "streams", type: "nominal", title: null },
    };
    return {
      title: `MTU ${mtu}`,
      ...PANEL,
      layer: [
        { data: { values: bars }, mark: { type: "bar" }, encoding },
        { data: { values: dots }, mark: { type: "point", filled: true, size: 14, color: "black" }, encoding: { ...encoding, color: undefined } },
      ],
    };
  };
  return vegaLite({
    title: {
      text: `WireGuard on this machine (${String(r.date).slice(0, 10)})`,
      subtitle: "iperf3 between two namespaces: veth, VXLAN, wireguard-go with and without TUN offloads, VXLAN inside wireguard-go",
    },
    config: { font: "DejaVu Sans" },
    hconcat: runs.map((run) => panel(run.underlayMtu, run.runs)),
  });
}

/** Samples per (label, system): their p50 and p95 as grouped bars, every sample a dot over the p95 bar. */
function percentilePanel(
  title: string,
  groups: { label: string; system: string; values: number[] }[],
  o: { width?: number; scale?: "linear" | "symlog"; labelAngle?: number; yTitle?: string | null } = {},
): Json {
  const figures: Row[] = [];
  const samples: Row[] = [];
  for (const g of groups) {
    if (g.values.length === 0) continue;
    for (const p of [50, 95]) figures.push({ label: `${g.label}p${p}`, system: g.system, value: percentile(g.values, p) });
    for (const value of g.values) samples.push({ label: `${g.label}p95`, system: g.system, value });
  }
  const x = { field: "label", type: "nominal", title: null, axis: { labelAngle: o.labelAngle ?? 0 } };
  return {
    title,
    width: o.width ?? PANEL.width,
    height: PANEL.height,
    layer: [
      {
        data: { values: figures },
        mark: { type: "bar" },
        encoding: {
          x,
          xOffset: { field: "system" },
          y: { field: "value", type: "quantitative", title: o.yTitle ?? null, scale: { type: o.scale ?? "linear" } },
          color: { field: "system", type: "nominal", title: null },
        },
      },
      {
        data: { values: samples },
        mark: { type: "point", filled: true, color: "black", size: 10, opacity: 0.5 },
        encoding: { x, xOffset: { field: "system" }, y: { field: "value", type: "quantitative" } },
      },
    ],
  };
}

// ---- convergence: a new container reachable from another host ----

/** Per order (and the plugins' store-to-kernel path): each system's p50 and p95 as bars, every trial as a dot. */
function convergenceSpec(r: Json): TopLevelSpec {
  type Orders = Record<string, { samplesMs: number[] } | undefined>;
  const systems: [string, Orders | undefined][] = [
    ["tsoverlay", r.tsoverlay as Orders | undefined],
    ["Docker overlay (swarm)", r.swarm as Orders | undefined],
  ];
  const orders: [string, string][] = [
    ["pingerFirst", "pinger first"],
    ["targetFirst", "target first"],
    ["storeToKernel", "store → kernel"],
  ];
  const groups = systems.flatMap(([system, data]) => orders.map(([key, label]) => ({ label: `${label} `, system, values: data?.[key]?.samplesMs ?? [] })));
  const settings = r.settings as Json;
  return vegaLite({
    title: {
      text: `Convergence across lab hosts (${String(r.date).slice(0, 10)})`,
      subtitle: `docker run returning → first reply from the other host, ${String(settings.trials)} trials per order; dots: every trial`,
    },
    config: { font: "DejaVu Sans", legend: { labelLimit: 260 } },
    hconcat: [percentilePanel("ms (symlog scale)", groups, { width: 420, scale: "symlog", labelAngle: -20, yTitle: "ms" })],
  });
}

// ---- startup: what a container start costs ----

/** docker run's wall time and the first reply from issuing it, per system (p50/p95 bars, every trial a dot); iptables processes per start. */
function startupSpec(r: Json): TopLevelSpec {
  type S = { runMs: number[]; firstReplyMs: number[]; iptablesPerStart?: number[] } | undefined;
  const systems: [string, S][] = [
    ["tsoverlay", r.tsoverlay as S],
    ["tsoverlay -p 80", r.tsoverlayWithPort as S],
    ["Docker bridge (same host)", r.bridge as S],
    ["Docker overlay (swarm)", r.swarm as S],
  ];
  const panel = (title: string, pick: (s: NonNullable<S>) => number[] | undefined): Json =>
    percentilePanel(
      title,
      systems.map(([system, s]) => ({ label: "", system, values: (s === undefined ? undefined : pick(s)) ?? [] })),
    );
  const settings = r.settings as Json;
  return vegaLite({
    title: {
      text: `Container start-up on the lab (${String(r.date).slice(0, 10)})`,
      subtitle: `${String(settings.trials)} trials per system; dots: every trial`,
    },
    config: { font: "DejaVu Sans", legend: { labelLimit: 260 } },
    hconcat: [
      panel("docker run -d wall time (ms)", (s) => s.runMs),
      panel("docker run issued → first reply (ms)", (s) => s.firstReplyMs),
      panel("iptables processes per start + removal", (s) => s.iptablesPerStart),
    ],
  });
}

// ---- scale: 10 to 10,000 peers from simulated hosts ----

/** One bar per label and system, for figures measured once (no samples to dot). */
function barPanel(title: string, rows: Row[], yTitle: string | null = null): Json {
  return {
    title,
    ...PANEL,
    data: { values: rows },
    mark: { type: "bar" },
    encoding: {
      x: { field: "label", type: "nominal", title: null, sort: null, axis: { labelAngle: 0 } },
      xOffset: { field: "system" },
      y: { field: "value", type: "quantitative", title: yTitle },
      color: { field: "system", type: "nominal", title: null },
    },
  };
}

function scaleSpec(r: Json): TopLevelSpec {
  type S = {
    peers: number;
    programmedMs: number;
    changes: { fromIssuedMs: number[]; cpuMsPerChange: Record<string, number> };
    joins: { joinMs: number[] };
    rssKb: Record<string, number>;
  };
  const scales = r.scales as S[];
  const label = (s: S): string => s.peers.toLocaleString("en-US");
  const perHost = (pick: (s: S) => Record<string, number>, unit = 1): Row[] =>
    scales.flatMap((s) => Object.entries(pick(s)).map(([host, v]) => ({ label: label(s), system: host, value: v / unit })));
  const settings = r.settings as Json;
  return vegaLite({
    title: {
      text: `Control plane at scale on the lab (${String(r.date).slice(0, 10)})`,
      subtitle: `peers from ${String(settings.vteps)} simulated hosts; x: peers in the network; dots: every sample`,
    },
    config: { font: "DejaVu Sans", legend: { labelLimit: 260 } },
    hconcat: [
      percentilePanel(
        "one change: write → kernel (ms)",
        scales.map((s) => ({ label: `${label(s)} `, system: "tsoverlay", values: s.changes.fromIssuedMs })),
        { scale: "symlog" },
      ),
      barPanel(
        "all peers programmed (ms)",
        scales.map((s) => ({ label: label(s), system: "tsoverlay", value: s.programmedMs })),
      ),
      barPanel(
        "CPU per change (ms)",
        perHost((s) => s.changes.cpuMsPerChange),
      ),
      barPanel(
        "plugin RSS (MiB)",
        perHost((s) => s.rssKb, 1024),
      ),
      percentilePanel(
        "Join in the plugin (ms)",
        scales.map((s) => ({ label: `${label(s)} `, system: "tsoverlay", values: s.joins.joinMs })),
      ),
    ],
  });
}
