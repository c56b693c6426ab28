/**
 * The README's benchmark figures, made from the results files
 * (`npm run bench -- readme`, readme-cli.ts).
 *
 * Design note. Each results file test/bench/results/NAME.json has one block
 * in README.md between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`: a
 * line naming the run (date, machine, lab, settings; "not recorded" where the
 * file does not say) with links to its chart and samples, then a table. Text
 * around the blocks is written by hand. test/unit/readme-figures.test.ts
 * fails when a block differs from what this module makes of the committed
 * files, so a bench rerun without regenerating, or a figure edited by hand,
 * cannot go unnoticed. Figures are read from the summaries the benches wrote;
 * ratios are computed from the figures they compare.
 */
import { basename } from "node:path";
import { kindOf, readResults, resultsFiles, RESULTS_DIR, type Json } from "./charts.js";
import { times } from "./proxy-report.js";
import { round } from "./stats.js";

type Pct = { n?: number; p50: number; p95: number; max?: number };
type Row = string[];

// ---- numbers as the README writes them ----

const MINUS = "\u2212";

/** 1,006 · 54 · 3.5 · 0.16 · −15: whole numbers as they are, fewer decimals the larger the figure. */
function num(v: number, digits = Number.isInteger(v) || Math.abs(v) >= 10 ? 0 : Math.abs(v) < 1 ? 2 : 1): string {
  const s = Math.abs(v).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  return v < 0 ? MINUS + s : s;
}
const gbits = (v: number): string => num(v, v >= 10 ? 1 : 2);
const pair = (p: Pct, unit = " ms"): string => `${num(p.p50)} / ${num(p.p95)}${unit}`;

function table(header: string[], rows: Row[]): string {
  const line = (cells: string[]): string => `|${cells.map((c) => (c === "" ? " " : ` ${c} `)).join("|")}|`;
  return [line(header), `|${header.map(() => "---").join("|")}|`, ...rows.map(line)].join("\n");
}

// ---- the run: when, on what ----

function runLine(name: string, r: Json): string {
  const meta = (r.meta ?? r) as Json;
  const m = (r.machine ?? (r.meta === undefined ? undefined : meta)) as Json | undefined;
  const date = typeof meta.date === "string" ? `${meta.date.slice(0, 10)} ${meta.date.slice(11, 16)} UTC` : "date not recorded";
  const machine =
    m === undefined
      ? "machine not recorded"
      : [
          typeof m.cpus === "number" ? `${m.cpus} vCPU` : "CPUs not recorded",
          typeof m.cpuModel === "string" ? m.cpuModel : "CPU model not recorded",
          typeof m.kernel === "string" ? `kernel ${m.kernel}` : "kernel not recorded",
        ].join(", ");
  const lab = r.lab as { hosts: number; docker: string | string[] } | undefined;
  const docker = lab === undefined ? "" : [...new Set([lab.docker].flat())].join(", ");
  const parts = [`Run ${date}`, machine, ...(lab === undefined ? [] : [`lab of ${lab.hosts} hosts, Docker ${docker}`]), ...settingsOf(r)];
  return `${parts.join("; ")}. [Chart](${RESULTS_DIR}/${name}.png), every sample in [${name}.json](${RESULTS_DIR}/${name}.json).`;
}

function settingsOf(r: Json): string[] {
  const s = (r.settings ?? {}) as Json;
  switch (kindOf(r)) {
    case "convergence":
      return [`${String(s.trials)} trials per order, pinging every ${String(s.pingIntervalMs)} ms`];
    case "startup":
      return [`${String(s.trials)} trials per system`];
    case "churn":
      return [`${String(s.cycles)} cycles, ${String(s.containersPerHostPerCycle)} containers per host per cycle`];
    case "overlay":
      return [`iperf3 ${String(s.iperfSeconds)} s, ${String(s.convergenceTrials)} convergence trials per MTU`];
    case "wireguard":
      return [`two namespaces, iperf3 ${String(s.iperfSeconds)} s, ${String(r.wireguardGo)}`];
    case "scale":
      return [`${String(s.vteps)} simulated hosts, ${String(s.changes)} single changes and ${String(s.joins)} real containers per scale`];
    case "proxy": {
      const meta = r.meta as Json;
      const dp = meta.dockerProxy as Json | undefined;
      return [
        `loopback, median of ${String(meta.rounds)} rounds, \`BENCH_PROXY_WORKERS=${String(meta.proxyWorkers)}\`, docker-proxy of ${String(dp?.package)}`,
      ];
    }
  }
}

