import { fork, spawn, spawnSync, type ChildProcess } from "node:child_process";
import net from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ToParent } from "../../proxy/accept-protocol.js";
import { AcceptWorkers } from "../../proxy/accept-workers.js";
import { ProxyManager } from "../../proxy/proxy-manager.js";
import { eventually } from "../support/eventually.js";

// Real worker processes (the TypeScript source through vite-node), on loopback.

const VITE_NODE = new URL("../../node_modules/vite-node/vite-node.mjs", import.meta.url).pathname;
const WORKER = new URL("../../proxy/accept-worker.ts", import.meta.url).pathname;
/** Every worker started, with how many bindings it has taken (its "done" answers). */
const spawned: { child: ChildProcess; served: number }[] = [];
const spawnWorker = (): ChildProcess => {
  const w = { child: fork(VITE_NODE, [WORKER], { stdio: ["ignore", "ignore", "inherit", "ipc"] }), served: 0 };
  w.child.on("message", (msg: ToParent) => {
    if (msg.op === "done") w.served++;
  });
  spawned.push(w);
  return w.child;
};

let backend: ChildProcess;
let backendPort = 0;
const cleanups: (() => Promise<void>)[] = [];

/** The echo backend lives in its own process: the tests block this one. */
beforeAll(async () => {
  backend = spawn(
    process.execPath,
    [
      "-e",
      `
    const s = require("net").createServer({ allowHalfOpen: true }, (c) => c.pipe(c));
    s.listen(0, "127.0.0.1", () => console.log(s.address().port));`,
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

async function withWorkers(count: number): Promise<{ workers: AcceptWorkers; m: ProxyManager }> {
  const workers = new AcceptWorkers({ count, spawn: spawnWorker });
  await workers.start();
  const m = new ProxyManager({ workers });
  cleanups.push(async () => {
    await m.closeAll();
    await workers.close();
  });
  return { workers, m };
}

/**
 * An echo through `port` from a child process, run synchronously: this process (the parent
 * proxy) cannot accept anything meanwhile, so only a worker can have served it. The child
 * gives up after `giveUpMs`.
 */
function echoWhileParentBlocked(port: number, giveUpMs = 4000): string {
  const r = spawnSync(
    process.execPath,
    [
      "-e",
      `
    const c = require("net").connect(${port}, "127.0.0.1", () => c.end("ping"));
    let got = ""; c.on("data", (d) => (got += d)); c.on("end", () => { process.stdout.write(got); process.exit(0); });
    c.on("error", (e) => { process.stdout.write("error " + e.code); process.exit(1); });
    setTimeout(() => { process.stdout.write("timeout"); process.exit(1); }, ${giveUpMs});`,
    ],
    { encoding: "utf8" },
  );
  return r.stdout;
}

describe("accept workers", () => {
  it("a worker serves a published port (kernel-picked, dual-stack) while the parent cannot, and its counters reach the parent's list", async () => {
    const { workers, m } = await withWorkers(1);
    expect(workers.pids()).toHaveLength(1);
    const r = await m.add({ proto: "tcp", hostIp: "", hostPort: 0, backendIp: "127.0.0.1", backendPort });
    if (!r.ok) throw new Error(r.error);
    const port = r.value.binding.hostPort;
    expect(echoWhileParentBlocked(port)).toBe("ping");
    expect(echoWhileParentBlocked(port)).toBe("ping");
    // Workers report their counters once a second.
    await eventually("the worker's counters to reach the parent", () => (m.get(r.value.id)?.counters.connectionsTotal ?? 0) >= 2, { timeoutMs: 10_000 });
    expect(m.get(r.value.id)?.counters).toMatchObject({ bytesIn: 8, bytesOut: 8 });
  }, 30_000);

  it("without workers, the same blocked parent serves nothing (the check above can fail)", async () => {
    const m = new ProxyManager();
    cleanups.push(() => m.closeAll());
    const r = await m.add({ proto: "tcp", hostIp: "127.0.0.1", hostPort: 0, backendIp: "127.0.0.1", backendPort });
    if (!r.ok) throw new Error(r.error);
    // The parent is blocked for as long as the child waits, so a shorter wait shows the same.
    expect(echoWhileParentBlocked(r.value.binding.hostPort, 1000)).not.toBe("ping");
  }, 30_000);

  it("remove: the workers let go too, so the port can be bound again at once", async () => {
    const { m } = await withWorkers(2);
    const r = await m.add({ proto: "tcp", hostIp: "127.0.0.1", hostPort: 0, backendIp: "127.0.0.1", backendPort });
    if (!r.ok) throw new Error(r.error);
    const port = r.value.binding.hostPort;
    expect(echoWhileParentBlocked(port)).toBe("ping");
    await m.remove(r.value);
    const again = net.createServer();
    await new Promise<void>((resolve, reject) => {
      again.once("error", reject);
      again.listen({ port, host: "127.0.0.1", exclusive: true }, () => resolve());
    });
    again.close();
  }, 30_000);

  it("a worker that dies is restarted and takes the published ports again", async () => {
    const { workers, m } = await withWorkers(1);
    const r = await m.add({ proto: "tcp", hostIp: "127.0.0.1", hostPort: 0, backendIp: "127.0.0.1", backendPort });
    if (!r.ok) throw new Error(r.error);
    const [first] = workers.pids();
    process.kill(first!, "SIGKILL");
    // Restarted after a pause, ready, then given the binding again: only then can it answer.
    await eventually(
      "a new worker to take the binding",
      () => {
        const last = spawned.at(-1)!;
        return last.child.pid !== first && last.served > 0 && workers.pids().join() === String(last.child.pid);
      },
      { timeoutMs: 20_000 },
    );
    expect(echoWhileParentBlocked(r.value.binding.hostPort)).toBe("ping");
  }, 40_000);
});
