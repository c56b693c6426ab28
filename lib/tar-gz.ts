/**
 * A gzip'd tar archive of a few files held in memory (POSIX ustar, as `tar
 * -xzf` reads it), for `tsoverlay support-bundle`. Regular files and the
 * folders they sit in only; no links, no long-name extensions: a name must
 * fit ustar's 100 + 155 bytes, be relative and stay inside the archive.
 */
import { gzipSync } from "node:zlib";

export interface ArchiveFile {
  /** A relative path with '/' between folders, e.g. "kernel/host.txt". */
  name: string;
  data: string | Buffer;
  /** Default 0o644. */
  mode?: number;
}

const BLOCK = 512;

/** The archive, gzip'd. Folders in the names get their own entries (mode 0755), before their first file. */
export function tarGz(files: readonly ArchiveFile[], mtime: Date): Buffer {
  const seconds = Math.floor(mtime.getTime() / 1000);
  const parts: Buffer[] = [];
  const folders = new Set<string>();
  const names = new Set<string>();
  for (const f of files) {
    checkName(f.name);
    if (names.has(f.name)) throw new Error(`archive: ${JSON.stringify(f.name)} given twice`);
    names.add(f.name);
    const segments = f.name.split("/");
    for (let i = 1; i < segments.length; i++) {
      const folder = `${segments.slice(0, i).join("/")}/`;
      if (folders.has(folder)) continue;
      folders.add(folder);
      parts.push(header(folder, 0, 0o755, seconds, "5"));
    }
    const data = typeof f.data === "string" ? Buffer.from(f.data, "utf8") : f.data;
    parts.push(header(f.name, data.length, f.mode ?? 0o644, seconds, "0"), data, Buffer.alloc(padding(data.length)));
  }
  parts.push(Buffer.alloc(2 * BLOCK)); // the end: two empty blocks
  return gzipSync(Buffer.concat(parts));
}

function checkName(name: string): void {
  const bad = (why: string): never => {
    throw new Error(`archive: file name ${JSON.stringify(name)} ${why}`);
  };
  if (name === "" || name.startsWith("/") || name.endsWith("/")) bad("must be a relative path to a file");
  if (name.split("/").some((s) => s === "" || s === "." || s === "..")) bad("has an empty, '.' or '..' part");
  if (!/^[\x20-\x7e]+$/.test(name)) bad("must be printable ASCII");
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** One ustar header block. */
function header(name: string, size: number, mode: number, mtime: number, type: "0" | "5"): Buffer {
  const h = Buffer.alloc(BLOCK);
  const [prefix, base] = splitName(name);
  h.write(base, 0, 100, "ascii");
  octal(h, 100, 8, mode);
  octal(h, 108, 8, 0); // uid
  octal(h, 116, 8, 0); // gid
  octal(h, 124, 12, size);
  octal(h, 136, 12, mtime);
  h.write(type, 156, 1, "ascii");
  h.write("ustar\0", 257, 6, "ascii");
  h.write("00", 263, 2, "ascii");
  h.write("root", 265, 32, "ascii");
  h.write("root", 297, 32, "ascii");
  h.write(prefix, 345, 155, "ascii");
  // The checksum is the sum of the header's bytes with its own field read as spaces.
  h.fill(" ", 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "ascii");
  return h;
}

/** ustar keeps a name of up to 100 bytes, or a prefix of up to 155 and a name of up to 100 split at a '/'. */
function splitName(name: string): [prefix: string, name: string] {
  if (name.length <= 100) return ["", name];
  // A folder's own trailing "/" is not where it splits.
  for (let i = name.lastIndexOf("/", name.length - 2); i > 0; i = name.lastIndexOf("/", i - 1)) {
    if (i <= 155 && name.length - i - 1 <= 100) return [name.slice(0, i), name.slice(i + 1)];
  }
  throw new Error(`archive: file name too long for a tar header: ${JSON.stringify(name)}`);
}

/** A number as ustar writes it: octal digits padded with zeros, then a NUL, filling the field. */
function octal(h: Buffer, offset: number, width: number, value: number): void {
  const digits = value.toString(8);
  if (digits.length > width - 1) throw new Error(`archive: ${value} does not fit a ${width}-byte tar field`);
  h.write(`${digits.padStart(width - 1, "0")}\0`, offset, width, "ascii");
}
