import dgram from "node:dgram";
import net from "node:net";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Binding } from "../../proxy/binding.js";
import { ProxyManager } from "../../proxy/proxy-manager.js";
import { eventually } from "../support/eventually.js";
import { freePort } from "../support/free-ports.js";

// Loopback only; ports are picked by the kernel (a listener on port 0), then reused.

const closers: (() => void)[] = [];
const managers: ProxyManager[] = [];

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(managers.splice(0).map((m) => m.closeAll()));
  for (const c of closers.splice(0)) c();
});

function manager(logged?: string[]): ProxyManager {
  const m = new ProxyManager(logged && { log: pino({ level: "info" }, { write: (line: string) => void logged.push(line) }) });
  managers.push(m);
  return m;
}

function tcpServer(host: string, port = 0, onConn: (s: net.Socket) => void = (s) => s.pipe(s)): Promise<number> {
  const server = net.createServer(onConn);
  closers.push(() => server.close());
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port, ipv6Only: host === "::" }, () => resolve((server.address() as net.AddressInfo).port));
  });
}

function udpSocket(type: "udp4" | "udp6", host: string, port = 0): Promise<dgram.Socket> {
  const s = dgram.createSocket(type);
  closers.push(() => {
    try {
      s.close();
    } catch {
      // closed
    }
  });
  return new Promise((resolve, reject) => {
    s.once("error", reject);
    s.bind(port, host, () => resolve(s));
  });
}

async function echoOver(port: number, host: string, text = "ping"): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ port, host }, () => c.end(text));
    let got = "";
    c.on("data", (d: Buffer) => (got += d.toString()));
    c.on("end", () => resolve(got));
    c.on("error", reject);
  });
}

function connectOutcome(port: number, host: string): Promise<string> {
  return new Promise((resolve) => {
    const c = net.connect({ port, host }, () => resolve("connected"));
    c.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
  });
}

async function udpRoundTrip(port: number, host: string, type: "udp4" | "udp6"): Promise<string> {
  const c = await udpSocket(type, host);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no reply")), 2000);
    c.once("message", (m) => {
      clearTimeout(t);
      resolve(m.toString());
    });
    c.send("ping", port, host);
  });
}

async function udpEcho(): Promise<number> {
  const s = await udpSocket("udp4", "127.0.0.1");
  s.on("message", (m, r) => s.send(m, r.port, r.address));
  return s.address().port;
}

const tcp = (b: Partial<Binding> & { backendPort: number }): Binding => ({ proto: "tcp", hostIp: "127.0.0.1", hostPort: 0, backendIp: "127.0.0.1", ...b });

