import { readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

// The size bound of ARCHITECTURE.md: a product module over 300 lines opens with a design note
// saying what it holds as one unit and why it is not split. A test cannot judge the reason;
// it checks that there is one in prose: a block comment that starts before any code, within
// the first NOTE_WITHIN lines, and has at least NOTE_WORDS words. A one-line label does not pass.
const REPO = resolve(import.meta.dirname, "../..");
const PRODUCT = ["plugin", "driver", "proxy", "lib", "cli"];
const BOUND = 300;
const NOTE_WITHIN = 15;
const NOTE_WORDS = 60;

function sources(dir: string): string[] {
  return readdirSync(join(REPO, dir), { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") ? [path] : [];
  });
}

/** The text of the block comment the module opens with (blank lines and `//` lines may come first), or undefined. */
function openingNote(text: string): string | undefined {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => !/^\s*(\/\/.*)?$/.test(l));
  if (start < 0 || start >= NOTE_WITHIN || !lines[start]!.trimStart().startsWith("/*")) return undefined;
  const end = lines.findIndex((l, i) => i >= start && l.includes("*/"));
  return end < 0 ? undefined : lines.slice(start, end + 1).join("\n");
}

function explainsItself(text: string): boolean {
  const note = openingNote(text);
  return note !== undefined && (note.match(/[A-Za-z][A-Za-z'’-]*/g) ?? []).length >= NOTE_WORDS;
}

describe("module size", () => {
  it(`every product module over ${BOUND} lines opens with a design note`, () => {
    const long = PRODUCT.flatMap(sources)
      .map((file) => ({ file, text: readFileSync(join(REPO, file), "utf8") }))
      .filter(({ text }) => text.split("\n").length > BOUND);
    expect(long.length).toBeGreaterThan(0); // the check looks at real files
    expect(long.filter(({ text }) => !explainsItself(text)).map(({ file }) => file)).toEqual([]);
  });

  it("tells a note from a label", () => {
    const code = Array.from({ length: BOUND + 1 }, (_, i) => `export const x${i} = ${i};`).join("\n");
    const prose = Array.from({ length: NOTE_WORDS }, () => "word").join(" ");
    expect(explainsItself(code)).toBe(false);
    expect(explainsItself(`// Over 300 lines on purpose: one thing.\n${code}`)).toBe(false);
    expect(explainsItself(`/** Over 300 lines on purpose: one thing. */\n${code}`)).toBe(false);
    expect(explainsItself(`${code.split("\n")[0]}\n/**\n * ${prose}\n */\n${code}`)).toBe(false);
    expect(explainsItself(`${"//\n".repeat(NOTE_WITHIN)}/**\n * ${prose}\n */\n${code}`)).toBe(false);
    expect(explainsItself(`/**\n * ${prose}\n */\n${code}`)).toBe(true);
    expect(explainsItself(`// a line first\n\n/**\n * ${prose}\n */\n${code}`)).toBe(true);
  });
});
