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
 *
 * Connection limits hold across the processes (limits.ts): each worker admits
 * up to its local share on its own and asks the parent's pool, over IPC, for
 * each connection beyond it; the slots a worker holds in the pool are given
 * back when it says so, when the binding goes, or when the worker dies.
 */
import { fork, type ChildProcess } from "node:child_process";
import type net from "node:net";
import { fileURLToPath } from "node:url";
import type { Logger } from "../lib/log.js";
import { Backoff } from "../lib/retry.js";
import type { ToParent, ToWorker, WorkerTcpOptions } from "./accept-protocol.js";
import type { Binding } from "./binding.js";
import { newCounters, type ProxyCounters } from "./counters.js";
import type { SlotCounter } from "./limits.js";
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

/** How the workers serve a binding: the manager's TCP settings with their local share of the limits, and the pool beyond it. */
export interface ShareOptions {
  tcp?: WorkerTcpOptions;
  pool?: SlotCounter;
}

interface Shared extends ShareOptions {
  binding: Binding;
  servers: net.Server[];
}

type ServeMessage = Extract<ToWorker, { op: "serve" }>;

class Worker {
  child: ChildProcess | undefined;
  ready: Promise<boolean> = Promise.resolve(false);
  counters: Record<string, ProxyCounters> = {};
  /** Pool slots this worker holds, per binding id and source. */
  held = new Map<string, Map<string, number>>();
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
  async share(id: string, binding: Binding, servers: net.Server[], opts: ShareOptions = {}): Promise<void> {
    if (servers.length === 0) return;
    const shared: Shared = { binding, servers, ...opts };
    this.shared.set(id, shared);
    await Promise.all(this.workers.map((w, i) => this.serveOn(w, i, id, shared)));
  }

  /** Every worker stops accepting on the binding and closes its connections; resolves when they have. */
  async unshare(id: string): Promise<void> {
    if (!this.shared.delete(id)) return;
    for (const w of this.workers) w.held.delete(id); // the pool goes with the binding
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
        else if (msg.op === "take") this.take(w, child, msg);
        else if (msg.op === "give") this.give(w, msg.id, msg.source);
      });
      child.once("error", (err) => log?.error({ err: err.message }, "accept worker failed to start"));
      child.once("exit", (code, signal) => {
        resolve(false);
        w.failAll(`worker exited (${signal ?? code})`);
        this.releaseAll(w);
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
    for (const [id, s] of this.shared) await this.serveOn(w, index, id, s);
  }

  /** A worker asks for a slot of a binding's pool; refused when the binding is gone. */
  private take(w: Worker, child: ChildProcess, msg: Extract<ToParent, { op: "take" }>): void {
    const pool = this.shared.get(msg.id)?.pool;
    const refusal = pool === undefined ? "port" : pool.take(msg.source);
    if (refusal === undefined) {
      const held = w.held.get(msg.id) ?? new Map<string, number>();
      w.held.set(msg.id, held.set(msg.source, (held.get(msg.source) ?? 0) + 1));
    }
    const answer: ToWorker = { op: "took", seq: msg.seq, ...(refusal === undefined ? {} : { refusal }) };
    if (child.connected) child.send(answer);
  }

  private give(w: Worker, id: string, source: string): void {
    const held = w.held.get(id);
    const n = held?.get(source);
    if (held === undefined || n === undefined) return; // the binding went meanwhile
    if (n <= 1) held.delete(source);
    else held.set(source, n - 1);
    this.shared.get(id)?.pool?.give(source);
  }

  /** A worker died: so did its connections; their pool slots are free again. */
  private releaseAll(w: Worker): void {
    for (const [id, held] of w.held) {
      for (const [source, n] of held) for (let i = 0; i < n; i++) this.shared.get(id)?.pool?.give(source);
    }
    w.held = new Map();
  }

  private async serveOn(w: Worker, index: number, id: string, s: Shared): Promise<void> {
    if (!(await w.ready)) return;
    const { binding, servers, pool } = s;
    // The manager's settings win over the workers' own; a setting it leaves unset does not.
    const tcp = { ...this.opts.tcp, ...Object.fromEntries(Object.entries(s.tcp ?? {}).filter(([, v]) => v !== undefined)) };
    for (let leg = 0; leg < servers.length; leg++) {
      const msg: ServeMessage = { op: "serve", seq: ++this.seq, id, leg, binding, tcp, pooled: pool !== undefined, readBuffer: this.opts.readBuffer };
      const error = await w.request(msg, servers[leg]);
      if (error !== undefined)
        this.opts.log?.warn({ worker: index, binding: id, err: error }, "accept worker could not take a binding; the plugin serves it alone");
    }
  }
}