// ---- one table per kind of results file ----

function convergenceTable(r: Json): string {
  const s = r.summary as Record<"tsoverlay" | "swarm", Record<string, Pct> | undefined>;
  const ours = s.tsoverlay!;
  const swarm = (k: string): string => (s.swarm?.[k] === undefined ? "" : pair(s.swarm[k]));
  const early = (p: Pct): string => (p.p95 < 0 ? " (before it returns)" : "");
  return table(
    ["", "tsoverlay", "Docker swarm overlay"],
    [
      ["first reply after `docker run` returned, pinger first, p50 / p95", pair(ours.pingerFirst!) + early(ours.pingerFirst!), swarm("pingerFirst")],
      ["the same, target first, p50 / p95", pair(ours.targetFirst!) + early(ours.targetFirst!), swarm("targetFirst")],
      ["store write on h1 → kernel entry on h2, p50 / p95", pair(ours.storeToKernel!), ""],
    ],
  );
}

function startupTable(r: Json): string {
  const s = r.summary as {
    runMs: Record<string, Pct | undefined>;
    firstReplyMs: Record<string, Pct | undefined>;
    plugin: Record<"createEndpoint" | "join", Pct>;
    iptablesPerStartAndRemoval: Record<"withoutPorts" | "withPort", Pct>;
  };
  const cell = (p: Pct | undefined): string => (p === undefined ? "" : pair(p));
  const toBridge = (k: string): string => (s.runMs[k] === undefined ? "" : times(s.runMs[k].p50 / s.runMs.bridge!.p50));
  const ipt = (p: Pct): string => (p.p50 === p.p95 ? num(p.p50) : `${num(p.p50)} / ${num(p.p95)} (p50 / p95)`);
  const { withoutPorts, withPort } = s.iptablesPerStartAndRemoval;
  return table(
    ["", "tsoverlay", "Docker swarm overlay", "Docker bridge (same host)"],
    [
      [
        "`docker run -d` wall time, p50 / p95",
        `${cell(s.runMs.tsoverlay)} (${pair(s.runMs.tsoverlayWithPort!, "")} with \`-p 80\`)`,
        cell(s.runMs.swarm),
        cell(s.runMs.bridge),
      ],
      ["`docker run -d` p50 against the bridge's", `${toBridge("tsoverlay")} (${toBridge("tsoverlayWithPort")} with \`-p 80\`)`, toBridge("swarm"), ""],
      [
        "`docker run` issued → first reply from the other host, p50 / p95",
        cell(s.firstReplyMs.tsoverlay),
        cell(s.firstReplyMs.swarm),
        cell(s.firstReplyMs.bridge),
      ],
      ["iptables processes per start + removal", `${ipt(withoutPorts)} (${ipt(withPort)} with \`-p 80\`)`, "", ""],
      ["CreateEndpoint / Join inside the plugin, p50", `${num(s.plugin.createEndpoint.p50)} / ${num(s.plugin.join.p50)} ms`, "", ""],
    ],
  );
}

