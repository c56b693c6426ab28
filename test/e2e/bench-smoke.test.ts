/**
 * The lab benchmarks cannot rot (issue 20): each runs here in its short smoke
 * mode, through `npm run bench`, on the running lab, writing its results and
 * chart to a scratch folder (the committed results stay as they are). Run on
 * the newest Docker only (test/run-all.sh): the benches do not change with it.
 * The overlay bench is not here: it brings up labs of its own at two MTUs.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { consulKeys, readLab, run } from "./support/lab.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "tso-bench-smoke-"));

async function bench(name: string, env: Record<string, string>): Promise<Record<string, unknown>> {
  const out = join(dir, `${name}.json`);
  const r = await run("bash", [join(ROOT, "test/bench/run.sh"), name], { timeoutMs: 600_000, env: { ...env, BENCH_OUT: out } });
  expect(r.code, `npm run bench -- ${name}: ${r.stderr.slice(-3000)}`).toBe(0);
  expect(existsSync(out.replace(/\.json$/, ".png")), "its chart").toBe(true);
  return JSON.parse(readFileSync(out, "utf8")) as Record<string, unknown>;
}

describe("the lab benchmarks in smoke mode", () => {
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("convergence: both orders on tsoverlay and swarm, every trial answered, store-to-kernel timed", async () => {
    const r = await bench("convergence", { BENCH_TRIALS: "2" });
    const tso = r.tsoverlay as Record<string, { samplesMs: number[]; failures?: string[] }>;
    const swarm = r.swarm as Record<string, { samplesMs: number[] }>;
    expect(tso.pingerFirst!.samplesMs).toHaveLength(2);
    expect(tso.targetFirst!.samplesMs).toHaveLength(2);
    expect(tso.storeToKernel!.samplesMs.length).toBeGreaterThan(0);
    expect(swarm.pingerFirst!.samplesMs.length + swarm.targetFirst!.samplesMs.length).toBeGreaterThan(0);
    expect((r.verdicts as unknown[]).length).toBe(4);
  }, 600_000);

  it("startup: tsoverlay (with and without a port), bridge and swarm, the iptables counter read", async () => {
    const r = await bench("startup", { BENCH_TRIALS: "2" });
    for (const k of ["tsoverlay", "tsoverlayWithPort", "bridge", "swarm"]) expect((r[k] as { runMs: number[] }).runMs, k).toHaveLength(2);
    expect((r.tsoverlay as { iptablesPerStart: number[] }).iptablesPerStart).toHaveLength(2);
    expect((r.verdicts as unknown[]).length).toBe(3);
  }, 600_000);

  it("scale: two small scales from simulated hosts, every entry programmed, every change seen in the kernel, the simulated records removed", async () => {
    const r = await bench("scale", { BENCH_SCALES: "10,50", BENCH_TRIALS: "2", BENCH_JOINS: "1", BENCH_IDLE_MS: "1000" });
    const scales = r.scales as {
      peers: number;
      tablesAtEnd: { neighbors: number; fdb: number; bridge: number };
      changes: { fromIssuedMs: number[]; lost: number };
    }[];
    expect(scales.map((s) => s.peers)).toEqual([10, 50]);
    for (const s of scales) {
      expect(s.tablesAtEnd).toEqual({ neighbors: s.peers, fdb: s.peers, bridge: s.peers });
      expect(s.changes.fromIssuedMs).toHaveLength(2);
      expect(s.changes.lost).toBe(0);
    }
    const lab = readLab();
    expect(await consulKeys(lab.hosts[0]!, "tsoverlay/v1/by-host/sim-")).toEqual([]);
  }, 600_000);

  it("churn: two cycles, every first ping answered", async () => {
    const r = await bench("churn", { BENCH_CYCLES: "2" });
    const summary = r.summary as { pings: number; firstPingSuccess: number };
    expect(summary.pings).toBeGreaterThan(0);
    expect(summary.firstPingSuccess).toBe(1);
  }, 600_000);
});
