import dgram from "node:dgram";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Binding } from "../../proxy/binding.js";
import { ProxyManager, type ActiveBinding, type ProxyManagerOptions } from "../../proxy/proxy-manager.js";
import { MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6 } from "../../proxy/udp-proxy.js";
import { eventually } from "../support/eventually.js";

// Loopback only; every port is picked by the kernel.

const sockets: dgram.Socket[] = [];
const managers: ProxyManager[] = [];

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(managers.splice(0).map((m) => m.closeAll()));
  for (const s of sockets.splice(0)) {
    try {
      s.close();
    } catch {
      // already closed
    }
  }
});

function bind(type: "udp4" | "udp6", address: string, port = 0): Promise<dgram.Socket> {
  const s = dgram.createSocket(type);
  sockets.push(s);
  return new Promise((resolve, reject) => {
    s.once("error", reject);
    s.bind(port, address, () => resolve(s));
  });
}

/** Replies "<sender port>:<payload>" (or the bare payload with `raw`), and records sender ports. */
async function echoBackend(type: "udp4" | "udp6" = "udp4", address = "127.0.0.1", raw = false, port = 0) {
  const s = await bind(type, address, port);
  const senders: number[] = [];
  s.on("message", (msg, r) => {
    senders.push(r.port);
    s.send(raw ? msg : Buffer.concat([Buffer.from(`${r.port}:`), msg]), r.port, r.address);
  });
  return { port: s.address().port, senders, sock: s };
}

async function publish(b: Partial<Binding> & { backendPort: number }, opts?: ProxyManagerOptions): Promise<{ m: ProxyManager; a: ActiveBinding }> {
  const m = new ProxyManager(opts);
  managers.push(m);
  const r = await m.add({ proto: "udp", hostIp: "127.0.0.1", hostPort: 0, backendIp: "127.0.0.1", ...b });
  if (!r.ok) throw new Error(r.error);
  return { m, a: r.value };
}

function nextMessage(s: dgram.Socket, ms = 2000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no reply")), ms);
    s.once("message", (msg) => {
      clearTimeout(t);
      resolve(msg);
    });
  });
}

async function roundTrip(s: dgram.Socket, port: number, host: string, payload: Buffer, ms = 2000): Promise<Buffer> {
  const reply = nextMessage(s, ms);
  s.send(payload, port, host);
  return reply;
}

/** The flows' idle timers (and nothing of the sockets) run on a clock the test moves. */
const fakeIdleTimers = () => vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
const counters = (m: ProxyManager) => m.list()[0]!.counters;

