/**
 * The throwaway network namespace of `npm run bench -- proxy` and every process the benchmark
 * starts in it. Each child is tracked by PID so `destroy()` (also called from a signal handler)
 * kills exactly what this run started, then deletes the namespace.
 *
 * Commands enter the namespace with `nsenter --net=…`, which execs the command: the tracked PID
 * is the command itself (docker-proxy, iperf3, node), not a wrapper.
 */
import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import { closeSync, constants, existsSync, openSync, unlinkSync } from "node:fs";
import net from "node:net";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { collect, run, type Run } from "../e2e/support/lab.js";

export const DOCKER_PROXY = "/usr/sbin/docker-proxy";
/** vite-node runs the TypeScript helpers without a build; started as `node vite-node.mjs` so its PID is the script's. */
const VITE_NODE = new URL("../../node_modules/vite-node/vite-node.mjs", import.meta.url).pathname;
const REPO = new URL("../..", import.meta.url).pathname;

export class BenchNetns {
  private readonly children = new Set<ChildProcess>();

  constructor(readonly name: string) {}

  get path(): string {
    return `/run/netns/${this.name}`;
  }

  /** A fresh namespace with lo up; a leftover of an aborted run of the same name is replaced. */
  async create(): Promise<void> {
    if (existsSync(this.path)) await run("ip", ["netns", "del", this.name]);
    await mustRun("ip", ["netns", "add", this.name]);
    await mustRun("ip", ["-n", this.name, "link", "set", "lo", "up"]);
    // Tens of thousands of short connections per run: keep clear of listening ports (< 10000).
    await mustRun("nsenter", [`--net=${this.path}`, "sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65535"]);
  }

  /** Starts a tracked process in the namespace. */
  spawn(cmd: string, args: string[], stdio: StdioOptions = ["ignore", "pipe", "pipe"]): ChildProcess {
    const child = spawn("nsenter", [`--net=${this.path}`, cmd, ...args], { stdio, cwd: REPO });
    this.children.add(child);
    child.on("exit", () => this.children.delete(child));
    return child;
  }

  /** A TypeScript helper of test/bench in the namespace. */
  spawnScript(script: string, args: string[], opts: { stdio?: StdioOptions; nodeFlags?: string[] } = {}): ChildProcess {
    return this.spawn("node", [...(opts.nodeFlags ?? []), VITE_NODE, `test/bench/${script}`, ...args], opts.stdio ?? ["ignore", "pipe", "pipe"]);
  }

  /** Runs a command in the namespace to completion (killed after timeoutMs). */
  exec(cmd: string, args: string[], timeoutMs: number): Promise<Run> {
    return collect(this.spawn(cmd, args), timeoutMs);
  }

  execScript(script: string, args: string[], timeoutMs: number): Promise<Run> {
    return collect(this.spawnScript(script, args), timeoutMs);
  }

  /** Kills every process this run started (by PID), waits for them, deletes the namespace. */
  async destroy(): Promise<void> {
    const exits = [...this.children].map(
      (c) => new Promise((resolve) => (c.exitCode !== null || c.signalCode !== null ? resolve(0) : c.once("exit", resolve))),
    );
    for (const c of this.children) if (c.pid !== undefined) stop(c.pid);
    await Promise.all(exits);
    if (existsSync(this.path)) await run("ip", ["netns", "del", this.name]);
  }
}

export async function mustRun(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

function stop(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** Line-at-a-time reader of a child's stdout, for the JSON-line protocols of the helpers. */
export class Lines {
  private readonly queued: string[] = [];
  private readonly waiting: ((line: string | undefined) => void)[] = [];
  private ended = false;

  constructor(stream: Readable) {
    const rl = createInterface({ input: stream });
    rl.on("line", (l) => {
      const w = this.waiting.shift();
      if (w) w(l);
      else this.queued.push(l);
    });
    rl.on("close", () => {
      this.ended = true;
      for (const w of this.waiting.splice(0)) w(undefined);
    });
  }

  /** The next line that matches `re`; fails on EOF or after timeoutMs. */
  async until(re: RegExp, timeoutMs: number, what: string): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = await this.next(deadline - Date.now());
      if (line === undefined) throw new Error(`${what}: no line matching ${re} (exited or timed out)`);
      if (re.test(line)) return line;
    }
  }

  private next(timeoutMs: number): Promise<string | undefined> {
    const queued = this.queued.shift();
    if (queued !== undefined || this.ended) return Promise.resolve(queued);
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => {
          this.waiting.splice(this.waiting.indexOf(done), 1);
          resolve(undefined);
        },
        Math.max(0, timeoutMs),
      );
      const done = (l: string | undefined): void => {
        clearTimeout(timer);
        resolve(l);
      };
      this.waiting.push(done);
    });
  }
}

export interface DockerProxySpec {
  proto: "tcp" | "udp";
  hostPort: number;
  containerIp: string;
  containerPort: number;
}

/** FIFOs for startDockerProxy, made with one mkfifo however many there are. */
export async function makeFifos(paths: string[]): Promise<void> {
  await mustRun("mkfifo", paths);
}

/**
 * Starts docker-proxy as dockerd 20.10 does: fd 3 is the write end of a pipe on which it reports
 * "0\n" (listening) or "1\n<error>"; dockerd waits up to 16 s for it. Node has no pipe(2), so
 * the pipe is a FIFO (made by makeFifos) whose name is unlinked once both ends are open.
 */
export async function startDockerProxy(ns: BenchNetns, spec: DockerProxySpec, fifo: string): Promise<ChildProcess> {
  const readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const writeFd = openSync(fifo, constants.O_WRONLY);
  unlinkSync(fifo);
  const args = [
    "-proto",
    spec.proto,
    "-host-ip",
    "0.0.0.0",
    "-host-port",
    String(spec.hostPort),
    "-container-ip",
    spec.containerIp,
    "-container-port",
    String(spec.containerPort),
  ];
  let child: ChildProcess;
  try {
    child = ns.spawn(DOCKER_PROXY, args, ["ignore", "ignore", "ignore", writeFd]);
  } finally {
    closeSync(writeFd);
  }
  const status = await readStatus(readFd, 16_000);
  if (status !== "0\n") {
    if (child.pid !== undefined) stop(child.pid);
    throw new Error(`docker-proxy ${args.join(" ")}: ${status === undefined ? "no status within 16 s" : JSON.stringify(status)}`);
  }
  return child;
}

/** Everything written to the status pipe until the writer closes it (or the timeout). */
function readStatus(fd: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const pipe = new net.Socket({ fd, readable: true, writable: false });
    let text = "";
    const timer = setTimeout(() => {
      pipe.destroy();
      resolve(undefined);
    }, timeoutMs);
    pipe.on("data", (d: Buffer) => (text += d.toString()));
    pipe.on("error", () => undefined);
    pipe.on("close", () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}
