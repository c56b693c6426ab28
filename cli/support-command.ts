/**
 * `tsoverlay support-bundle`: one .tar.gz holding what a bug report needs
 * from this host: the views the other commands show (status, doctor, peers,
 * cluster), and what only the plugin can collect (GET /tsoverlay/support):
 * its recent log lines, this host's kernel tables and the cluster store's
 * records. `manifest.json` says which parts are there and why any is not.
 *
 * A plugin that answers its status gets a bundle, ready or not, with whatever
 * else answered; one that does not answer gets none (exit 3, as every
 * command). Secrets: the plugin scrubs the values it knows (its ACL token,
 * its WireGuard private key) from every answer; here every JSON part also
 * loses any field whose name says it holds a secret (lib/redact.ts).
 */
import { hostname } from "node:os";
import type { SupportParts } from "../driver/api.js";
import { messageOf } from "../lib/errors.js";
import { redactFields } from "../lib/redact.js";
import { tarGz, type ArchiveFile } from "../lib/tar-gz.js";
import { VERSION } from "../lib/version.js";
import type { Output } from "./cluster-commands.js";
import { getView } from "./plugin-client.js";
import { printLines } from "./printable.js";

/** The support view gathers kernel tables and the whole store; peers asks every host. */
const VIEW_TIMEOUT_MS = 60_000;
const VIEWS = ["doctor", "peers", "cluster"] as const;
/** What a kernel file may be called (the plugin names them; they become paths in the archive). */
const FILE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export type PartResult = { ok: true; files: string[] } | { ok: false; error: string };

export interface Manifest {
  /** The version of this command. */
  version: string;
  /** The plugin's, from its status. */
  pluginVersion: string | null;
  host: string;
  /** When the bundle was made (UTC, ISO 8601). */
  createdAt: string;
  ready: boolean;
  /** status, doctor, peers, cluster, log, kernel, store → the files it gave, or why none. */
  parts: Record<string, PartResult>;
}

export interface Bundle {
  archive: Buffer;
  manifest: Manifest;
}

/** The support view as served (see plugin/routes/index.ts supportOf), read loosely: an older plugin has none. */
type SupportView = { log?: unknown } & Partial<SupportParts>;

/** Collects every part and makes the archive. Throws PluginUnreachable when the plugin does not answer its status. */
export async function supportBundle(socket: string, opts: { now?: Date; host?: string } = {}): Promise<Bundle> {
  const now = opts.now ?? new Date();
  const status = (await getView(socket, "status")) as { ready?: unknown; version?: unknown };
  const got = (view: string): Promise<{ ok: true; value: unknown } | { ok: false; error: string }> =>
    getView(socket, view, {}, VIEW_TIMEOUT_MS).then(
      (value) => ({ ok: true as const, value }),
      (e: unknown) => ({ ok: false as const, error: messageOf(e) }),
    );
  const [support, ...views] = await Promise.all([got("support"), ...VIEWS.map(got)]);

  const files: ArchiveFile[] = [];
  const parts: Record<string, PartResult> = {};
  const json = (name: string, value: unknown): string => {
    files.push({ name, data: `${JSON.stringify(redactFields(value), null, 2)}\n` });
    return name;
  };
  parts.status = { ok: true, files: [json("status.json", status)] };
  VIEWS.forEach((view, i) => {
    const r = views[i]!;
    parts[view] = r.ok ? { ok: true, files: [json(`${view}.json`, r.value)] } : { ok: false, error: r.error };
  });

  const s: SupportView = support.ok && typeof support.value === "object" && support.value !== null ? support.value : {};
  const missing = (what: string): PartResult => ({ ok: false, error: support.ok ? `the plugin's support view has no ${what}` : support.error });
  if (Array.isArray(s.log)) {
    const lines = s.log.filter((l): l is string => typeof l === "string");
    files.push({ name: "plugin.log", data: lines.map((l) => `${l}\n`).join("") });
    parts.log = { ok: true, files: ["plugin.log"] };
  } else parts.log = missing("log");
  parts.kernel = s.kernel === undefined ? missing("kernel tables") : kernelFiles(s.kernel, files);
  if (s.store === undefined) parts.store = missing("store records");
  else parts.store = s.store.ok ? { ok: true, files: [json("store.json", s.store.value)] } : { ok: false, error: s.store.error };

  const manifest: Manifest = {
    version: VERSION,
    pluginVersion: typeof status.version === "string" ? status.version : null,
    host: opts.host ?? hostname(),
    createdAt: now.toISOString(),
    ready: status.ready === true,
    parts,
  };
  return { archive: tarGz([{ name: "manifest.json", data: `${JSON.stringify(redactFields(manifest), null, 2)}\n` }, ...files], now), manifest };
}

/** One kernel/<name>.txt per file the plugin gave; a name that cannot be a file name fails the part. */
function kernelFiles(kernel: SupportParts["kernel"], files: ArchiveFile[]): PartResult {
  if (!kernel.ok) return { ok: false, error: kernel.error };
  if (typeof kernel.value !== "object" || kernel.value === null) return { ok: false, error: "the plugin's kernel tables are not a list of files" };
  const entries = Object.entries(kernel.value);
  const bad = entries.find(([name, text]) => !FILE_NAME_RE.test(name) || typeof text !== "string");
  if (bad !== undefined) return { ok: false, error: `the plugin named a kernel table ${JSON.stringify(bad[0])}, which is no file name` };
  const names = entries.map(([name, text]) => {
    files.push({ name: `kernel/${name}.txt`, data: text });
    return `kernel/${name}.txt`;
  });
  return { ok: true, files: names };
}

/** tsoverlay-support-<host>-<UTC time>.tar.gz, e.g. tsoverlay-support-node1-20260105T101500Z.tar.gz. */
export function defaultBundleName(host: string, now: Date): string {
  const stamp = now
    .toISOString()
    .replace(/\.\d+Z$/, "Z")
    .replace(/[-:]/g, "");
  return `tsoverlay-support-${host.replace(/[^A-Za-z0-9_.-]/g, "_")}-${stamp}.tar.gz`;
}

/** What was written where, and each part that is missing with why (each a problem: exit 1). */
export function bundleReport(b: Bundle, where: string): Output & { problems: number } {
  const failed = Object.entries(b.manifest.parts).flatMap(([part, r]) => (r.ok ? [] : [`  ${part}: ${r.error}`]));
  const count = Object.values(b.manifest.parts).reduce((n, r) => n + (r.ok ? r.files.length : 0), 1);
  const lines = [
    `wrote ${where}: ${count} files, ${b.archive.length} bytes${b.manifest.ready ? "" : " (the plugin is not ready)"}`,
    ...(failed.length === 0 ? [] : ["not in it:", ...failed]),
  ];
  return { json: { file: where, bytes: b.archive.length, ...b.manifest }, text: printLines(lines), problems: failed.length };
}
