import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { eventually } from "../../support/eventually.js";

const execFileP = promisify(execFile);

export const LAB_JSON = "/run/tso-lab/lab.json";
/** Written first by `lab up`: a lab (perhaps half made) is there. */
export const LAB_ENV = "/run/tso-lab/lab.env";
export const LAB_SCRIPT = new URL("../../lab/lab.sh", import.meta.url).pathname;
/** The CLI the lab uses for every daemon version (lab.json says which; Debian's before the lab existed). */
export function dockerCli(): string {
  try {
    return readLab().dockerCli ?? "/usr/bin/docker";
  } catch {
    return "/usr/bin/docker";
  }
}

export interface LabHost {
  name: string;
  netns: string;
  addr: string;
  dockerSock: string;
  pluginsDir: string;
  dataDir: string;
  /** The daemon's persistent mount namespace (a private /run; the plugin's propagated mount lives in it). */
  mntns: string;
  dockerVersion: string;
  dockerdPid: number;
  consulPid: number;
  /** What the host's plugin gets through its consul-tls mount: ca.pem, client.pem, client-key.pem and its ACL token. */
  consulDir: string;
}

export interface Lab {
  mtu: number;
  outside: { netns: string; addr: string };
  underlayRouter: string;
  /** The namespace holding the underlay bridge (its ports are named after the hosts: h1, h2…). */
  underlayNetns: string;
  pluginName: string;
  /** The lab's registry (host:port) and the plugin reference every host installed from it. */
  registry: string;
  pluginRef: string;
  /** The plugin as plugin-build.sh laid it out (config.json, rootfs/). */
  pluginDir: string;
  testImage: string;
  consulBin: string;
  /** The docker CLI (one version for every daemon). */
  dockerCli?: string;
  /** The lab's Docker version: "29", "28" or "20.10". */
  docker?: string;
  consul: { name: string; netns: string; addr: string; pid: number }[];
  /** How to reach the agents' HTTPS API (the lab's CA, a client certificate, the operator's token). */
  consulApi: { url: string; ca: string; cert: string; key: string; managementTokenFile: string };
  hosts: LabHost[];
}

export function readLab(): Lab {
  return JSON.parse(readFileSync(LAB_JSON, "utf8")) as Lab;
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command, never throwing on a non-zero exit: tests assert on the Run. */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; input?: string; env?: Record<string, string> } = {}): Promise<Run> {
  const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], env: opts.env === undefined ? process.env : { ...process.env, ...opts.env } });
  const done = collect(child, opts.timeoutMs ?? 120_000);
  child.stdin.on("error", () => undefined); // a command that exits without reading its input
  child.stdin.end(opts.input ?? "");
  return done;
}

