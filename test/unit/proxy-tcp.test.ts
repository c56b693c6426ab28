import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { Binding } from "../../proxy/binding.js";
import { ProxyManager, type ActiveBinding, type ProxyManagerOptions } from "../../proxy/proxy-manager.js";
import { ReadBufferPool } from "../../proxy/read-buffers.js";
import { eventually } from "../support/eventually.js";

// Loopback only; every port is picked by the kernel.

const BUFFALO = Buffer.from("Buffalo1 buffalo2 Buffalo3 buffalo4 buffalo5 buffalo6 Buffalo7 buffalo8");

const servers: net.Server[] = [];
const managers: ProxyManager[] = [];

afterEach(async () => {
  const ms = managers.splice(0);
  await Promise.all(ms.map((m) => m.closeAll()));
  // every read buffer came back (none leaked by a connection torn down mid-write)
  await eventually("every read buffer back in the pool", () => ms.every((m) => m.bufferUsage().lent === 0), { timeoutMs: 2000 });
  for (const s of servers.splice(0)) {
    s.close();
    (s as net.Server & { closeAllConnections?: () => void }).closeAllConnections?.();
  }
});
afterAll(() => undefined);

function serve(host: string, onConn: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => undefined);
    onConn(s);
  });
  servers.push(server);
  return new Promise((resolve) => server.listen(0, host, () => resolve((server.address() as net.AddressInfo).port)));
}

/** Echo with half-close: ends its write side once the client's FIN arrives. */
const echo = (host = "127.0.0.1"): Promise<number> => serve(host, (s) => s.pipe(s));

async function publish(b: Partial<Binding> & { backendPort: number }, opts?: ProxyManagerOptions): Promise<{ m: ProxyManager; a: ActiveBinding }> {
  const m = new ProxyManager(opts);
  managers.push(m);
  const r = await m.add({ proto: "tcp", hostIp: "127.0.0.1", hostPort: 0, backendIp: "127.0.0.1", ...b });
  if (!r.ok) throw new Error(r.error);
  return { m, a: r.value };
}

function connect(port: number, host = "127.0.0.1"): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host, allowHalfOpen: true }, () => resolve(s));
    s.once("error", reject);
  });
}

function readAll(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on("data", (d: Buffer) => parts.push(d));
    s.on("end", () => resolve(Buffer.concat(parts)));
    s.on("error", reject);
  });
}

/** Resolves with how the socket ended: "end" (FIN), an error code, or "close". */
function outcome(s: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    s.on("end", () => resolve("end"));
    s.on("close", () => resolve("close"));
    s.resume();
  });
}

/**
 * Resolves once `progress()` has not moved for `ms`: a stream's writer stalls when
 * every buffer between it and a reader that does not read is full, and that shows
 * only as a while without progress.
 */
async function stalled(what: string, progress: () => number, ms = 300): Promise<void> {
  let last = progress();
  let since = performance.now();
  await eventually(
    what,
    () => {
      const now = progress();
      if (now !== last) {
        last = now;
        since = performance.now();
      }
      return performance.now() - since >= ms;
    },
    { everyMs: 50, timeoutMs: 10_000 },
  );
}

const counters = (m: ProxyManager) => m.list()[0]!.counters;
const allClosed = (m: ProxyManager) => eventually("every connection closed", () => counters(m).connectionsActive === 0);

