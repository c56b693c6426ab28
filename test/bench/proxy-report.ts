/** Ratios, targets and the printed table of `npm run bench -- proxy`. */
import { round } from "./stats.js";

/** `kernel`: no proxy process, DNAT of the loopback port in nat OUTPUT (Docker's --userland-proxy=false path, proxy-kernel.ts). */
export type Target = "direct" | "dockerProxy" | "ours" | "kernel";
export type PerTarget<T> = Record<Target, T>;

export interface Rate {
  perSec: number;
  errors?: number;
  lost?: number;
}

export interface Rtt {
  p50Us: number;
  p99Us: number;
  lost?: number;
}

export interface Measured {
  tcp: { single: PerTarget<number>; reverse: PerTarget<number>; parallel8: PerTarget<number> };
  connects: PerTarget<Rate>;
  tcpRtt: PerTarget<Rtt>;
  udpRtt: PerTarget<Rtt>;
  udpRps: PerTarget<Rate>;
  memory: { oursBytes: number; dockerProxyBytes: number; dockerProxyPssBytes: number };
}

/** One line of the table; `ratio` is ours / docker-proxy (and kernel / docker-proxy), compared with `goal`. */
export interface Row {
  key: string;
  label: string;
  unit: string;
  values: { direct?: number; dockerProxy: number; ours: number; kernel?: number };
  better: "higher" | "lower";
  goal: number;
}

export function pick<T, K extends keyof T>(r: PerTarget<T>, key: K): PerTarget<T[K]> {
  return { direct: r.direct[key], dockerProxy: r.dockerProxy[key], ours: r.ours[key], kernel: r.kernel[key] };
}

export function rows(m: Measured): Row[] {
  const faster = (key: string, label: string, unit: string, values: PerTarget<number>): Row => ({ key, label, unit, values, better: "higher", goal: 1 });
  const quicker = (key: string, label: string, values: PerTarget<number>): Row => ({ key, label, unit: "µs", values, better: "lower", goal: 1 });
  const kib = (bytes: number): number => round(bytes / 1024, 1);
  const memory = (key: string, label: string, dockerProxyBytes: number): Row => ({
    key,
    label,
    unit: "KiB",
    values: { dockerProxy: kib(dockerProxyBytes), ours: kib(m.memory.oursBytes) },
    better: "lower",
    goal: 1 / 50,
  });
  return [
    faster("tcp.single", "TCP 1 stream, client→server", "Gbit/s", m.tcp.single),
    faster("tcp.reverse", "TCP 1 stream, server→client (-R)", "Gbit/s", m.tcp.reverse),
    faster("tcp.parallel8", "TCP 8 streams (-P 8)", "Gbit/s", m.tcp.parallel8),
    faster("connectsPerSec", "new connections, 50 loops", "/s", pick(m.connects, "perSec")),
    quicker("rtt.tcp.p50", "TCP RTT p50, 64 B", pick(m.tcpRtt, "p50Us")),
    quicker("rtt.tcp.p99", "TCP RTT p99, 64 B", pick(m.tcpRtt, "p99Us")),
    quicker("rtt.udp.p50", "UDP RTT p50, 64 B", pick(m.udpRtt, "p50Us")),
    quicker("rtt.udp.p99", "UDP RTT p99, 64 B", pick(m.udpRtt, "p99Us")),
    faster("udpRequestsPerSec", "UDP requests, 50 flows", "/s", pick(m.udpRps, "perSec")),
    memory("memoryPerBinding", "memory per binding (dp: system)", m.memory.dockerProxyBytes),
    memory("memoryPerBinding.pss", "memory per binding (dp: Σ Pss)", m.memory.dockerProxyPssBytes),
  ];
}

const ratio = (r: Row, of: "ours" | "kernel" = "ours"): number => (r.values[of] ?? Number.NaN) / r.values.dockerProxy;
const met = (r: Row, of: "ours" | "kernel" = "ours"): boolean => (r.better === "higher" ? ratio(r, of) >= r.goal : ratio(r, of) <= r.goal);

function goalText(r: Row): string {
  const g = r.goal >= 1 ? r.goal.toFixed(1) : `1/${Math.round(1 / r.goal)}`;
  return `${r.better === "higher" ? "≥" : "≤"} ${g}×`;
}

export interface TargetOutcome {
  ratio: number;
  target: string;
  met: boolean;
  /** The kernel path's ratio to docker-proxy, against the same target (rows it has a figure for). */
  kernel?: { ratio: number; met: boolean };
}

export function targetsOf(table: Row[]): Record<string, TargetOutcome> {
  return Object.fromEntries(
    table.map((r) => {
      const kernel = r.values.kernel === undefined ? {} : { kernel: { ratio: round(ratio(r, "kernel"), 4), met: met(r, "kernel") } };
      return [r.key, { ratio: round(ratio(r), 4), target: goalText(r), met: met(r), ...kernel }];
    }),
  );
}

function num(v: number | undefined): string {
  if (v === undefined) return "–";
  const digits = v < 10 ? 2 : v < 100 ? 1 : 0;
  return v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** A ratio as the tables print it: 1.50×, 0.046×. */
export function times(v: number): string {
  return `${v < 0.1 ? v.toFixed(3) : v.toFixed(2)}×`;
}

export function printTable(table: Row[], heading: string): void {
  const header = ["metric", "unit", "direct", "docker-proxy", "ours", "kernel", "ours/dp", "ours/direct", "kernel/dp", "target", "ours", "kernel"];
  const lines = table.map((r) => [
    r.label,
    r.unit,
    num(r.values.direct),
    num(r.values.dockerProxy),
    num(r.values.ours),
    num(r.values.kernel),
    times(ratio(r)),
    r.values.direct === undefined ? "–" : times(r.values.ours / r.values.direct),
    r.values.kernel === undefined ? "–" : times(ratio(r, "kernel")),
    goalText(r),
    met(r) ? "met" : "NOT met",
    r.values.kernel === undefined ? "–" : met(r, "kernel") ? "met" : "NOT met",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const left = (i: number): boolean => i < 2 || i >= header.length - 2;
  const format = (cells: string[]): string =>
    cells
      .map((c, i) => (left(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join("  ")
      .trimEnd();
  console.log(heading);
  console.log(format(header));
  for (const l of lines) console.log(format(l));
}
