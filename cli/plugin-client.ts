import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { request, type UnixReply } from "../lib/unix-http.js";

/**
 * How the CLI reaches the plugin: GET /tsoverlay/<view> on the plugin's unix
 * socket, as `curl --unix-socket` would. The plugin holds the cluster store's
 * address and credentials, so the CLI needs nothing else on a host.
 */

/** Where a host service serves (its default TSOVERLAY_SOCKETS), then where Docker keeps managed plugins' sockets. */
const DEFAULT_SOCKET = "/run/docker/plugins/tsoverlay.sock";
const MANAGED_PLUGINS_DIR = "/run/docker/plugins";
const TIMEOUT_MS = 10_000;

/** Why the CLI could not get an answer: exit status 3 (see cli/main.ts). */
export class PluginUnreachable extends Error {}

/** --socket, else $TSOVERLAY_SOCKET, else the host service's socket, else a managed plugin's (/run/docker/plugins/<id>/tsoverlay.sock). */
export function findSocket(given: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const explicit = given ?? env.TSOVERLAY_SOCKET;
  if (explicit !== undefined && explicit !== "") return explicit;
  if (existsSync(DEFAULT_SOCKET)) return DEFAULT_SOCKET;
  let dirs: string[] = [];
  try {
    dirs = readdirSync(MANAGED_PLUGINS_DIR);
  } catch {
    // no Docker plugins directory: the error below says what was looked for
  }
  for (const d of dirs) {
    const candidate = path.join(MANAGED_PLUGINS_DIR, d, "tsoverlay.sock");
    if (existsSync(candidate)) return candidate;
  }
  throw new PluginUnreachable(
    `no tsoverlay plugin socket found (looked at ${DEFAULT_SOCKET} and ${MANAGED_PLUGINS_DIR}/*/tsoverlay.sock); give one with --socket or TSOVERLAY_SOCKET`,
  );
}

/** The plugin refused the request as given (HTTP 400): the caller's mistake, in the plugin's words. */
export class PluginRefused extends Error {}

/**
 * The view's JSON. A 400 is a PluginRefused; any other error, or no answer
 * within `timeoutMs`, a PluginUnreachable; both with the plugin's words.
 */
export async function getView(socketPath: string, view: string, query: Record<string, string | undefined> = {}, timeoutMs = TIMEOUT_MS): Promise<unknown> {
  const params = new URLSearchParams(Object.entries(query).flatMap(([k, v]): [string, string][] => (v === undefined ? [] : [[k, v]])));
  const path = `/tsoverlay/${view}${params.size > 0 ? `?${params.toString()}` : ""}`;
  return call(socketPath, "GET", path, view, timeoutMs);
}

/** Runs an operator action (POST /tsoverlay/<action>); errors as for getView. */
export async function postAction(socketPath: string, action: string, timeoutMs = TIMEOUT_MS): Promise<unknown> {
  return call(socketPath, "POST", `/tsoverlay/${action}`, action, timeoutMs);
}

async function call(socketPath: string, method: "GET" | "POST", path: string, what: string, timeoutMs: number): Promise<unknown> {
  let r: UnixReply;
  try {
    r = await request(socketPath, method, path, undefined, { timeoutMs });
  } catch (e) {
    throw new PluginUnreachable(`cannot reach the tsoverlay plugin at ${socketPath}: ${unreachableWhy(e as NodeJS.ErrnoException)}`, { cause: e });
  }
  if (r.json === undefined) throw new PluginUnreachable(`the plugin at ${socketPath} answered ${what} with something that is not JSON (HTTP ${r.status})`);
  if (r.status === 200) return r.json;
  const words = pluginError(r.json) ?? r.text;
  if (r.status === 400) throw new PluginRefused(words);
  throw new PluginUnreachable(`the plugin at ${socketPath} answered HTTP ${r.status}: ${words}`);
}

/** The plugin's words in an error answer ({"Err": …}). */
function pluginError(body: unknown): string | undefined {
  const err = typeof body === "object" && body !== null ? (body as { Err?: unknown }).Err : undefined;
  return typeof err === "string" ? err : undefined;
}

/** The socket is root's only (0600), or its group's too when the plugin has TSOVERLAY_SOCKET_GROUP: say so rather than "EACCES". */
function unreachableWhy(e: NodeJS.ErrnoException): string {
  if (e.code === "EACCES") {
    return "permission denied: the plugin's socket is root's only (or also its group's, when the plugin's TSOVERLAY_SOCKET_GROUP names one): run the command as root (sudo), or as a member of that group";
  }
  return e.message;
}
