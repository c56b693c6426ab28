import { spawn } from "node:child_process";
import dgram from "node:dgram";
import { readdirSync } from "node:fs";
import net from "node:net";
import v8 from "node:v8";
import vm from "node:vm";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Binding } from "../../proxy/binding.js";
import { LOCAL_SHARE_MAX, shareLimits, sourceOf } from "../../proxy/limits.js";
import { ProxyManager, type ActiveBinding, type ProxyManagerOptions } from "../../proxy/proxy-manager.js";
import { eventually } from "../support/eventually.js";

// The proxy's limits (issue 17): UDP flows per port and per source, the eviction of unanswered
// flows, the idle times; TCP connections per port and per source, reset over the limit, the idle
// timeout. Real sockets on loopback (127.0.0.0/8 gives distinct source addresses); every port
// the proxy and the backends use is picked by the kernel.

const managers: ProxyManager[] = [];
const closers: (() => void)[] = [];

afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.closeAll()));
  vi.useRealTimers();
  for (const c of closers.splice(0)) c();
});

async function publish(
  b: Partial<Binding> & { proto: "tcp" | "udp"; backendPort: number },
  opts?: ProxyManagerOptions,
): Promise<{ m: ProxyManager; a: ActiveBinding }> {
  const m = new ProxyManager(opts);
  managers.push(m);
  const r = await m.add({ hostIp: "127.0.0.1", hostPort: 0, backendIp: "127.0.0.1", ...b });
  if (!r.ok) throw new Error(r.error);
  return { m, a: r.value };
}

const counters = (m: ProxyManager) => m.list()[0]!.counters;
const openFds = (): number => readdirSync("/proc/self/fd").length;
const MiB = 1024 * 1024;
const mib = (bytes: number): string => (bytes / MiB).toFixed(1);

/** A full collection, so that the heap holds what is live (V8 exposes gc to contexts made after the flag). */
function collect(): NodeJS.MemoryUsage {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  gc();
  gc();
  return process.memoryUsage();
}

// ---------------------------------------------------------------- UDP

async function udpSocket(address = "127.0.0.1"): Promise<dgram.Socket> {
  const s = dgram.createSocket("udp4");
  closers.push(() => {
    try {
      s.close();
    } catch {
      // already closed
    }
  });
  await new Promise<void>((resolve, reject) => {
    s.once("error", reject);
    s.bind(0, address, () => resolve());
  });
  return s;
}

/**
 * A backend that answers only datagrams starting with "ping" or "sync" ("<its source port>:<payload>"),
 * so that a flood leaves its flows unanswered, and records the source ports it saw per payload.
 */
async function selectiveEcho(answerAll = false) {
  const s = await udpSocket();
  const senders = new Map<string, number>();
  s.on("message", (msg, r) => {
    const text = msg.toString();
    senders.set(text, r.port);
    if (answerAll || text.startsWith("ping") || text.startsWith("sync")) s.send(`${r.port}:${text}`, r.port, r.address);
  });
  return { port: s.address().port, senders };
}

/**
 * Sends `payload` from `s` to the published port and waits for its answer, resending (UDP may
 * lose it); answers to earlier payloads (a resent one's second answer) are not taken for it.
 */
async function ask(s: dgram.Socket, port: number, payload: string, timeoutMs = 3000): Promise<string> {
  let answer: string | undefined;
  const mine = (msg: Buffer): void => {
    if (msg.toString().endsWith(`:${payload}`)) answer ??= msg.toString();
  };
  s.on("message", mine);
  try {
    return await eventually(
      `an answer to "${payload}"`,
      () => {
        if (answer === undefined) s.send(payload, port, "127.0.0.1");
        return answer;
      },
      { timeoutMs, everyMs: 200 },
    );
  } finally {
    s.off("message", mine);
  }
}

/**
 * In a child process: sends one datagram from each of `count` distinct source ports of 127.0.0.1
 * (bound one by one from 1024 up, skipping ports in use), in batches; after each batch a "sync"
 * from 127.0.0.2 must come back through the proxy, so the proxy has read the batch (datagrams
 * ahead of it on the same listening socket) before the next one: the kernel drops nothing.
 */