function churnTable(r: Json): string {
  const s = r.summary as { pings: number; firstPingSuccess: number; firstReplyMs: Pct; firstPingRttMs: Pct; secondsPerCycle: { p50: number; mean: number } };
  type Counts = { host: string; pluginRssKb: number } & Record<string, number | string>;
  const before = (r.before as { hosts: Counts[]; consulKeys: number }).hosts;
  const after = (r.after as { hosts: Counts[]; consulKeys: number }).hosts;
  const growth = r.growth as Record<string, number | Record<string, number>>;
  const mb = (kb: number): string => num(kb / 1024, 0);
  const rss = before.map((b, i) => `${b.host} ${mb(b.pluginRssKb)} → ${mb(after[i]!.pluginRssKb)}`).join(", ");
  // Everything a run must leave as it found it: kernel entries, links, rules and Consul keys (not RSS or open files).
  const left = Object.values(growth).flatMap((g) =>
    typeof g === "number" ? [g] : Object.entries(g).flatMap(([k, v]) => (k === "pluginRssKb" || k === "pluginOpenFiles" ? [] : [v])),
  );
  const answered = Math.round(s.firstPingSuccess * s.pings);
  const max = (p: Pct): string => `${num(p.p50)} / ${num(p.p95)} / ${num(p.max!)} ms`;
  return table(
    ["", "tsoverlay"],
    [
      ["cross-host first pings answered", `${num(answered)} of ${num(s.pings)} (${num(round(s.firstPingSuccess * 100, 1))} %)`],
      ["first reply after `docker run` returned, p50 / p95 / max", max(s.firstReplyMs)],
      ["round trip of the first ping, p50 / p95 / max", max(s.firstPingRttMs)],
      ["seconds per cycle, p50 / mean", `${num(s.secondsPerCycle.p50, 2)} / ${num(s.secondsPerCycle.mean, 2)} s`],
      ["plugin RSS per host, before → after (MB)", rss],
      ["neighbor/FDB entries, links, iptables rules and Consul keys left over", num(left.reduce((a, b) => a + Math.abs(b), 0))],
    ],
  );
}

function scaleTable(r: Json): string {
  type S = {
    peers: number;
    programmedMs: number;
    changeFromIssued: Pct;
    cpuMsPerChange: Record<string, number>;
    bytesPerAnswer: number;
    reconcilePassMeanMs: number;
    createEndpoint: Pct;
    join: Pct;
    rssMb: Record<string, number>;
    consulBytesPerEndpoint: number;
  };
  const scales = r.summary as S[];
  const hosts = (v: Record<string, number>, unit = ""): string =>
    Object.entries(v)
      .map(([h, x]) => `${h} ${num(x)}${unit}`)
      .join(", ");
  const row = (label: string, cell: (s: S) => string): Row => [label, ...scales.map(cell)];
  return table(
    ["peers in the network", ...scales.map((s) => num(s.peers))],
    [
      row("all peers programmed after their hosts come alive", (s) => `${num(s.programmedMs)} ms`),
      row("one change: store write → kernel entry, p50 / p95", (s) => pair(s.changeFromIssued)),
      row("CPU per change (h1 programs it, h2 only receives it)", (s) => hosts(s.cpuMsPerChange, " ms")),
      row("bytes each host fetches per change", (s) => `${num(s.bytesPerAnswer / 1024)} KiB`),
      row("one reconcile pass (reads and compares the tables)", (s) => `${num(s.reconcilePassMeanMs)} ms`),
      row("CreateEndpoint / Join in the plugin, p50", (s) => `${num(s.createEndpoint.p50)} / ${num(s.join.p50)} ms`),
      row("plugin RSS", (s) => hosts(s.rssMb, " MB")),
      row("Consul bytes per endpoint (record and address claim)", (s) => num(s.consulBytesPerEndpoint)),
    ],
  );
}

