/**
 * More cores for the TCP data path. Node 20 runs JavaScript on one thread and
 * `reusePort` only arrives in Node 22, so the way to a second core is a second
 * process accepting on the same listening socket: the parent binds it (so
 * errors, ephemeral ports and dual-stack behave exactly as with no workers),
 * then hands it to each worker over IPC (SCM_RIGHTS). Every process waiting
 * in accept on the socket may get the next connection; the kernel spreads
 * them. The parent keeps accepting too. UDP stays in the parent (a flow
 * split across processes would lose its replies).
 *
 * Not `node:cluster`: its shared listen keys on (address, port), so a port
 * the kernel picked in one worker cannot be listened on by another, and it
 * would change how every `listen` in the plugin behaves.
 *
 * A worker that dies is restarted (after a pause that grows while it keeps
 * dying) and gets every binding again. A worker failure never fails a
 * publish: the parent serves the port alone meanwhile.
 */
import { fork, type ChildProcess } from "node:child_process";
import type net from "node:net";
import { fileURLToPath } from "node:url";
import type { Logger } from "../lib/log.js";
import { Backoff } from "../lib/retry.js";
import type { ToParent, ToWorker } from "./accept-protocol.js";
import type { Binding } from "./binding.js";
import { newCounters, type ProxyCounters } from "./counters.js";
import type { TcpProxyOptions } from "./tcp-proxy.js";

const ACK_TIMEOUT_MS = 5000;
const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 30_000;
/** A worker that lived this long before dying restarts after the shortest pause again. */
const STABLE_MS = 60_000;

export interface AcceptWorkersOptions {
  count: number;
  log?: Logger;
  /** The workers' own log level (they log to the same stderr); default "info". */
  logLevel?: string;
  tcp?: Pick<TcpProxyOptions, "connectTimeoutMs" | "resetOnBackendFailure">;
  readBuffer?: { min?: number; max?: number; budget?: number };
  /** Starts one worker process (tests run the TypeScript source through vite-node). */
  spawn?: () => ChildProcess;
}

interface Shared {
  binding: Binding;
  servers: net.Server[];
}

type ServeMessage = Extract<ToWorker, { op: "serve" }>;

class Worker {
  child: ChildProcess | undefined;
  ready: Promise<boolean> = Promise.resolve(false);
  counters: Record<string, ProxyCounters> = {};
  readonly restartBackoff = new Backoff(RESTART_MIN_MS, RESTART_MAX_MS);
  private readonly acks = new Map<number, (error: string | undefined) => void>();

  request(msg: ToWorker, handle?: net.Server): Promise<string | undefined> {
    const child = this.child;
    if (child === undefined || !child.connected) return Promise.resolve("worker not running");
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.acks.delete(msg.seq);
        resolve(`no answer within ${ACK_TIMEOUT_MS} ms`);
      }, ACK_TIMEOUT_MS);
      this.acks.set(msg.seq, (error) => {
        clearTimeout(timer);
        resolve(error);
      });
      child.send(msg, handle, (err) => {
        if (err) this.settle(msg.seq, err.message);
      });
    });
  }

  settle(seq: number, error: string | undefined): void {
    const ack = this.acks.get(seq);
    this.acks.delete(seq);
    ack?.(error);
  }

  failAll(why: string): void {
    for (const seq of [...this.acks.keys()]) this.settle(seq, why);
  }
}

export class AcceptWorkers {
  private readonly workers: Worker[] = [];
  private readonly shared = new Map<string, Shared>();
  private readonly spawnOne: () => ChildProcess;
  private seq = 0;
  private closed = false;

  constructor(private readonly opts: AcceptWorkersOptions) {
    const script = fileURLToPath(new URL("./accept-worker.js", import.meta.url));
    this.spawnOne = opts.spawn ?? (() => fork(script, [opts.logLevel ?? "info"], { stdio: ["ignore", "inherit", "inherit", "ipc"], serialization: "json" }));
    for (let i = 0; i < opts.count; i++) this.workers.push(new Worker());
  }

  get count(): number {
    return this.workers.length;
  }