function flood(port: number, count: number, batch = 100): Promise<{ sent: number; firstPort: number; lastPort: number }> {
  const script = `
    const dgram = require("node:dgram");
    const [port, count, batch] = process.argv.slice(1).map(Number);
    const bindAt = (p) => new Promise((resolve) => {
      const s = dgram.createSocket("udp4");
      s.once("error", () => { s.close(); resolve(undefined); });
      s.bind(p, "127.0.0.1", () => resolve(s));
    });
    const ctl = dgram.createSocket("udp4");
    let answered = 0;
    ctl.on("message", () => answered++);
    const sync = async (n) => {
      for (let i = 0; answered < n; i++) {
        if (i % 50 === 0) ctl.send("sync" + n, port, "127.0.0.1");
        if (i > 500) throw new Error("no sync answer");
        await new Promise((r) => setTimeout(r, 2));
      }
    };
    (async () => {
      await new Promise((r) => ctl.bind(0, "127.0.0.2", r));
      let next = 1024, sent = 0, rounds = 0;
      while (sent < count) {
        const socks = [];
        while (socks.length < Math.min(batch, count - sent)) {
          if (next > 65535) throw new Error("out of ports after " + sent);
          const s = await bindAt(next++);
          if (s) socks.push(s);
        }
        await Promise.all(socks.map((s) => new Promise((r) => s.send("x", port, "127.0.0.1", r))));
        for (const s of socks) s.close();
        sent += socks.length;
        await sync(++rounds);
      }
      console.log(JSON.stringify({ sent, firstPort: 1024, lastPort: next - 1 }));
      ctl.close();
    })().catch((e) => { console.error(e); process.exit(1); });`;
  const child = spawn(process.execPath, ["-e", script, String(port), String(count), String(batch)], { stdio: ["ignore", "pipe", "inherit"] });
  closers.push(() => child.kill());
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    child.on("exit", (code) =>
      code === 0 ? resolve(JSON.parse(out) as { sent: number; firstPort: number; lastPort: number }) : reject(new Error(`flooder exited ${code}`)),
    );
  });
}