function overlayTable(r: Json): string {
  type Enc = { kind: string; streams: number; gbits: number; wallSeconds: number; cpuSeconds: Record<string, number> };
  const runs = r.runs as {
    underlayMtu: number;
    throughputGbits: Record<"underlay" | "tsoverlay" | "dockerOverlay", number>;
    encryption: { runs: Enc[] };
    pluginLatencyMs: Record<"join" | "createEndpoint", Pct>;
    convergenceMs: Record<"fromDockerRun" | "fromContainerStarted", Pct>;
  }[];
  const per = (f: (run: (typeof runs)[number]) => string): string[] => runs.map(f);
  const enc = (run: (typeof runs)[number], kind: string, streams: number): Enc => run.encryption.runs.find((e) => e.kind === kind && e.streams === streams)!;
  const encrypted = (run: (typeof runs)[number]): string => {
    const [e1, p1, e8, p8] = [enc(run, "encrypted", 1), enc(run, "plain", 1), enc(run, "encrypted", 8), enc(run, "plain", 8)];
    return `${gbits(e1.gbits)} / ${gbits(e8.gbits)} against ${gbits(p1.gbits)} / ${gbits(p8.gbits)} (${times(e1.gbits / p1.gbits)} / ${times(e8.gbits / p8.gbits)})`;
  };
  const wgCores = (run: (typeof runs)[number]): string => {
    const e = enc(run, "encrypted", 1);
    return num((e.cpuSeconds.wireguardGoA! + e.cpuSeconds.wireguardGoB!) / e.wallSeconds, 2);
  };
  const t = (run: (typeof runs)[number]): Record<string, number> => run.throughputGbits;
  return table(
    ["", ...per((run) => `underlay MTU ${run.underlayMtu}`)],
    [
      ["TCP 1 stream (Gbit/s): underlay", ...per((run) => gbits(t(run).underlay!))],
      [
        "tsoverlay (to the underlay; to swarm)",
        ...per((run) => `${gbits(t(run).tsoverlay!)} (${times(t(run).tsoverlay! / t(run).underlay!)}; ${times(t(run).tsoverlay! / t(run).dockerOverlay!)})`),
      ],
      ["Docker swarm overlay (to the underlay)", ...per((run) => `${gbits(t(run).dockerOverlay!)} (${times(t(run).dockerOverlay! / t(run).underlay!)})`)],
      ["`-o encrypted` (wireguard-go) against plain, 1 / 8 streams (Gbit/s)", ...per(encrypted)],
      ["wireguard-go CPU during one encrypted stream, both hosts (cores)", ...per(wgCores)],
      [
        "CreateEndpoint / Join inside the plugin, p50 / p95",
        ...per((run) => `${pair(run.pluginLatencyMs.createEndpoint, "")}; ${pair(run.pluginLatencyMs.join)}`),
      ],
      [
        "a new container answers another host, from `docker run` / from its start, p50 / p95",
        ...per((run) => `${pair(run.convergenceMs.fromDockerRun, "")}; ${pair(run.convergenceMs.fromContainerStarted)}`),
      ],
    ],
  );
}

function wireguardTable(r: Json): string {
  type Measured = { datapath: string; streams: number; gbits: number; wireguardGoCpuSeconds: number };
  const runs = r.runs as { underlayMtu: number; runs: Measured[]; ratios: Record<"oneStream" | "eightStreams", { offloadGain: number }> }[];
  const seconds = Number((r.settings as Json).iperfSeconds);
  const at = (run: (typeof runs)[number], datapath: string, streams: number): Measured =>
    run.runs.find((m) => m.datapath === datapath && m.streams === streams)!;
  const row = (label: string, datapath: string): Row => [
    label,
    ...runs.map((run) => {
      const [one, eight] = [at(run, datapath, 1), at(run, datapath, 8)];
      const [v1, v8] = [at(run, "vxlan", 1), at(run, "vxlan", 8)];
      const ratio = datapath === "underlay" || datapath === "vxlan" ? "" : ` (${times(one.gbits / v1.gbits)} / ${times(eight.gbits / v8.gbits)})`;
      return `${gbits(one.gbits)} / ${gbits(eight.gbits)}${ratio}`;
    }),
  ];
  return table(
    ["Gbit/s, 1 / 8 streams (to VXLAN)", ...runs.map((run) => `MTU ${run.underlayMtu}`)],
    [
      row("veth, no tunnel", "underlay"),
      row("VXLAN", "vxlan"),
      row("wireguard-go carrying TCP, TUN offloads on", "wireguard"),
      row("the same, offloads off", "wireguard-no-offloads"),
      row("VXLAN inside wireguard-go (this datapath)", "vxlan-in-wireguard"),
      [
        "what the offloads are worth to wireguard-go, 1 / 8 streams",
        ...runs.map((run) => `${times(run.ratios.oneStream.offloadGain)} / ${times(run.ratios.eightStreams.offloadGain)}`),
      ],
      ["wireguard-go CPU, one stream with offloads (cores)", ...runs.map((run) => num(at(run, "wireguard", 1).wireguardGoCpuSeconds / seconds, 2))],
    ],
  );
}