  /** Starts the workers; resolves when each has reported ready (or failed to start). */
  async start(): Promise<void> {
    await Promise.all(this.workers.map((w, i) => this.launch(w, i)));
  }

  /** The pids of the running workers (tests, status). */
  pids(): number[] {
    return this.workers.flatMap((w) => (w.child?.pid !== undefined && w.child.exitCode === null ? [w.child.pid] : []));
  }

  /** Lets every worker accept on a binding's listening sockets too. */
  async share(id: string, binding: Binding, servers: net.Server[]): Promise<void> {
    if (servers.length === 0) return;
    this.shared.set(id, { binding, servers });
    await Promise.all(this.workers.map((w, i) => this.serveOn(w, i, id, binding, servers)));
  }

  /** Every worker stops accepting on the binding and closes its connections; resolves when they have. */
  async unshare(id: string): Promise<void> {
    if (!this.shared.delete(id)) return;
    await Promise.all(
      this.workers.map(async (w, i) => {
        const error = await w.request({ op: "unserve", seq: ++this.seq, id });
        delete w.counters[id];
        if (error !== undefined && w.child?.connected) this.opts.log?.warn({ worker: i, binding: id, err: error }, "accept worker did not let go of a binding");
      }),
    );
  }

  /** The workers' counters for a binding (as of their last report, ≤ 1 s old). */
  countersOf(id: string): ProxyCounters {
    const sum = newCounters();
    for (const w of this.workers) {
      const c = w.counters[id];
      if (c === undefined) continue;
      for (const k of Object.keys(sum) as (keyof ProxyCounters)[]) sum[k] += c[k];
    }
    return sum;
  }

  /** Stops the workers; their copies of the listening sockets close with them. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      this.workers.map(async (w) => {
        const child = w.child;
        w.child = undefined;
        w.failAll("accept workers closed");
        if (child === undefined || child.exitCode !== null) return;
        const exited = new Promise<void>((r) => child.once("exit", () => r()));
        child.kill("SIGTERM");
        await exited;
      }),
    );
  }

  private launch(w: Worker, index: number): Promise<boolean> {
    const log = this.opts.log?.child({ worker: index });
    const child = this.spawnOne();
    const startedAt = Date.now();
    w.child = child;
    w.counters = {};
    w.ready = new Promise<boolean>((resolve) => {
      child.on("message", (msg: ToParent) => {
        if (msg.op === "ready") {
          log?.info({ pid: child.pid }, "accept worker ready");
          resolve(true);
        } else if (msg.op === "done") w.settle(msg.seq, msg.error);
        else if (msg.op === "counters") w.counters = msg.counters;
      });
      child.once("error", (err) => log?.error({ err: err.message }, "accept worker failed to start"));
      child.once("exit", (code, signal) => {
        resolve(false);
        w.failAll(`worker exited (${signal ?? code})`);
        if (w.child !== child || this.closed) return;
        w.child = undefined;
        if (Date.now() - startedAt > STABLE_MS) w.restartBackoff.reset();
        const delay = w.restartBackoff.next();
        log?.error({ code, signal, restartInMs: delay }, "accept worker exited; restarting it");
        setTimeout(() => void this.relaunch(w, index), delay).unref();
      });
    });
    return w.ready;
  }

  private async relaunch(w: Worker, index: number): Promise<void> {
    if (this.closed) return;
    if (!(await this.launch(w, index))) return;
    for (const [id, s] of this.shared) await this.serveOn(w, index, id, s.binding, s.servers);
  }

  private async serveOn(w: Worker, index: number, id: string, binding: Binding, servers: net.Server[]): Promise<void> {
    if (!(await w.ready)) return;
    for (let leg = 0; leg < servers.length; leg++) {
      const msg: ServeMessage = { op: "serve", seq: ++this.seq, id, leg, binding, tcp: this.opts.tcp, readBuffer: this.opts.readBuffer };
      const error = await w.request(msg, servers[leg]);
      if (error !== undefined)
        this.opts.log?.warn({ worker: index, binding: id, err: error }, "accept worker could not take a binding; the plugin serves it alone");
    }
  }
}
