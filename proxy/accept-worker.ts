/**
 * An accept worker: a child process that accepts on listening TCP sockets
 * the plugin process bound and sent over IPC, and proxies those connections
 * with its own TcpProxy per binding. Protocol: accept-protocol.ts. The
 * parent stays the owner of every socket (binding, errors, ephemeral ports,
 * UDP); a worker only adds a second core to the TCP data path.
 */
import net from "node:net";
import { createLogger } from "../lib/log.js";
import type { ToParent, ToWorker } from "./accept-protocol.js";
import type { ProxyCounters } from "./counters.js";
import type { Refusal, SlotPool } from "./limits.js";
import { ReadBufferPool } from "./read-buffers.js";
import { TcpProxy } from "./tcp-proxy.js";

const COUNTERS_EVERY_MS = 1000;

interface Served {
  proxy: TcpProxy;
  servers: Map<number, net.Server>;
}

// Started by accept-workers.ts, which passes the plugin's log level as the one argument.
const log = createLogger(process.argv[2] ?? "info").child({ component: "accept-worker" });
const served = new Map<string, Served>();
let buffers: ReadBufferPool | undefined;
/** "take" requests the parent has not answered yet. */
const taking = new Map<number, (refusal: Refusal | undefined) => void>();
let takeSeq = 0;

function reply(msg: ToParent): void {
  process.send?.(msg);
}

/** A binding's slots beyond this worker's local share: the parent's pool, over IPC (limits.ts). */
function parentPool(id: string): SlotPool {
  return {
    take: (source) =>
      new Promise((resolve) => {
        const seq = ++takeSeq;
        taking.set(seq, resolve);
        reply({ op: "take", seq, id, source });
      }),
    give: (source) => reply({ op: "give", id, source }),
  };
}

function took(msg: Extract<ToWorker, { op: "took" }>): void {
  const resolve = taking.get(msg.seq);
  taking.delete(msg.seq);
  resolve?.(msg.refusal);
}

function serve(msg: Extract<ToWorker, { op: "serve" }>, handle: unknown): void {
  if (!(handle instanceof net.Server)) return reply({ op: "done", seq: msg.seq, error: "no listening socket came with the message" });
  buffers ??= new ReadBufferPool(msg.readBuffer?.min, msg.readBuffer?.max, msg.readBuffer?.budget);
  let entry = served.get(msg.id);
  if (entry === undefined) {
    const pool = msg.pooled ? parentPool(msg.id) : undefined;
    entry = { proxy: new TcpProxy(msg.binding, { ...msg.tcp, pool, buffers, log }), servers: new Map() };
    served.set(msg.id, entry);
  }
  const { proxy, servers } = entry;
  servers.get(msg.leg)?.close();
  // Same options as the parent's listeners (listener.ts): paused, half-open capable.
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => proxy.handle(s));
  server.on("error", (err) => log.warn({ binding: msg.id, err: err.message }, "accept failed"));
  servers.set(msg.leg, server);
  // Our server takes over the handle (its connections now come here); the object that carried it is left unused.
  server.listen(handle, () => reply({ op: "done", seq: msg.seq }));
}

async function unserve(msg: Extract<ToWorker, { op: "unserve" }>): Promise<void> {
  const entry = served.get(msg.id);
  served.delete(msg.id);
  if (entry !== undefined) {
    const closed = Promise.all([...entry.servers.values()].map((s) => new Promise<void>((r) => s.close(() => r()))));
    entry.proxy.closeAll();
    await closed;
  }
  reply({ op: "done", seq: msg.seq });
}

let last = "";
setInterval(() => {
  const counters: Record<string, ProxyCounters> = {};
  for (const [id, e] of served) counters[id] = e.proxy.snapshot();
  const now = JSON.stringify(counters);
  if (now === last) return;
  last = now;
  reply({ op: "counters", counters });
}, COUNTERS_EVERY_MS).unref();

process.on("message", (msg: ToWorker, handle: unknown) => {
  if (msg.op === "serve") serve(msg, handle);
  else if (msg.op === "unserve") void unserve(msg);
  else if (msg.op === "took") took(msg);
});
// The parent is gone (crash, kill -9): so are we; the listening sockets close with us.
process.on("disconnect", () => process.exit(0));
reply({ op: "ready" });