describe("udp flow limits", () => {
  it("45,000 datagrams from distinct source ports: flows and sockets stay under the caps, memory stays bounded, new clients are still answered", async () => {
    const backend = await selectiveEcho();
    const { m, a } = await publish({ proto: "udp", backendPort: backend.port });
    const port = a.binding.hostPort;
    const before = { fds: openFds(), ...collect() };

    const sent = await flood(port, 45_000);
    const peakRss = process.memoryUsage().rss;
    const after = { fds: openFds(), ...collect(), counters: counters(m) };
    console.log(
      `udp flood: ${sent.sent} datagrams from 127.0.0.1 ports ${sent.firstPort}-${sent.lastPort}; ` +
        `rss ${mib(before.rss)} → ${mib(peakRss)} MiB (+${mib(peakRss - before.rss)}), ${mib(after.rss)} after a gc; ` +
        `heap after a gc ${mib(before.heapUsed)} → ${mib(after.heapUsed)} MiB (+${mib(after.heapUsed - before.heapUsed)}); ` +
        `fds +${after.fds - before.fds}; flows opened ${after.counters.connectionsTotal}, live ${after.counters.connectionsActive}, ` +
        `evicted (source limit) ${after.counters.evictedSourceLimit}`,
    );

    expect(sent.sent).toBe(45_000);
    // every flood datagram reached the proxy and opened a flow (the sync barrier lets the kernel drop none)
    expect(after.counters.connectionsTotal).toBeGreaterThanOrEqual(45_000);
    // (b) one source holds at most its 4,096 flows (plus the flooder's sync flow from 127.0.0.2); each is one socket
    expect(after.counters.connectionsActive).toBeLessThanOrEqual(4096 + 1);
    expect(after.counters.evictedSourceLimit).toBeGreaterThanOrEqual(45_000 - 4096);
    expect(after.fds - before.fds).toBeLessThanOrEqual(after.counters.connectionsActive + 16);
    // What stays is the live flows: +6 MiB of heap measured (16,384 flows before the limits: +20 MiB). RSS peaks
    // higher with the garbage of 45,000 sockets opened and closed (V8 keeps its grown heap until idle), see the log.
    expect(after.heapUsed - before.heapUsed).toBeLessThan(12 * MiB);

    // (a) a new client is still forwarded, from another source and from the flood's own
    for (const from of ["127.0.0.3", "127.0.0.1"]) {
      const client = await udpSocket(from);
      expect(await ask(client, port, `ping from ${from}`)).toMatch(new RegExp(`^\\d+:ping from ${from.replace(/\./g, "\\.")}$`));
    }

    // the flood's unanswered flows go after 5 s; the answered ones (the flooder's sync, the two clients) stay
    await eventually("the unanswered flows expired", () => counters(m).connectionsActive === 3, { timeoutMs: 10_000, everyMs: 250 });
  }, 120_000);

  it("a full table evicts its oldest unanswered flow for a new client, from any source; answered flows stay", async () => {
    const backend = await selectiveEcho();
    const { m, a } = await publish({ proto: "udp", backendPort: backend.port }, { udp: { maxFlows: 500 } });
    const port = a.binding.hostPort;
    const early = await udpSocket("127.0.0.4");
    const earlyPort = (await ask(early, port, "ping early")).split(":")[0];

    const sent = await flood(port, 3000);
    expect(sent.sent).toBe(3000);
    const c = counters(m);
    expect(c.connectionsActive).toBeLessThanOrEqual(500);
    expect(c.evictedPortLimit).toBeGreaterThanOrEqual(3000 - 500);
    expect(c.refusedPortLimit).toBe(0);

    const late = await udpSocket("127.0.0.5");
    expect(await ask(late, port, "ping late")).toMatch(/^\d+:ping late$/);
    // the answered flow was never evicted: same backend source port as before
    expect(await ask(early, port, "ping early again")).toBe(`${earlyPort}:ping early again`);
  }, 60_000);

  it("a table full of answered flows drops a new client's datagrams (conntrack's early drop finds nothing to drop) and counts it", async () => {
    const backend = await selectiveEcho(true);
    const { m, a } = await publish({ proto: "udp", backendPort: backend.port }, { udp: { maxFlows: 3 } });
    const port = a.binding.hostPort;
    const clients = await Promise.all(["127.0.0.1", "127.0.0.2", "127.0.0.3"].map((ip) => udpSocket(ip)));
    for (const [i, c] of clients.entries()) await ask(c, port, `hello ${i}`);
    const extra = await udpSocket("127.0.0.4");
    await expect(ask(extra, port, "let me in", 600)).rejects.toThrow(/timed out/);
    expect(counters(m)).toMatchObject({ connectionsActive: 3, evictedPortLimit: 0 });
    expect(counters(m).refusedPortLimit).toBeGreaterThanOrEqual(1);
    expect(await ask(clients[0]!, port, "still here")).toMatch(/:still here$/);
  });

  it("a source over its limit gives up its own unanswered flow, else its least recently used; other sources keep theirs", async () => {
    const backend = await selectiveEcho();
    const { m, a } = await publish({ proto: "udp", backendPort: backend.port }, { udp: { maxFlowsPerSource: 2 } });
    const port = a.binding.hostPort;
    const [a1, a2, a3, a4] = await Promise.all([udpSocket(), udpSocket(), udpSocket(), udpSocket()]);
    const b1 = await udpSocket("127.0.0.2");
    const backendPort = async (s: dgram.Socket, payload: string): Promise<string> => (await ask(s, port, payload)).split(":")[0]!;
    const b1Port = await backendPort(b1, "ping b1");
    const a1Port = await backendPort(a1, "ping a1");
    a2.send("quiet a2", port, "127.0.0.1"); // the backend never answers it
    await eventually("a2's flow", () => backend.senders.has("quiet a2"));

    const a3Port = await backendPort(a3, "ping a3"); // 127.0.0.1 at its limit: a2, unanswered, makes room
    expect(counters(m)).toMatchObject({ connectionsActive: 3, evictedSourceLimit: 1, evictedPortLimit: 0 });
    expect(await backendPort(a1, "ping a1 again")).toBe(a1Port); // a1 answered: kept, and now more recent than a3

    await backendPort(a4, "ping a4"); // no unanswered flow left: a3, the least recently used, makes room
    expect(counters(m)).toMatchObject({ connectionsActive: 3, evictedSourceLimit: 2 });
    expect(await backendPort(a1, "ping a1 once more")).toBe(a1Port);
    expect(await backendPort(b1, "ping b1 again")).toBe(b1Port);
    expect(await backendPort(a3, "ping a3 again")).not.toBe(a3Port); // a new flow: a3's was recycled
  });

  it("a flow lives 5 s until the backend answers, then 90 s idle (fake timers)", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const backend = await selectiveEcho();
    const { m, a } = await publish({ proto: "udp", backendPort: backend.port });
    const port = a.binding.hostPort;
    const silent = await udpSocket("127.0.0.1");
    silent.send("unanswered", port, "127.0.0.1");
    await eventually("the unanswered flow", () => backend.senders.has("unanswered"));
    const talker = await udpSocket("127.0.0.2");
    const got = new Promise<string>((resolve) => talker.once("message", (msg) => resolve(msg.toString())));
    talker.send("ping", port, "127.0.0.1");
    expect(await got).toMatch(/:ping$/);
    expect(counters(m).connectionsActive).toBe(2);

    vi.advanceTimersByTime(4900);
    expect(counters(m).connectionsActive).toBe(2);
    vi.advanceTimersByTime(200);
    expect(counters(m).connectionsActive).toBe(1); // the unanswered one, 5 s after its datagram
    vi.advanceTimersByTime(80_000);
    expect(counters(m).connectionsActive).toBe(1);
    vi.advanceTimersByTime(10_000);
    expect(counters(m).connectionsActive).toBe(0); // the answered one, 90 s after the last datagram either way
  });
});

