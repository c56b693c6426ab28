/**
 * Hosts our proxy for `npm run bench -- proxy`: one ProxyManager with the plugin's defaults (no
 * logger: the plugin logs nothing per connection either), driven by JSON lines on stdin, one
 * JSON line answered on stdout per command:
 *   {"add":[Binding, …]}  → {"added":n}, or {"error":"…"} at the first binding that fails
 *   {"rss":true}          → {"rss":bytes,"heapUsed":bytes} after a full gc (node --expose-gc) and a pause to settle
 * Prints {"ready":true} once it takes commands.
 */
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { ProxyManager, type Binding } from "../../proxy/index.js";

type Command = { add: Binding[] } | { rss: true };

const proxies = new ProxyManager();

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
