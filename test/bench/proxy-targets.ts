/**
 * The two proxies of `npm run bench -- proxy` as the benchmark drives them: our ProxyManager in
 * its host process (proxy-host.ts), batches of docker-proxy processes, and the memory each
 * needs for a set of published ports.
 */
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Binding } from "../../proxy/index.js";
import { Lines, makeFifos, startDockerProxy, type BenchNetns, type DockerProxySpec } from "./proxy-lab.js";
import { pss, settledMemAvailable, threads } from "./proxy-memory.js";

/** proxy-host.ts in the namespace, spoken to in JSON lines. */
export class OurProxy {
  private constructor(
    private readonly child: ChildProcess,
    private readonly lines: Lines,
  ) {}

  /** `workers`: accept worker processes besides the host (proxy/accept-workers.ts). */
  static async start(ns: BenchNetns, workers = 0): Promise<OurProxy> {
    const child = ns.spawnScript("proxy-host.ts", [String(workers)], { stdio: ["pipe", "pipe", "inherit"], nodeFlags: ["--expose-gc"] });
    const lines = new Lines(child.stdout!);
    await lines.until(/"ready"/, 60_000, "proxy host");
    return new OurProxy(child, lines);
  }

  get pid(): number {
    return this.child.pid!;
  }

  async add(bindings: Binding[]): Promise<void> {
    await this.call({ add: bindings });
  }

  /** RSS and JS heap in use after a forced gc, as the process itself reports them. */
  memory(): Promise<{ rss: number; heapUsed: number }> {
    return this.call({ rss: true });
  }

  /** Ends its stdin: it closes every binding and exits. */
  async stop(): Promise<void> {
    const exited = new Promise((resolve) => (this.child.exitCode !== null ? resolve(0) : this.child.once("exit", resolve)));
    this.child.stdin!.end();
    await exited;
  }

  private async call<T>(cmd: object): Promise<T> {
    this.child.stdin!.write(JSON.stringify(cmd) + "\n");
    const reply = JSON.parse(await this.lines.until(/^\{/, 120_000, "proxy host")) as T & { error?: string };
    if (reply.error !== undefined) throw new Error(`proxy host: ${reply.error}`);
    return reply;
  }
}

/** Starts docker-proxies `parallel` at a time; the handshake on fd 3 dominates each start. */
export async function startDockerProxies(ns: BenchNetns, specs: DockerProxySpec[], fifoDir: string, parallel = 8): Promise<ChildProcess[]> {
  const fifos = specs.map((s) => join(fifoDir, `${s.proto}-${s.hostPort}`));
  await makeFifos(fifos);
  const procs: ChildProcess[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < specs.length; i = next++) procs.push(await startDockerProxy(ns, specs[i]!, fifos[i]!));
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return procs;
}

/** SIGINT, as dockerd stops a proxy, and wait until all have exited. */
async function stopDockerProxies(procs: ChildProcess[]): Promise<void> {
  const exits = procs.map((p) => new Promise((resolve) => (p.exitCode !== null || p.signalCode !== null ? resolve(0) : p.once("exit", resolve))));
  for (const p of procs) p.kill("SIGINT");
  await Promise.all(exits);
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

export interface OurMemory {
  rssBefore: number;
  rssAfter: number;
  rssGrowth: number;
  pssGrowth: number;
  /** The part of the growth that is JS heap (the rest: libuv handles, malloc, heap slack). */
  heapUsedGrowth: number;
  addMs: number;
}

/**
 * A fresh host process: one warm-up binding (so code compiled on first use is in the baseline),
 * then memory before and after adding `bindings`. Not MemAvailable: the ~10 MB at stake drown in
 * what the rest of the machine does meanwhile.
 */
export async function measureOurMemory(ns: BenchNetns, bindings: Binding[]): Promise<OurMemory> {
  const host = await OurProxy.start(ns);
  try {
    await host.add([{ ...bindings[0]!, hostPort: bindings[0]!.hostPort - 1 }]);
    const snapshot = async (): Promise<{ rss: number; heapUsed: number; pss: number }> => ({ ...(await host.memory()), pss: pss(host.pid) });
    const before = await snapshot();
    const t0 = performance.now();
    await host.add(bindings);
    const addMs = Math.round(performance.now() - t0);
    const after = await snapshot();
    return {
      rssBefore: before.rss,
      rssAfter: after.rss,
      rssGrowth: after.rss - before.rss,
      pssGrowth: after.pss - before.pss,
      heapUsedGrowth: after.heapUsed - before.heapUsed,
      addMs,
    };
  } finally {
    await host.stop();
  }
}

export interface DockerProxyMemory {
  processes: number;
  memAvailableDrop: number;
  pssSum: number;
  threads: number;
  startMs: number;
}

/** One docker-proxy per spec, as dockerd runs them; system memory they take, then stopped. */
export async function measureDockerProxyMemory(ns: BenchNetns, specs: DockerProxySpec[], fifoDir: string): Promise<DockerProxyMemory> {
  const before = await settledMemAvailable();
  const t0 = performance.now();
  const procs = await startDockerProxies(ns, specs, fifoDir);
  const startMs = Math.round(performance.now() - t0);
  try {
    const after = await settledMemAvailable();
    const pids = procs.map((p) => p.pid!);
    return { processes: procs.length, memAvailableDrop: before - after, pssSum: sum(pids.map(pss)), threads: sum(pids.map(threads)), startMs };
  } finally {
    await stopDockerProxies(procs);
  }
}
