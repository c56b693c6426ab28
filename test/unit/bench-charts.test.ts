import { mkdtempSync, readFileSync, readdirSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { chartSpec, kindOf, renderFile, renderPng } from "../bench/charts.js";

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Width and height from a PNG's IHDR chunk. */
function pngSize(png: Buffer): { width: number; height: number } {
  expect(png.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
  expect(png.toString("latin1", 12, 16)).toBe("IHDR");
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

/** A small churn results file, as test/bench/churn.ts writes them. */
function churnResults(cycles: number, lost: number): Record<string, unknown> {
  return {
    benchmark: "churn",
    date: "2026-11-30T00:00:00.000Z",
    lab: { hosts: 2, docker: ["29.8.1", "29.8.1"] },
    summary: { pings: cycles * 2, firstPingSuccess: (cycles * 2 - lost) / (cycles * 2) },
    rssSeries: [
      { cycle: 0, rssKb: { h1: 80_000, h2: 81_000 } },
      { cycle: cycles - 1, rssKb: { h1: 90_000, h2: 92_000 } },
    ],
    cycles: Array.from({ length: cycles }, (_, i) => ({
      seconds: 1.5 + (i % 3) / 10,
      pings: [
        { from: "h1", to: "h2", firstOk: i >= lost, firstReplyMs: 400 + i },
        { from: "h2", to: "h1", firstOk: true, firstReplyMs: 380 + i },
      ],
    })),
  };
}

describe("bench charts", () => {
  it("draws every sample of a results file: one dot per ping, lost first pings in their own colour", () => {
    const spec = JSON.stringify(chartSpec(churnResults(10, 3)));
    expect(spec.match(/"ms":/g)).toHaveLength(20);
    expect(spec.match(/"first ping lost"/g)!.length).toBeGreaterThanOrEqual(3 + 1); // 3 pings, and the legend's domain
    expect(spec).toContain("85 % answered");
  });

  it("renders a results file to a PNG beside it, and a different file to a different picture", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tso-charts-"));
    writeFileSync(join(dir, "churn.json"), JSON.stringify(churnResults(10, 0)));
    const out = await renderFile(join(dir, "churn.json"));
    expect(out).toBe(join(dir, "churn.png"));
    const png = readFileSync(out);
    const { width, height } = pngSize(png);
    expect(width).toBeGreaterThan(600);
    expect(height).toBeGreaterThan(200);
    const other = await renderPng(churnResults(10, 5));
    expect(other.equals(png)).toBe(false);
  }, 60_000);

  it("renders each results file the benches have written (test/bench/results)", async () => {
    const files = readdirSync("test/bench/results").filter((f) => f.endsWith(".json"));
    expect(files.length).toBeGreaterThan(0);
    const kinds = new Set<string>();
    for (const f of files) {
      const results = JSON.parse(readFileSync(join("test/bench/results", f), "utf8")) as Record<string, unknown>;
      kinds.add(kindOf(results));
      const { width, height } = pngSize(await renderPng(results));
      expect(width * height, f).toBeGreaterThan(100_000);
    }
    expect([...kinds].sort()).toEqual(["churn", "convergence", "overlay", "proxy", "scale", "startup", "wireguard"]);
  }, 120_000);

  it("refuses a file that is not a results file, saying so, and writes nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tso-charts-"));
    writeFileSync(join(dir, "x.json"), JSON.stringify({ hello: 1 }));
    await expect(renderFile(join(dir, "x.json"))).rejects.toThrow(/x\.json: not a results file this project writes/);
    expect(existsSync(join(dir, "x.png"))).toBe(false);
    writeFileSync(join(dir, "y.json"), "{");
    await expect(renderFile(join(dir, "y.json"))).rejects.toThrow(/y\.json: cannot read it as JSON/);
  });
});