function proxyTable(r: Json): string {
  type Per = Record<"dockerProxy" | "ours", number> & { kernel?: number };
  const tcp = r.tcp as Record<"single" | "reverse" | "parallel8", Per>;
  const rtt = r.rtt as Record<"tcp" | "udp", Record<"p50" | "p99", Per>>;
  const mem = r.memoryPerBinding as { bindings: number; oursBytes: number; dockerProxyBytes: number };
  const meta = r.meta as Json;
  // Runs since the kernel target was added also measure loopback DNAT with no proxy at all (the bench's own rules).
  const kernel = tcp.single.kernel !== undefined;
  const slash = (per: Per[], f: (v: number) => string): Row => [
    per.map((p) => f(p.dockerProxy)).join(" / "),
    per.map((p) => f(p.ours)).join(" / "),
    per.map((p) => times(p.ours / p.dockerProxy)).join(" / "),
    ...(kernel ? [per.map((p) => f(p.kernel!)).join(" / "), per.map((p) => times(p.kernel! / p.dockerProxy)).join(" / ")] : []),
  ];
  const kib = (bytes: number): string => `${num(bytes / 1024, bytes < 100 * 1024 ? 1 : 0)} KiB`;
  return table(
    ["", "docker-proxy", "tsoverlay", "ratio", ...(kernel ? ["kernel DNAT on loopback (bench only)", "ratio"] : [])],
    [
      ["TCP 1 stream / reverse / 8 streams (Gbit/s)", ...slash([tcp.single, tcp.reverse, tcp.parallel8], gbits)],
      [`new connections/s (${String(meta.concurrency)} loops, 64 B echo)`, ...slash([r.connectsPerSec as Per], (v) => num(v, 0))],
      ["TCP RTT p50 / p99 (µs)", ...slash([rtt.tcp.p50, rtt.tcp.p99], (v) => num(v, 0))],
      ["UDP RTT p50 / p99 (µs)", ...slash([rtt.udp.p50, rtt.udp.p99], (v) => num(v, 0))],
      [`UDP requests/s (${String(meta.concurrency)} flows)`, ...slash([r.udpRequestsPerSec as Per], (v) => num(v, 0))],
      [
        `memory per published port (${num(mem.bindings)} ports)`,
        kib(mem.dockerProxyBytes),
        kib(mem.oursBytes),
        times(mem.oursBytes / mem.dockerProxyBytes),
        ...(kernel ? ["", ""] : []),
      ],
    ],
  );
}

const TABLES = {
  convergence: convergenceTable,
  startup: startupTable,
  churn: churnTable,
  overlay: overlayTable,
  wireguard: wireguardTable,
  proxy: proxyTable,
  scale: scaleTable,
};

/** The block of one results file: its run line and its table. */
export function figures(name: string, results: Json): string {
  return `${runLine(name, results)}\n\n${TABLES[kindOf(results)](results)}`;
}

/** Every results file's block, by name (the file's name without .json). */
export function generatedBlocks(dir = RESULTS_DIR): Map<string, string> {
  return new Map(
    resultsFiles(dir).map((file) => {
      const name = basename(file, ".json");
      try {
        return [name, figures(name, readResults(file))];
      } catch (err) {
        throw new Error(`${file}: cannot make the README's figures: ${(err as Error).message}`, { cause: err });
      }
    }),
  );
}

const BLOCK = /<!-- bench:([\w.-]+) -->\n(?:([\s\S]*?)\n)?<!-- \/bench:\1 -->/g;

/** The generated blocks a README holds now, by name. */
export function blocksIn(readme: string): Map<string, string> {
  return new Map([...readme.matchAll(BLOCK)].map((m) => [m[1]!, m[2] ?? ""]));
}

/** The README with each block replaced by the one given; a block it lacks, or one no results file has, is an error. */
export function withBlocks(readme: string, blocks: Map<string, string>): string {
  const present = blocksIn(readme);
  const missing = [...blocks.keys()].filter((name) => !present.has(name));
  const orphans = [...present.keys()].filter((name) => !blocks.has(name));
  if (missing.length > 0 || orphans.length > 0) {
    throw new Error(
      `README.md and the results files disagree: ${[
        ...missing.map((n) => `no <!-- bench:${n} --> block for ${n}.json`),
        ...orphans.map((n) => `a bench:${n} block without ${n}.json`),
      ].join("; ")}`,
    );
  }
  return readme.replace(BLOCK, (_, name: string) => `<!-- bench:${name} -->\n${blocks.get(name)!}\n<!-- /bench:${name} -->`);
}