// ---------------------------------------------------------------- TCP

async function echoServer(): Promise<{ port: number; sockets: Set<net.Socket> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => undefined);
    s.on("close", () => sockets.delete(s));
    s.pipe(s);
  });
  closers.push(() => {
    server.close();
    for (const s of sockets) s.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as net.AddressInfo).port, sockets };
}

/** Connects from `localAddress` and waits for an echo: "echo", or how the connection failed ("ECONNRESET", "end"). */
async function tryEcho(port: number, localAddress = "127.0.0.1"): Promise<{ result: string; socket: net.Socket }> {
  const socket = net.connect({ port, host: "127.0.0.1", localAddress });
  closers.push(() => socket.destroy());
  const result = await new Promise<string>((resolve) => {
    socket.once("connect", () => socket.write("hi"));
    socket.once("data", () => resolve("echo"));
    socket.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    socket.once("end", () => resolve("end"));
  });
  return { result, socket };
}

function closed(s: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed) return resolve();
    s.once("close", () => resolve());
    s.resume();
  });
}

describe("tcp connection limits", () => {
  it("over the port's limit a connection is reset at once and counted; a freed slot admits the next", async () => {
    const backend = await echoServer();
    const { m, a } = await publish({ proto: "tcp", backendPort: backend.port }, { tcp: { maxConns: 3 } });
    const port = a.binding.hostPort;
    const held = [];
    for (const ip of ["127.0.0.1", "127.0.0.2", "127.0.0.3"]) held.push(await tryEcho(port, ip));
    expect(held.map((h) => h.result)).toEqual(["echo", "echo", "echo"]);
    const t0 = Date.now();
    expect((await tryEcho(port, "127.0.0.4")).result).toBe("ECONNRESET");
    expect(Date.now() - t0).toBeLessThan(1000); // a reset, not a hang
    expect(counters(m)).toMatchObject({ connectionsActive: 3, refusedPortLimit: 1, refusedSourceLimit: 0 });

    held[0]!.socket.destroy();
    await eventually("the slot is free", () => counters(m).connectionsActive === 2);
    expect((await tryEcho(port, "127.0.0.4")).result).toBe("echo");
  });

  it("over its source's limit a connection is reset; other sources still get in", async () => {
    const backend = await echoServer();
    const { m, a } = await publish({ proto: "tcp", backendPort: backend.port }, { tcp: { maxConnsPerSource: 2 } });
    const port = a.binding.hostPort;
    expect((await tryEcho(port)).result).toBe("echo");
    expect((await tryEcho(port)).result).toBe("echo");
    expect((await tryEcho(port)).result).toBe("ECONNRESET");
    expect((await tryEcho(port, "127.0.0.2")).result).toBe("echo");
    expect(counters(m)).toMatchObject({ connectionsActive: 3, refusedSourceLimit: 1, refusedPortLimit: 0 });
  });

  it("closes both sides of a connection idle for the timeout; traffic either way restarts it (fake timers)", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const backend = await echoServer();
    const { m, a } = await publish({ proto: "tcp", backendPort: backend.port }, { tcp: { idleTimeoutMs: 60_000 } });
    const { result, socket } = await tryEcho(a.binding.hostPort);
    expect(result).toBe("echo");
    const clientClosed = closed(socket);

    vi.advanceTimersByTime(59_000);
    expect(counters(m).connectionsActive).toBe(1);
    const echoed = new Promise((resolve) => socket.once("data", resolve));
    socket.write("still there?");
    await echoed;
    vi.advanceTimersByTime(59_000);
    expect(counters(m).connectionsActive).toBe(1); // the echo restarted the clock
    vi.advanceTimersByTime(2000);
    expect(counters(m)).toMatchObject({ connectionsActive: 0, idleTimeouts: 1 });
    await clientClosed;
    await eventually("the backend side closed too", () => backend.sockets.size === 0);
  });

  it("by default an idle connection lives 5 days (conntrack's established timeout), not a moment less", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const backend = await echoServer();
    const { m, a } = await publish({ proto: "tcp", backendPort: backend.port });
    const { result, socket } = await tryEcho(a.binding.hostPort);
    expect(result).toBe("echo");
    vi.advanceTimersByTime(5 * 24 * 3600 * 1000 - 1000);
    expect(counters(m).connectionsActive).toBe(1);
    vi.advanceTimersByTime(2000);
    expect(counters(m)).toMatchObject({ connectionsActive: 0, idleTimeouts: 1 });
    await closed(socket);
  });

  it("idleTimeoutMs 0: never closed for idleness", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const backend = await echoServer();
    const { m, a } = await publish({ proto: "tcp", backendPort: backend.port }, { tcp: { idleTimeoutMs: 0 } });
    expect((await tryEcho(a.binding.hostPort)).result).toBe("echo");
    vi.advanceTimersByTime(30 * 24 * 3600 * 1000);
    expect(counters(m)).toMatchObject({ connectionsActive: 1, idleTimeouts: 0 });
  });
});

