/** The support bundle's archive writer, read back by the system's `tar`. */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { tarGz } from "../../lib/tar-gz.js";

const dir = mkdtempSync(join(tmpdir(), "tso-tar-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const longFolder = `${"a".repeat(60)}/${"b".repeat(60)}`;
const longName = `${longFolder}/${"c".repeat(90)}.txt`;
const binary = Buffer.from(Array.from({ length: 1500 }, (_, i) => (i * 7) % 256));
const FILES = [
  { name: "manifest.json", data: '{"ok":true}\n' },
  { name: "empty.txt", data: "" },
  { name: "kernel/host.txt", data: "# ip -d link show\n1: lo: <LOOPBACK,UP>\n" },
  { name: "kernel/web.txt", data: "é ü — ✓\n".repeat(100) },
  { name: "exactly-512.bin", data: Buffer.alloc(512, 0x41) },
  { name: "binary.bin", data: binary, mode: 0o600 },
  { name: longName, data: "deep\n" },
];

describe("tarGz", () => {
  const archive = join(dir, "bundle.tar.gz");
  const when = new Date("2026-01-05T10:15:00Z");

  it("is a gzip'd ustar archive that tar lists: the files, each folder once before its files", () => {
    const bytes = tarGz(FILES, when);
    writeFileSync(archive, bytes);
    const listed = execFileSync("tar", ["-tzf", archive], { encoding: "utf8" }).trim().split("\n");
    expect(listed).toEqual([
      "manifest.json",
      "empty.txt",
      "kernel/",
      "kernel/host.txt",
      "kernel/web.txt",
      "exactly-512.bin",
      "binary.bin",
      `${"a".repeat(60)}/`,
      `${longFolder}/`,
      longName,
    ]);
    // Whole blocks, ending in two empty ones.
    const tar = gunzipSync(bytes);
    expect(tar.length % 512).toBe(0);
    expect(tar.subarray(-1024).every((b) => b === 0)).toBe(true);
  });

  it("extracts with tar to the same bytes, modes and time", () => {
    const out = join(dir, "x");
    mkdirSync(out);
    execFileSync("tar", ["-xzf", archive, "-C", out]);
    for (const f of FILES) {
      expect(readFileSync(join(out, f.name)), f.name).toEqual(typeof f.data === "string" ? Buffer.from(f.data) : f.data);
    }
    expect(statSync(join(out, "binary.bin")).mode & 0o777).toBe(0o600);
    expect(statSync(join(out, "kernel/host.txt")).mtime.toISOString()).toBe(when.toISOString());
    expect(statSync(join(out, "kernel")).isDirectory()).toBe(true);
  });

  it("refuses names that would leave the archive's folder, repeat, or do not fit a header", () => {
    const when0 = new Date(0);
    for (const name of ["/etc/passwd", "../x", "a/../../x", "a//b", "./a", "dir/", "", "tab\there", "ü.txt"]) {
      expect(() => tarGz([{ name, data: "x" }], when0), JSON.stringify(name)).toThrow(/archive: file name/);
    }
    expect(() => tarGz([{ name: "x".repeat(101), data: "" }], when0)).toThrow(/too long/);
    expect(() =>
      tarGz(
        [
          { name: "a", data: "" },
          { name: "a", data: "" },
        ],
        when0,
      ),
    ).toThrow(/given twice/);
  });
});