describe("ProxyManager", () => {
  it("hostPort 0 gets a kernel-chosen port, reported on the binding and in list()", async () => {
    const m = manager();
    const backend = await tcpServer("127.0.0.1");
    const r = await m.add(tcp({ backendPort: backend }));
    if (!r.ok) throw new Error(r.error);
    const port = r.value.binding.hostPort;
    expect(port).toBeGreaterThan(0);
    expect(r.value.requestedHostPort).toBe(0);
    expect(r.value.id).toBe(`tcp/127.0.0.1:${port}`);
    expect(r.value.addresses).toEqual([{ address: "127.0.0.1", family: 4, port }]);
    expect(await echoOver(port, "127.0.0.1")).toBe("ping");
    const [listed] = m.list();
    expect(listed).toMatchObject({ id: r.value.id, binding: { hostPort: port }, counters: { connectionsTotal: 1, bytesIn: 4 } });
  });

  it("host port in use: Docker's userland-proxy error naming address and port", async () => {
    const m = manager();
    const busy = await tcpServer("127.0.0.1");
    const r = await m.add(tcp({ hostPort: busy, backendIp: "10.10.0.5", backendPort: 80 }));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error).toBe(`Error starting userland proxy: listen tcp4 127.0.0.1:${busy}: bind: address already in use (tcp 127.0.0.1:${busy} → 10.10.0.5:80)`);
    expect(m.list()).toEqual([]);
  });

  it("host port in use on one family of a dual-stack binding names that family's address", async () => {
    const m = manager();
    const busy = await tcpServer("::1");
    const r = await m.add(tcp({ hostIp: "", hostPort: busy, backendPort: 80 }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toContain(`listen tcp6 [::]:${busy}: bind: address already in use`);
    // and nothing stays bound on the IPv4 side
    const again = await tcpServer("0.0.0.0", busy);
    expect(again).toBe(busy);
  });

  it("udp port in use", async () => {
    const m = manager();
    const busy = await udpSocket("udp4", "127.0.0.1");
    const port = busy.address().port;
    const r = await m.add({ proto: "udp", hostIp: "0.0.0.0", hostPort: port, backendIp: "127.0.0.1", backendPort: 53 });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(new RegExp(`^Error starting userland proxy: listen udp4 0\\.0\\.0\\.0:${port}: bind: address already in use`));
  });

  it("a port this manager already publishes: Docker's allocator error", async () => {
    const m = manager();
    const backend = await tcpServer("127.0.0.1");
    const first = await m.add(tcp({ hostIp: "", backendPort: backend }));
    if (!first.ok) throw new Error(first.error);
    const port = first.value.binding.hostPort;
    for (const hostIp of ["127.0.0.1", "::1", "0.0.0.0", ""]) {
      const r = await m.add(tcp({ hostIp, hostPort: port, backendPort: backend }));
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toMatch(/^Bind for .+ failed: port is already allocated/);
    }
    const r = await m.add(tcp({ hostIp: "127.0.0.1", hostPort: port, backendPort: backend }));
    if (!r.ok) expect(r.error).toContain(`Bind for 127.0.0.1:${port} failed: port is already allocated`);
    // the same port for udp is a different allocation
    const udp = await m.add({ proto: "udp", hostIp: "127.0.0.1", hostPort: port, backendIp: "127.0.0.1", backendPort: 53 });
    expect(udp.ok).toBe(true);
  });

  it('dual-stack "" binding: reachable on 127.0.0.1 and ::1 (tcp and udp), one port for both', async () => {
    const m = manager();
    const backend = await tcpServer("127.0.0.1");
    const r = await m.add(tcp({ hostIp: "", backendPort: backend }));
    if (!r.ok) throw new Error(r.error);
    const port = r.value.binding.hostPort;
    expect(r.value.id).toBe(`tcp/*:${port}`);
    expect(r.value.addresses).toEqual([
      { address: "0.0.0.0", family: 4, port },
      { address: "::", family: 6, port },
    ]);
    expect(await echoOver(port, "127.0.0.1", "v4")).toBe("v4");
    expect(await echoOver(port, "::1", "v6")).toBe("v6");

    const u = await m.add({ proto: "udp", hostIp: "", hostPort: 0, backendIp: "127.0.0.1", backendPort: await udpEcho() });
    if (!u.ok) throw new Error(u.error);
    expect(await udpRoundTrip(u.value.binding.hostPort, "127.0.0.1", "udp4")).toBe("ping");
    expect(await udpRoundTrip(u.value.binding.hostPort, "::1", "udp6")).toBe("ping");
  });

  it('deferIpv6Ms: the [::] half of "" comes a moment later, only if the port is still free on IPv6 then', async () => {
    const logged: string[] = [];
    const m = manager(logged);
    const backend = await tcpServer("127.0.0.1");
    // The deferral's timer runs on a clock the test moves; the sockets do not care.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const r = await m.add(tcp({ hostIp: "", backendPort: backend, deferIpv6Ms: 200 }));
    if (!r.ok) throw new Error(r.error);
    const port = r.value.binding.hostPort;
    const addressesOf = (id: string) => m.list().find((b) => b.id === id)?.addresses;
    expect(r.value.addresses).toEqual([{ address: "0.0.0.0", family: 4, port }]);
    vi.advanceTimersByTime(199);
    expect(await connectOutcome(port, "::1")).toBe("ECONNREFUSED");
    vi.advanceTimersByTime(1);
    await eventually("the [::] half", () => addressesOf(r.value.id)?.length === 2);
    expect(addressesOf(r.value.id)).toEqual([
      { address: "0.0.0.0", family: 4, port },
      { address: "::", family: 6, port },
    ]);
    expect(await echoOver(port, "::1", "v6")).toBe("v6");

    // Someone takes [::] meanwhile (another network's IPv6 publishing): IPv4 goes on alone, without an error.
    const other = await m.add(tcp({ hostIp: "", backendPort: backend, deferIpv6Ms: 200 }));
    if (!other.ok) throw new Error(other.error);
    const taken = await tcpServer("::", other.value.binding.hostPort, (s) => s.end("theirs"));
    vi.advanceTimersByTime(200);
    await eventually("the [::] half to be left to its holder", () => logged.some((l) => l.includes(`[::]:${taken}: bind: address already in use`)));
    expect(addressesOf(other.value.id)?.map((a) => a.address)).toEqual(["0.0.0.0"]);
    expect(await echoOver(other.value.binding.hostPort, "127.0.0.1", "v4")).toBe("v4");
    expect(taken).toBe(other.value.binding.hostPort);
    // Removed before its time: the late half never appears.
    const gone = await m.add(tcp({ hostIp: "", backendPort: backend, deferIpv6Ms: 200 }));
    if (!gone.ok) throw new Error(gone.error);
    await m.remove(gone.value);
    expect(vi.getTimerCount()).toBe(0); // its deferral is cancelled, not just left to find the binding gone
    vi.advanceTimersByTime(1_000);
    expect(await connectOutcome(gone.value.binding.hostPort, "::1")).toBe("ECONNREFUSED");
  });

  it('"0.0.0.0" is IPv4 only and "::" IPv6 only, as Docker binds them', async () => {
    const m = manager();
    const backend = await tcpServer("127.0.0.1");
    const v4 = await m.add(tcp({ hostIp: "0.0.0.0", backendPort: backend }));
    const v6 = await m.add(tcp({ hostIp: "::", backendPort: backend }));
    if (!v4.ok || !v6.ok) throw new Error("add failed");
    expect(await connectOutcome(v4.value.binding.hostPort, "::1")).toBe("ECONNREFUSED");
    expect(await connectOutcome(v6.value.binding.hostPort, "127.0.0.1")).toBe("ECONNREFUSED");
    expect(await echoOver(v4.value.binding.hostPort, "127.0.0.1")).toBe("ping");
    expect(await echoOver(v6.value.binding.hostPort, "::1")).toBe("ping");
  });

  it("remove closes the listener and live connections; the port can be bound again at once", async () => {
    const m = manager();
    const backend = await tcpServer("127.0.0.1");
    const r = await m.add(tcp({ backendPort: backend }));
    if (!r.ok) throw new Error(r.error);
    const port = r.value.binding.hostPort;
    // a few finished connections (TIME_WAIT on the proxy side) and two live ones
    for (let i = 0; i < 3; i++) await echoOver(port, "127.0.0.1");
    const live = await Promise.all(
      [0, 1].map(
        () =>
          new Promise<net.Socket>((resolve) => {
            const c = net.connect({ port, host: "127.0.0.1" }, () => {
              c.write("hello");
              c.once("data", () => resolve(c)); // the echo proves the backend leg is up
            });
            c.on("error", () => undefined);
          }),
      ),
    );
    const closed = live.map((c) => new Promise<void>((resolve) => c.on("close", () => resolve())));
    expect(m.list()[0]!.counters.connectionsActive).toBe(2);

    const removed = await m.remove(r.value);
    expect(removed.ok).toBe(true);
    await Promise.all(closed);
    expect(m.list()).toEqual([]);
    expect(await connectOutcome(port, "127.0.0.1")).toBe("ECONNREFUSED");
    // the same port at once: by someone else, then by the proxy again
    const other = net.createServer();
    await new Promise<void>((resolve, reject) => {
      other.once("error", reject);
      other.listen(port, "127.0.0.1", () => resolve());
    });
    await new Promise<void>((resolve) => other.close(() => resolve()));
    const again = await m.add(tcp({ hostPort: port, backendPort: backend }));
    expect(again.ok).toBe(true);
    expect(await echoOver(port, "127.0.0.1", "again")).toBe("again");
  });

  it("remove of an unknown binding is an error", async () => {
    const r = await manager().remove("tcp/127.0.0.1:1");
    expect(r).toEqual({ ok: false, error: "no published port tcp/127.0.0.1:1" });
  });

  it("rejects invalid bindings with a message naming them", async () => {
    const m = manager();
    const bad = await m.add({ proto: "udp", hostIp: "127.0.0.1", hostPort: 70000, backendIp: "127.0.0.1", backendPort: 53 });
    expect(bad).toEqual({ ok: false, error: "invalid port binding udp 127.0.0.1:70000 → 127.0.0.1:53: host port 70000 is out of range 0-65535" });
    const pp = await m.add({ proto: "udp", hostIp: "", hostPort: 0, backendIp: "127.0.0.1", backendPort: 53, proxyProtocol: "v2" });
    expect(pp.ok).toBe(false);
    const host = await m.add(tcp({ hostIp: "localhost", backendPort: 80 }));
    expect(host.ok).toBe(false);
  });

  it("addAny publishes the first free port of a host range", async () => {
    const m = manager();
    const backend = await tcpServer("127.0.0.1");
    const busy = await tcpServer("127.0.0.1");
    const free = await freePort();
    const r = await m.addAny([tcp({ hostPort: busy, backendPort: backend }), tcp({ hostPort: free, backendPort: backend })]);
    if (!r.ok) throw new Error(r.error);
    expect(r.value.binding.hostPort).toBe(free);
    const none = await m.addAny([tcp({ hostPort: busy, backendPort: backend })]);
    expect(none.ok).toBe(false);
    if (!none.ok) expect(none.error).toMatch(/^all ports are allocated/);
  });

  it("list() counters add up across bindings", async () => {
    const m = manager();
    const backend = await tcpServer("127.0.0.1");
    const a = await m.add(tcp({ backendPort: backend }));
    const b = await m.add({ proto: "udp", hostIp: "127.0.0.1", hostPort: 0, backendIp: "127.0.0.1", backendPort: await udpEcho() });
    if (!a.ok || !b.ok) throw new Error("add failed");
    await echoOver(a.value.binding.hostPort, "127.0.0.1", "12345");
    await echoOver(a.value.binding.hostPort, "127.0.0.1", "123");
    await udpRoundTrip(b.value.binding.hostPort, "127.0.0.1", "udp4");
    const byId = new Map(m.list().map((x) => [x.id, x.counters]));
    expect(byId.get(a.value.id)).toMatchObject({ connectionsTotal: 2, bytesIn: 8, bytesOut: 8, errors: 0 });
    expect(byId.get(b.value.id)).toMatchObject({ connectionsTotal: 1, datagramsIn: 1, datagramsOut: 1, bytesIn: 4, bytesOut: 4 });
  });
});
