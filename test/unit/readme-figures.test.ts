import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { blocksIn, generatedBlocks, withBlocks } from "../bench/readme.js";

// The README's benchmark tables are written by `npm run bench -- readme` from test/bench/results:
// a bench rerun without regenerating them, or a figure edited by hand, fails here.
const README = readFileSync("README.md", "utf8");
const generated = generatedBlocks();

describe("the README's benchmark figures", () => {
  it.each([...generated.keys()])("README.md shows %s.json as `npm run bench -- readme` writes it", (name) => {
    expect(blocksIn(README).get(name), `README.md's bench:${name} block is not what test/bench/results/${name}.json makes: run npm run bench -- readme`).toBe(
      generated.get(name),
    );
  });

  it("has a block for every results file and none without one", () => {
    expect(generated.size).toBeGreaterThan(0);
    expect(withBlocks(README, generated)).toBe(README);
  });

  it("notices a figure of a results file that the README does not show", () => {
    const dir = mkdtempSync(join(tmpdir(), "tso-readme-"));
    const startup = JSON.parse(readFileSync("test/bench/results/startup.json", "utf8")) as { summary: { runMs: { tsoverlay: { p50: number } } } };
    startup.summary.runMs.tsoverlay.p50 = 9_876;
    writeFileSync(join(dir, "startup.json"), JSON.stringify(startup));
    const block = generatedBlocks(dir).get("startup")!;
    expect(block).toContain("9,876 /");
    expect(block).not.toBe(blocksIn(README).get("startup"));
  });

  it("names a results file without a block, and a block without a results file", () => {
    const dir = mkdtempSync(join(tmpdir(), "tso-readme-"));
    copyFileSync("test/bench/results/wireguard.json", join(dir, "wireguard-mtu.json"));
    const blocks = generatedBlocks(dir);
    expect(() => withBlocks(README, blocks)).toThrow(/no <!-- bench:wireguard-mtu --> block for wireguard-mtu\.json/);
    expect(() => withBlocks(README, blocks)).toThrow(/a bench:churn block without churn\.json/);
  });

  it("reads a block that was emptied and fills it again", () => {
    const emptied = README.replace(/(<!-- bench:churn -->\n)[\s\S]*?\n(<!-- \/bench:churn -->)/, "$1$2");
    expect(blocksIn(emptied).get("churn")).toBe("");
    expect(withBlocks(emptied, generated)).toBe(README);
  });
});
