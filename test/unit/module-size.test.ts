import { readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

// The size bound of ARCHITECTURE.md: a product module over 300 lines says why at its top.
const REPO = resolve(import.meta.dirname, "../..");
const PRODUCT = ["plugin", "driver", "proxy", "lib", "cli"];
const BOUND = 300;

function sources(dir: string): string[] {
  return readdirSync(join(REPO, dir), { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") ? [path] : [];
  });
}

describe("module size", () => {
  it(`every product module over ${BOUND} lines gives its reason in its first lines`, () => {
    const long = PRODUCT.flatMap(sources)
      .map((file) => ({ file, text: readFileSync(join(REPO, file), "utf8") }))
      .filter(({ text }) => text.split("\n").length > BOUND);
    expect(long.length).toBeGreaterThan(0); // the check looks at real files
    const unexplained = long.filter(({ text }) => !/Over 300 lines on purpose: \S/.test(text.split("\n").slice(0, 5).join("\n"))).map(({ file }) => file);
    expect(unexplained).toEqual([]);
  });
});