/** Gathers a started child's output until it closes; killed after timeoutMs. */
export function collect(child: ChildProcess, timeoutMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** `docker` against one lab host's daemon. */
export function docker(host: LabHost, args: string[], opts: { timeoutMs?: number } = {}): Promise<Run> {
  return run(dockerCli(), ["-H", `unix://${host.dockerSock}`, ...args], opts);
}

/** A command in a lab namespace's network (the root mount namespace). */
export function inNetns(netns: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<Run> {
  return run("nsenter", [`--net=/run/netns/${netns}`, ...args], opts);
}

export async function lines(cmd: string, args: string[]): Promise<string[]> {
  const { stdout } = await execFileP(cmd, args).catch(() => ({ stdout: "" }));
  return stdout.split("\n").filter((l) => l.length > 0);
}

/**
 * HTTP against a host's local Consul agent, from inside that host's namespace,
 * over TLS with the lab's client certificate, as the lab's operator (the
 * management token) unless `opts.tokenFile` names another token.
 */
export async function consulHttp(
  host: LabHost,
  method: string,
  path: string,
  body?: string,
  opts: { tokenFile?: string; timeoutMs?: number } = {},
): Promise<Run> {
  const api = readLab().consulApi;
  const token = readFileSync(opts.tokenFile ?? api.managementTokenFile, "utf8").trim();
  const args = [
    "curl",
    "-sS",
    "--fail-with-body",
    ...(opts.timeoutMs === undefined ? [] : ["-m", String(opts.timeoutMs / 1000)]),
    "--cacert",
    api.ca,
    "--cert",
    api.cert,
    "--key",
    api.key,
    "-H",
    "@-",
    "-X",
    method,
    `${api.url}${path}`,
  ];
  // The token goes on stdin (curl -H @-), not on a command line that `ps` shows; a body, when there is one, follows as a file.
  const input = `X-Consul-Token: ${token}\n`;
  if (body !== undefined) {
    const file = join(tmpdir(), `tso-consul-body-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`);
    writeFileSync(file, body, { mode: 0o600 });
    try {
      return await run("nsenter", [`--net=/run/netns/${host.netns}`, ...args, "--data-binary", `@${file}`], { input });
    } finally {
      rmSync(file, { force: true });
    }
  }
  return run("nsenter", [`--net=/run/netns/${host.netns}`, ...args], { input });
}

/** The words the plugin uses for the lab's Consul agent ("https://127.0.0.1:8501"), as a pattern. */
export function consulAtPattern(): string {
  return readLab().consulApi.url.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Runs `docker` and fails the test with its stderr when it exits non-zero. */
export async function dockerOk(host: LabHost, args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  const r = await docker(host, args, opts);
  if (r.code !== 0) throw new Error(`docker ${args.join(" ")} on ${host.name} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout.trim();
}

/**
 * The plugin's run directory as its daemon sees it: config.json makes it the
 * plugin's propagatedMount, so the per-network namespaces mounted there live
 * on in the daemon's mount namespace when the plugin process dies.
 */
export async function pluginRunDir(host: LabHost): Promise<string> {
  const id = (await docker(host, ["plugin", "inspect", "-f", "{{.Id}}", readLab().pluginName])).stdout.trim();
  return `${host.dataDir}/docker/plugins/${id}/propagated-mount`;
}

/** A command inside one of a host's overlay network namespaces (they live in its dockerd's mount namespace). */
export async function inOverlayNs(host: LabHost, vni: number, args: string[]): Promise<Run> {
  const dir = await pluginRunDir(host);
  return run("nsenter", [`--mount=${host.mntns}`, "nsenter", `--net=${dir}/netns/vni-${vni}`, ...args]);
}

/** The plugin process serving a host: the one whose network namespace is that host's. */
export async function pluginPid(host: LabHost): Promise<number | undefined> {
  const netnsIno = statSync(`/run/netns/${host.netns}`).ino;
  for (const pid of await lines("pgrep", ["-f", "dist/plugin/main.js"])) {
    try {
      if (readlinkSync(`/proc/${pid}/ns/net`) === `net:[${netnsIno}]`) return Number(pid);
    } catch {
      // exited meanwhile
    }
  }
  return undefined;
}

export async function consulGetJson<T>(host: LabHost, key: string): Promise<T | undefined> {
  const r = await consulHttp(host, "GET", `/v1/kv/${key}?raw`);
  if (r.code !== 0) return undefined;
  return JSON.parse(r.stdout) as T;
}

export async function consulKeys(host: LabHost, prefix: string): Promise<string[]> {
  const r = await consulHttp(host, "GET", `/v1/kv/${prefix}?keys`);
  if (r.code !== 0) return [];
  return JSON.parse(r.stdout) as string[];
}

/** `eventually` with the lab's argument order, kept for its many call sites. */
export function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, everyMs = 50): Promise<T> {
  return eventually(what, probe, { timeoutMs, everyMs });
}

/**
 * What the lab made that is still there: its namespaces, processes (the ones
 * in `pids`, and any whose command line names a lab path), mounts, cgroups and
 * directories. Empty when the lab is fully down.
 */
function readProc(path: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return "";
  }
}

export async function labLeftovers(pids: ReadonlySet<string> = new Set()): Promise<string[]> {
  const left: string[] = [];
  const netns = (await lines("ip", ["netns", "list"])).filter((l) => /^tso-/.test(l));
  if (netns.length > 0) left.push(`namespaces: ${netns.join(", ")}`);
  // PIDs wrap (pid_max is 32768 here) and a long run starts thousands of processes: a number the lab
  // recorded counts as still running only while it is still a lab daemon, not a process that reused it.
  const alive = [...pids].filter((p) => /^(consul|dockerd)$/.test(readProc(`/proc/${p}/comm`)));
  if (alive.length > 0) left.push(`lab pids still running: ${alive.join(", ")}`);
  const byPath = (await lines("pgrep", ["-af", "tso-lab/"])).filter((l) => !/\bpgrep\b/.test(l));
  if (byPath.length > 0) left.push(`processes with lab paths: ${byPath.join("; ")}`);
  const mounts = (await lines("findmnt", ["-rn", "-o", "TARGET"])).filter((m) => m.includes("tso-lab"));
  if (mounts.length > 0) left.push(`mounts: ${mounts.join(", ")}`);
  const cgroups = await lines("find", ["/sys/fs/cgroup", "-mindepth", "1", "-maxdepth", "2", "-type", "d", "-name", "tso-h*"]);
  if (cgroups.length > 0) left.push(`cgroups: ${cgroups.join(", ")}`);
  for (const dir of ["/run/tso-lab", "/var/lib/tso-lab"]) if (existsSync(dir)) left.push(`directory ${dir}`);
  return left;
}