describe("udp proxy", () => {
  it("two clients on one published port each get only their own replies", async () => {
    const backend = await echoBackend();
    const { m, a } = await publish({ backendPort: backend.port });
    const clients = await Promise.all([bind("udp4", "127.0.0.1"), bind("udp4", "127.0.0.1")]);
    const got: string[][] = [[], []];
    clients.forEach((c, i) => c.on("message", (msg) => got[i]!.push(msg.toString())));
    for (let n = 0; n < 50; n++) {
      clients.forEach((c, i) => c.send(`client${i}-${n}`, a.binding.hostPort, "127.0.0.1"));
      // In rounds of ten, so that no socket buffer overflows on a busy machine.
      if (n % 10 === 9) await eventually(`the replies to ${n + 1} rounds`, () => got[0]!.length + got[1]!.length >= 2 * (n + 1), { timeoutMs: 3000 });
    }
    for (const i of [0, 1]) {
      expect(got[i]).toHaveLength(50);
      expect(got[i]!.every((s) => s.includes(`:client${i}-`))).toBe(true);
      // each client's flow is one backend source port, distinct from the other client's
      expect(new Set(got[i]!.map((s) => s.split(":")[0])).size).toBe(1);
    }
    expect(got[0]![0]!.split(":")[0]).not.toBe(got[1]![0]!.split(":")[0]);
    expect(new Set(backend.senders).size).toBe(2);
    expect(counters(m)).toMatchObject({
      connectionsTotal: 2,
      connectionsActive: 2,
      datagramsIn: 100,
      datagramsOut: 100,
      dropped: 0,
      errors: 0,
    });
    const c = counters(m);
    expect(c.bytesOut - c.bytesIn).toBe(100 * (String(backend.senders[0]).length + 1)); // the "port:" prefixes
  });

  it("expires an idle flow; a new datagram then opens a new flow (new backend source port)", async () => {
    const backend = await echoBackend();
    const { m, a } = await publish({ backendPort: backend.port }, { udp: { idleTimeoutMs: 200 } });
    const c = await bind("udp4", "127.0.0.1");
    fakeIdleTimers();
    await roundTrip(c, a.binding.hostPort, "127.0.0.1", Buffer.from("one"));
    expect(counters(m).connectionsActive).toBe(1);
    vi.advanceTimersByTime(199);
    expect(counters(m).connectionsActive).toBe(1);
    vi.advanceTimersByTime(1);
    expect(counters(m).connectionsActive).toBe(0);
    await roundTrip(c, a.binding.hostPort, "127.0.0.1", Buffer.from("two"));
    expect(counters(m)).toMatchObject({ connectionsTotal: 2, connectionsActive: 1 });
    expect(backend.senders).toHaveLength(2);
    expect(backend.senders[0]).not.toBe(backend.senders[1]);
  });

  it("keeps a one-sided flow alive while the client keeps sending (docker-proxy TestUDPOneSided)", async () => {
    const sink = await bind("udp4", "127.0.0.1");
    const senders = new Set<number>();
    let ticks = 0;
    sink.on("message", (_m, r) => {
      senders.add(r.port);
      ticks++;
    }); // never replies
    const { m, a } = await publish({ backendPort: sink.address().port }, { udp: { idleTimeoutMs: 250 } });
    const c = await bind("udp4", "127.0.0.1");
    fakeIdleTimers();
    // A tick every 100 ms for 800 ms: three idle timeouts' worth, each refreshed in time.
    for (let i = 0; i < 8; i++) {
      c.send(`tick${i}`, a.binding.hostPort, "127.0.0.1");
      await eventually(`tick${i} at the proxy`, () => counters(m).datagramsIn === i + 1);
      vi.advanceTimersByTime(100);
    }
    await eventually("every tick at the backend", () => ticks === 8);
    expect(senders.size).toBe(1);
    expect(counters(m)).toMatchObject({ connectionsTotal: 1, connectionsActive: 1, datagramsIn: 8, datagramsOut: 0 });
    // Silence: the flow ends one idle timeout after the last tick.
    vi.advanceTimersByTime(149);
    expect(counters(m).connectionsActive).toBe(1);
    vi.advanceTimersByTime(1);
    expect(counters(m).connectionsActive).toBe(0);
  });

  it.each([
    ["udp4", "127.0.0.1", [0, 1, 1472, 8192, MAX_UDP_PAYLOAD_V4]],
    ["udp6", "::1", [0, 1, 1452, MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6]],
  ] as const)("preserves datagram boundaries and sizes over %s", async (type, host, sizes) => {
    const backend = await echoBackend(type, host, true);
    const { m, a } = await publish({ hostIp: host, backendIp: host, backendPort: backend.port });
    const c = await bind(type, host);
    for (const size of sizes) {
      const payload = Buffer.alloc(size, size % 251);
      const got = await roundTrip(c, a.binding.hostPort, host, payload);
      expect(got.length).toBe(size);
      expect(got.equals(payload)).toBe(true);
    }
    const total = sizes.reduce<number>((x, y) => x + y, 0);
    expect(counters(m)).toMatchObject({ bytesIn: total, bytesOut: total, datagramsIn: sizes.length, datagramsOut: sizes.length });
  });

  it("an IPv6 client (::1) reaches an IPv4 backend", async () => {
    const backend = await echoBackend();
    const { a } = await publish({ hostIp: "::1", backendPort: backend.port });
    const c = await bind("udp6", "::1");
    const got = await roundTrip(c, a.binding.hostPort, "::1", Buffer.from("hello v6"));
    expect(got.toString()).toMatch(/^\d+:hello v6$/);
  });

  it("survives a backend that is not up yet (docker-proxy TestUDPWriteError)", async () => {
    const placeholder = await bind("udp4", "127.0.0.1");
    const port = placeholder.address().port;
    await new Promise<void>((r) => placeholder.close(() => r()));
    const { m, a } = await publish({ backendPort: port });
    const c = await bind("udp4", "127.0.0.1");
    c.send("lost-1", a.binding.hostPort, "127.0.0.1");
    await eventually("lost-1's port unreachable", () => counters(m).errors >= 1);
    c.send("lost-2", a.binding.hostPort, "127.0.0.1");
    await eventually("lost-2's port unreachable", () => counters(m).errors >= 2);
    await echoBackend("udp4", "127.0.0.1", true, port);
    const got = await roundTrip(c, a.binding.hostPort, "127.0.0.1", Buffer.from("third"));
    expect(got.toString()).toBe("third");
    // the ICMP port-unreachable errors were seen, and did not kill the flow
    expect(counters(m).errors).toBeGreaterThan(0);
    expect(counters(m).connectionsTotal).toBe(1);
  });

  it("removing the binding closes its flows and frees the port at once", async () => {
    const backend = await echoBackend();
    const { m, a } = await publish({ backendPort: backend.port });
    const c = await bind("udp4", "127.0.0.1");
    await roundTrip(c, a.binding.hostPort, "127.0.0.1", Buffer.from("x"));
    expect(counters(m).connectionsActive).toBe(1);
    const r = await m.remove(a);
    expect(r.ok).toBe(true);
    expect(m.list()).toEqual([]);
    const again = await bind("udp4", "127.0.0.1", a.binding.hostPort);
    expect(again.address().port).toBe(a.binding.hostPort);
  });

  it("caps the number of flows", async () => {
    const backend = await echoBackend();
    const { m, a } = await publish({ backendPort: backend.port }, { udp: { maxFlows: 2 } });
    const cs = await Promise.all([0, 1, 2].map(() => bind("udp4", "127.0.0.1")));
    await roundTrip(cs[0]!, a.binding.hostPort, "127.0.0.1", Buffer.from("a"));
    await roundTrip(cs[1]!, a.binding.hostPort, "127.0.0.1", Buffer.from("b"));
    await expect(roundTrip(cs[2]!, a.binding.hostPort, "127.0.0.1", Buffer.from("c"), 300)).rejects.toThrow("no reply");
    expect(counters(m)).toMatchObject({ connectionsActive: 2, dropped: 1 });
  });
});