describe("limit helpers", () => {
  it("a source is an IPv4 address or an IPv6 /64", () => {
    expect(sourceOf("198.51.100.7")).toBe("198.51.100.7");
    expect(sourceOf("::ffff:198.51.100.7")).toBe("198.51.100.7");
    expect(sourceOf("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(sourceOf("2001:db8:1:2:bbbb::2")).toBe("2001:db8:1:2::/64");
    expect(sourceOf("2001:db8:1:3::1")).not.toBe(sourceOf("2001:db8:1:2::1"));
    expect(sourceOf("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(sourceOf(undefined)).toBe("unknown");
  });

  it.each([1, 2, 4, 9])("the local shares of %i processes and the pool add up to the limits exactly", (processes) => {
    for (const limits of [
      { maxConns: 16_384, maxConnsPerSource: 4096 },
      { maxConns: 8, maxConnsPerSource: 3 },
      { maxConns: 1, maxConnsPerSource: 1 },
    ]) {
      const { local, pool } = shareLimits(limits, processes);
      expect(processes * local.maxConns + (pool?.maxConns ?? 0)).toBe(limits.maxConns);
      expect(processes * local.maxConnsPerSource + (pool?.maxConnsPerSource ?? 0)).toBe(limits.maxConnsPerSource);
      expect(local.maxConns).toBeGreaterThanOrEqual(0);
      if (processes > 1) expect(Math.max(local.maxConns, local.maxConnsPerSource)).toBeLessThanOrEqual(LOCAL_SHARE_MAX);
      if (processes > 1) expect(pool!.maxConns).toBeGreaterThanOrEqual(limits.maxConns / 2);
    }
  });
});