describe("tcp proxy", () => {
  it("echoes through the proxy and counts bytes both ways", async () => {
    const { m, a } = await publish({ backendPort: await echo() });
    expect(a.binding.hostPort).toBeGreaterThan(0);
    const c = await connect(a.binding.hostPort);
    const got = readAll(c);
    c.end(BUFFALO);
    expect((await got).equals(BUFFALO)).toBe(true);
    await allClosed(m);
    expect(counters(m)).toMatchObject({
      connectionsTotal: 1,
      connectionsActive: 0,
      bytesIn: BUFFALO.length,
      bytesOut: BUFFALO.length,
      errors: 0,
      bufferedBytes: 0,
    });
  });

  it("half-close: the client's FIN reaches the backend and the full reply still comes back", async () => {
    const request = randomBytes(1 << 20);
    let sawEofFirst = false;
    const port = await serve("127.0.0.1", (s) => {
      const parts: Buffer[] = [];
      s.on("data", (d: Buffer) => parts.push(d));
      s.on("end", () => {
        sawEofFirst = true;
        // reply only after the request is complete: hash + 3 MiB, written after the FIN
        const digest = createHash("sha256").update(Buffer.concat(parts)).digest();
        s.write(digest);
        for (let i = 0; i < 3; i++) s.write(Buffer.alloc(1 << 20, i));
        s.end();
      });
    });
    const { m, a } = await publish({ backendPort: port });
    const c = await connect(a.binding.hostPort);
    const reply = readAll(c);
    c.end(request);
    const got = await reply;
    expect(sawEofFirst).toBe(true);
    expect(got.length).toBe(32 + 3 * (1 << 20));
    expect(got.subarray(0, 32).equals(createHash("sha256").update(request).digest())).toBe(true);
    expect(got.at(-1)).toBe(2);
    await allClosed(m);
  });

  it("half-close the other way: the backend ends first and still receives what the client sends afterwards", async () => {
    let late: Promise<Buffer> | undefined;
    const port = await serve("127.0.0.1", (s) => {
      s.end("bye");
      late = readAll(s);
    });
    const { a } = await publish({ backendPort: port });
    const c = await connect(a.binding.hostPort);
    expect((await readAll(c)).toString()).toBe("bye");
    c.end("still here");
    await eventually("the backend to be reached", () => late !== undefined);
    expect((await late!).toString()).toBe("still here");
  });

  it("moves 100 MB each way concurrently with matching sha256", async () => {
    const { m, a } = await publish({ backendPort: await echo() });
    const total = 100 * 1024 * 1024;
    const block = randomBytes(1 << 20);
    const c = await connect(a.binding.hostPort);
    const sent = createHash("sha256");
    const recv = createHash("sha256");
    let received = 0;
    const done = new Promise<void>((resolve, reject) => {
      c.on("data", (d: Buffer) => {
        recv.update(d);
        received += d.length;
      });
      c.on("end", resolve);
      c.on("error", reject);
    });
    for (let off = 0; off < total; off += block.length) {
      const chunk = Buffer.from(block);
      chunk.writeUInt32BE(off / block.length, 0); // vary the blocks
      sent.update(chunk);
      if (!c.write(chunk)) await new Promise((r) => c.once("drain", r));
    }
    c.end();
    await done;
    expect(received).toBe(total);
    expect(recv.digest("hex")).toBe(sent.digest("hex"));
    await allClosed(m);
    expect(counters(m)).toMatchObject({ bytesIn: total, bytesOut: total, errors: 0 });
  }, 30_000);

  it("reads a bulk upload into pooled buffers (re-wrapped client socket), a short exchange the ordinary way", async () => {
    const small = await publish({ backendPort: await echo() });
    const c1 = await connect(small.a.binding.hostPort);
    const reply = readAll(c1);
    c1.end(BUFFALO);
    expect((await reply).equals(BUFFALO)).toBe(true);
    await allClosed(small.m);
    // Only the backend side's first (minimum-size) buffer went through the pool.
    expect(small.m.bufferUsage().pooled).toBe(16 * 1024);

    const sink = await serve("127.0.0.1", (s) => s.resume().on("end", () => s.end()));
    const bulk = await publish({ backendPort: sink });
    const c2 = await connect(bulk.a.binding.hostPort);
    const closed = outcome(c2);
    for (let i = 0; i < 16; i++) if (!c2.write(Buffer.alloc(1 << 20, i))) await new Promise((r) => c2.once("drain", r));
    c2.end();
    expect(await closed).toBe("end");
    await allClosed(bulk.m);
    expect(counters(bulk.m).bytesIn).toBe(16 << 20);
    // The client side grew past the minimum: its buffers came from the pool too.
    expect(bulk.m.bufferUsage().pooled).toBeGreaterThan(16 * 1024);
  });

  it("completes 200 concurrent connections", async () => {
    const { m, a } = await publish({ backendPort: await echo() });
    const results = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const c = await connect(a.binding.hostPort);
        const got = readAll(c);
        c.end(`conn-${i}`);
        return (await got).toString() === `conn-${i}`;
      }),
    );
    expect(results.every(Boolean)).toBe(true);
    await allClosed(m);
    expect(counters(m)).toMatchObject({ connectionsTotal: 200, errors: 0 });
  });

  it("backpressure, backend → client: a client that does not read bounds what the proxy holds", async () => {
    let written = 0;
    let writer: net.Socket | undefined;
    const block = Buffer.alloc(1 << 20, 7);
    const port = await serve("127.0.0.1", (s) => {
      writer = s;
      const pump = (): void => {
        while (!s.destroyed && s.write(block)) written += block.length;
        if (!s.destroyed) written += block.length; // the last write was queued too
      };
      s.on("drain", pump);
      pump();
    });
    const { m, a } = await publish({ backendPort: port });
    const c = await connect(a.binding.hostPort);
    c.pause(); // a slow reader: reads nothing for now
    const rss0 = process.memoryUsage().rss;
    await stalled("the backend to stall", () => written);
    const snap = counters(m);
    // user space: at most one read (≤ 1 MiB) queued towards the client
    expect(snap.bufferedBytes).toBeLessThanOrEqual(1 << 20);
    // everything else sits in bounded kernel socket buffers
    expect(written).toBeLessThan(64 << 20);
    expect(snap.bytesOut).toBeLessThan(48 << 20);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(64 << 20);
    // the reader wakes up: everything flows again
    let got = 0;
    c.on("data", (d: Buffer) => (got += d.length));
    c.resume();
    await eventually("16 MiB at the client", () => got >= 16 << 20);
    writer?.destroy();
  }, 15_000);

  it("backpressure, client → backend: a backend that does not read bounds what the proxy holds", async () => {
    let sink: net.Socket | undefined;
    const port = await serve("127.0.0.1", (s) => {
      sink = s;
      s.pause();
    });
    const { m, a } = await publish({ backendPort: port });
    const c = await connect(a.binding.hostPort);
    let written = 0;
    const block = Buffer.alloc(1 << 20, 3);
    const pump = (): void => {
      while (!c.destroyed && c.write(block)) written += block.length;
      written += block.length;
    };
    c.on("drain", pump);
    pump();
    await stalled("the client to stall", () => written);
    const snap = counters(m);
    expect(snap.bufferedBytes).toBeLessThanOrEqual(1 << 20); // one read at most, and reads are ≤ 1 MiB (read-buffers.ts)
    expect(written).toBeLessThan(64 << 20);
    let got = 0;
    sink!.on("data", (d: Buffer) => (got += d.length));
    sink!.resume();
    await eventually("16 MiB at the backend", () => got >= 16 << 20);
    c.destroy();
  }, 15_000);

  it("refused backend: the client is reset promptly (Docker-compatible FIN when configured)", async () => {
    const dead = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const { m, a } = await publish({ backendPort: dead });
    const t0 = Date.now();
    const c = await connect(a.binding.hostPort);
    expect(await outcome(c)).toBe("ECONNRESET");
    expect(Date.now() - t0).toBeLessThan(1000);
    await allClosed(m);
    expect(counters(m)).toMatchObject({ connectionsTotal: 1, errors: 1 });

    const fin = await publish({ backendPort: dead }, { tcp: { resetOnBackendFailure: false } });
    const c2 = await connect(fin.a.binding.hostPort);
    expect(await outcome(c2)).toBe("end");
  });

  it("connect timeout: a backend that never answers closes the client after the timeout", async () => {
    const { m, a } = await publish(
      { backendPort: 9 },
      { tcp: { connectTimeoutMs: 200, dial: () => new net.Socket() } }, // a socket that never connects
    );
    const t0 = Date.now();
    const c = await connect(a.binding.hostPort);
    const how = await outcome(c);
    const took = Date.now() - t0;
    expect(["ECONNRESET", "end", "close"]).toContain(how);
    expect(took).toBeGreaterThanOrEqual(150);
    expect(took).toBeLessThan(2000);
    expect(counters(m)).toMatchObject({ connectionsActive: 0, errors: 1 });
  });

  it("an IPv6 client (::1) reaches an IPv4 backend", async () => {
    let seenFrom = "";
    const port = await serve("127.0.0.1", (s) => {
      seenFrom = s.remoteAddress ?? "";
      s.pipe(s);
    });
    const { a } = await publish({ hostIp: "::1", backendPort: port });
    expect(a.addresses).toEqual([{ address: "::1", family: 6, port: a.binding.hostPort }]);
    const c = await connect(a.binding.hostPort, "::1");
    const got = readAll(c);
    c.end(BUFFALO);
    expect((await got).equals(BUFFALO)).toBe(true);
    expect(seenFrom).toBe("127.0.0.1");
  });

  it("a client reset is propagated to the backend", async () => {
    let backendSide: Promise<string> | undefined;
    const port = await serve("127.0.0.1", (s) => {
      backendSide = outcome(s);
    });
    const { m, a } = await publish({ backendPort: port });
    const c = await connect(a.binding.hostPort);
    c.write("x");
    await eventually("the backend to be reached", () => backendSide !== undefined);
    c.resetAndDestroy();
    expect(await backendSide).toBe("ECONNRESET");
    await allClosed(m);
  });
});

describe("read buffer sizing", () => {
  it("grows on full reads, shrinks on small ones, within bounds", () => {
    const p = new ReadBufferPool(16 * 1024, 1024 * 1024);
    let size = p.minSize;
    for (let i = 0; i < 10; i++) size = p.nextSize(size, size);
    expect(size).toBe(1024 * 1024);
    expect(p.nextSize(size, 600 * 1024)).toBe(size);
    for (let i = 0; i < 10; i++) size = p.nextSize(size, 100);
    expect(size).toBe(16 * 1024);
    const b = p.take(size);
    p.give(b);
    expect(p.take(size)).toBe(b);
  });

  it("caps what connections hold beyond the minimum with a shared budget", () => {
    const p = new ReadBufferPool(16 * 1024, 1024 * 1024, 2 * 1024 * 1024);
    const a = p.take(1024 * 1024);
    const b = p.take(1024 * 1024);
    expect(p.usage().lent).toBe(2 * (1024 - 16) * 1024);
    expect(p.take(1024 * 1024).length).toBe(16 * 1024); // budget spent: the minimum
    p.give(a);
    expect(p.take(1024 * 1024).length).toBe(1024 * 1024);
    p.forget(b);
  });
});
