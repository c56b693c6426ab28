/**
 * Hosts our proxy for `npm run bench -- proxy`: one ProxyManager with the plugin's defaults (no
 * logger: the plugin logs nothing per connection either), driven by JSON lines on stdin, one
 * JSON line answered on stdout per command:
 *   {"add":[Binding, …]}  → {"added":n}, or {"error":"…"} at the first binding that fails
 *   {"rss":true}          → {"rss":bytes,"heapUsed":bytes} after a full gc (node --expose-gc) and a pause to settle
 * Prints {"ready":true} once it takes commands. argv[2] = accept workers (default 0), run from
 * the TypeScript source through vite-node like this script.
 */
import { fork } from "node:child_process";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { AcceptWorkers, ProxyManager, type Binding } from "../../proxy/index.js";

type Command = { add: Binding[] } | { rss: true };

const VITE_NODE = new URL("../../node_modules/vite-node/vite-node.mjs", import.meta.url).pathname;
const WORKER = new URL("../../proxy/accept-worker.ts", import.meta.url).pathname;
const count = Number(process.argv[2] ?? 0);
const workers = count > 0 ? new AcceptWorkers({ count, spawn: () => fork(VITE_NODE, [WORKER], { stdio: ["ignore", "ignore", "inherit", "ipc"] }) }) : undefined;
await workers?.start();
const proxies = new ProxyManager({ workers });

async function add(bindings: Binding[]): Promise<object> {
  for (const b of bindings) {
    const r = await proxies.add(b);
    if (!r.ok) return { error: r.error };
  }
  return { added: bindings.length };
}

async function settledRss(): Promise<object> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) {
    gc?.();
    await sleep(300);
  }
  const { rss, heapUsed } = process.memoryUsage();
  return { rss, heapUsed, gc: gc !== undefined };
}

console.log(JSON.stringify({ ready: true }));
for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line) as Command;
  const reply = "add" in cmd ? await add(cmd.add) : await settledRss();
  console.log(JSON.stringify(reply));
}
await proxies.closeAll();
await workers?.close();
