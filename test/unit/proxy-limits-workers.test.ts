import { fork, spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import { createInterface } from "node:readline";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { AcceptWorkers } from "../../proxy/accept-workers.js";
import { SlotCounter } from "../../proxy/limits.js";
import { ProxyManager } from "../../proxy/proxy-manager.js";
import { eventually } from "../support/eventually.js";

// TCP connection limits with accept workers (real worker processes, the TypeScript source through
// vite-node): the limits hold for the port as a whole, whichever process accepts. The echo backend
// and the clients live in their own processes, so that this one (the plugin's part) can be blocked.

const VITE_NODE = new URL("../../node_modules/vite-node/vite-node.mjs", import.meta.url).pathname;
const WORKER = new URL("../../proxy/accept-worker.ts", import.meta.url).pathname;
const spawnWorker = (): ChildProcess => fork(VITE_NODE, [WORKER], { stdio: ["ignore", "ignore", "inherit", "ipc"] });

let backend: ChildProcess;
let backendPort = 0;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  backend = spawn(
    process.execPath,
    [
      "-e",
      `const s = require("net").createServer((c) => { c.on("error", () => {}); c.pipe(c); }); s.listen(0, "127.0.0.1", () => console.log(s.address().port));`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  backendPort = await new Promise<number>((resolve) => backend.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim()))));
});

afterAll(() => {
  backend.kill();
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * A client process that opens connections on command and holds them: each sends "hi" and
 * reports "echo" when it comes back, or how it failed ("ECONNRESET", "end", "close").
 */
function clients(): { open(port: number, n: number, tag: string): void; results(tag: string): string[]; closeAll(): void } {
  const script = `
    const net = require("node:net");
    const socks = [];
    require("node:readline").createInterface({ input: process.stdin }).on("line", (line) => {
      const cmd = JSON.parse(line);
      if (cmd.close) { for (const s of socks.splice(0)) s.destroy(); return; }
      for (let i = 0; i < cmd.n; i++) {
        const s = net.connect({ port: cmd.port, host: "127.0.0.1" });
        socks.push(s);
        let told = false;
        const tell = (r) => { if (!told) { told = true; console.log(JSON.stringify({ tag: cmd.tag, r })); } };
        s.on("connect", () => s.write("hi"));
        s.once("data", () => tell("echo"));
        s.on("error", (e) => tell(e.code));
        s.on("end", () => tell("end"));
        s.on("close", () => tell("close"));
      }
    });`;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["pipe", "pipe", "inherit"] });
  cleanups.push(() => void child.kill());
  const seen = new Map<string, string[]>();
  createInterface({ input: child.stdout }).on("line", (line) => {
    const { tag, r } = JSON.parse(line) as { tag: string; r: string };
    seen.set(tag, [...(seen.get(tag) ?? []), r]);
  });
  return {
    open: (port, n, tag) => void child.stdin.write(`${JSON.stringify({ port, n, tag })}\n`),
    results: (tag) => seen.get(tag) ?? [],
    closeAll: () => void child.stdin.write(`${JSON.stringify({ close: true })}\n`),
  };
}

/** This process does nothing for `ms`: only a worker can accept meanwhile. */
function block(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

const count = (results: string[], r: string): number => results.filter((x) => x === r).length;

describe("tcp connection limits with accept workers", () => {
  it("the port's limit holds across the plugin and a worker: never more than maxConns get through, the rest are reset", async () => {
    const workers = new AcceptWorkers({ count: 1, spawn: spawnWorker });
    await workers.start();
    const m = new ProxyManager({ workers, tcp: { maxConns: 8, maxConnsPerSource: 8 } });
    cleanups.push(async () => {
      await m.closeAll();
      await workers.close();
    });
    const r = await m.add({ proto: "tcp", hostIp: "127.0.0.1", hostPort: 0, backendIp: "127.0.0.1", backendPort });
    if (!r.ok) throw new Error(r.error);
    const port = r.value.binding.hostPort;
    const c = clients();

    // Two processes: each admits 2 on its own, the other 4 come from this process's pool. With this
    // process blocked the worker takes all three: two of its own, the third waits for the pool.
    c.open(port, 3, "first");
    block(2000);
    const first = await eventually("the first three connections", () => c.results("first").length === 3 && c.results("first"));
    expect(first).toEqual(["echo", "echo", "echo"]);
    await eventually("the worker's counters", () => workers.countersOf(r.value.id).connectionsActive === 3, { timeoutMs: 5000 });

    c.open(port, 9, "more");
    const more = await eventually("nine more", () => c.results("more").length === 9 && c.results("more"));
    const admitted = 3 + count(more, "echo");
    // At most the limit; at least the limit less this process's own share of 2, which the worker
    // cannot borrow if the kernel hands it nearly every connection (limits.ts).
    expect(admitted).toBeLessThanOrEqual(8);
    expect(admitted).toBeGreaterThanOrEqual(8 - 2);
    expect(count(more, "ECONNRESET")).toBe(12 - admitted);
    await eventually("the port's counters, workers included", () => {
      const counters = m.get(r.value.id)?.counters;
      return counters?.connectionsActive === admitted && counters.refusedPortLimit === 12 - admitted && counters;
    });
  }, 40_000);

  it("a worker asks the plugin's pool for each connection beyond its share, gives the slots back, and a dead worker's slots return", async () => {
    const workers = new AcceptWorkers({ count: 1, spawn: spawnWorker });
    await workers.start();
    cleanups.push(() => workers.close());
    // The plugin's side of a published port, without the plugin accepting: its listening socket is
    // handed to the worker and closed here, so only the worker accepts. No local share: every
    // connection is a slot of the pool.
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as net.AddressInfo).port;
    const pool = new SlotCounter(3, 3);
    const binding = { proto: "tcp" as const, hostIp: "127.0.0.1", hostPort: port, backendIp: "127.0.0.1", backendPort };
    await workers.share("tcp/test", binding, [server], { tcp: { maxConns: 0, maxConnsPerSource: 0 }, pool });
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const c = clients();

    c.open(port, 5, "a");
    const a = await eventually("five connections", () => c.results("a").length === 5 && c.results("a"));
    expect(count(a, "echo")).toBe(3);
    expect(count(a, "ECONNRESET")).toBe(2);
    expect(pool.size).toBe(3);
    await eventually("the refusals counted by the worker", () => workers.countersOf("tcp/test").refusedPortLimit === 2);

    c.closeAll();
    await eventually("the slots given back", () => pool.size === 0);

    c.open(port, 2, "b");
    await eventually("two more", () => count(c.results("b"), "echo") === 2);
    expect(pool.size).toBe(2);
    const [pid] = workers.pids();
    process.kill(pid!, "SIGKILL");
    await eventually("a dead worker's slots returned", () => pool.size === 0);
  }, 40_000);
});
