import dgram from "node:dgram";
import { mkdtemp, rm, utimes, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import dnsPacket from "dns-packet";
import type { Answer, DecodedPacket, OptAnswer, Packet, PacketOpt, RecordType } from "dns-packet";
import { afterEach, describe, expect, it, vi } from "vitest";
import { DnsListener, type DnsListenerOptions } from "../../driver/dns/dns-listener.js";
import { ClientLimits } from "../../driver/dns/client-limits.js";
import { MAX_QUERY_SIZE, screenQuery } from "../../driver/dns/dns-wire.js";
import { eventually, quiet } from "../support/eventually.js";
import { HostResolvers, parseResolvConf, plainAddress, type HostPort, type UpstreamSource } from "../../driver/dns/upstreams.js";
import type { NameDecision, NameQuestion, NameResolver } from "../../driver/contracts/names.js";
import { createLogger } from "../../lib/log.js";

// Real sockets on 127.0.0.1, every port picked by the kernel. Nothing waits a
// fixed time: a test awaits the answer, the close or the callback it expects
// (timeouts below only bound a test that would otherwise hang).

const log = createLogger("silent");
const LOCAL = "127.0.0.1";
const REPLY_WAIT_MS = 3000;

type Decoded = DecodedPacket & { rcode: string; opcode: string };
const decode = (buf: Buffer): Decoded => dnsPacket.decode(buf) as Decoded;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

// ---- the resolver ----

/** A NameResolver from a function; records every question it was asked. */
class FakeResolver implements NameResolver {
  readonly asked: NameQuestion[] = [];
  constructor(private readonly decideFn: (q: NameQuestion) => NameDecision | Promise<NameDecision> = () => ({ kind: "forward" })) {}
  async decide(q: NameQuestion): Promise<NameDecision> {
    this.asked.push(q);
    return this.decideFn(q);
  }
}

/** Answers `names` (lower case, no trailing dot, class IN) with their addresses for A, no-data for other types; forwards the rest. */
function table(names: Record<string, string[]>): FakeResolver {
  return new FakeResolver((q) => {
    const ips = q.class === "IN" ? names[q.name.replace(/\.$/, "").toLowerCase()] : undefined;
    if (ips === undefined) return { kind: "forward" };
    return q.type === "A" ? { kind: "addresses", ips } : { kind: "no-data" };
  });
}

// ---- sockets ----

function bindUdp(port = 0, host = LOCAL, type: "udp4" | "udp6" = "udp4"): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(type);
    s.once("error", reject);
    s.bind(port, host, () => {
      s.off("error", reject);
      resolve(s);
    });
  });
}

function listenTcp(port = 0, host = LOCAL): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}

const closeUdp = (s: dgram.Socket) => new Promise<void>((resolve) => s.close(() => resolve()));
const closeTcp = (s: net.Server) => new Promise<void>((resolve) => s.close(() => resolve()));

/** A UDP socket and a TCP server on one port the kernel picked. */
async function bindPair(): Promise<{ port: number; udp: dgram.Socket; tcp: net.Server }> {
  for (;;) {
    const udp = await bindUdp();
    const port = udp.address().port;
    try {
      return { port, udp, tcp: await listenTcp(port) };
    } catch {
      await closeUdp(udp);
    }
  }
}

/** A port with nothing listening on it, UDP or TCP (so queries to it are refused at once). */
async function deadPort(): Promise<number> {
  const { port, udp, tcp } = await bindPair();
  await Promise.all([closeUdp(udp), closeTcp(tcp)]);
  return port;
}

function frame(msg: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(msg.length);
  return Buffer.concat([len, msg]);
}

/** Calls `onMessage` for every length-prefixed message read from `sock`. */
function readFrames(sock: net.Socket, onMessage: (msg: Buffer) => void): void {
  let pending = Buffer.alloc(0);
  sock.on("data", (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
      onMessage(pending.subarray(2, 2 + pending.readUInt16BE(0)));
      pending = pending.subarray(2 + pending.readUInt16BE(0));
    }
  });
}

// ---- the fake upstream ----

interface FakeUpstream {
  port: number;
  address: HostPort;
  received: Array<{ transport: "udp" | "tcp"; raw: Buffer }>;
  /** The answers it sent, byte for byte. */
  sent: Buffer[];
}

/** The upstream's answer: A 192.0.2.53, TTL 77, with RA and AD set (flags our own answers never carry). */
function upstreamAnswer(raw: Buffer, idDelta = 0): Buffer {
  const q = dnsPacket.decode(raw);
  return dnsPacket.encode({
    type: "response",
    id: ((q.id ?? 0) + idDelta) & 0xffff,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | dnsPacket.AUTHENTIC_DATA,
    questions: q.questions,
    answers: [{ type: "A", name: q.questions?.[0]?.name ?? "", ttl: 77, data: "192.0.2.53" }],
  });
}

/**
 * A DNS server on UDP and TCP built with dns-packet. "answer" answers every
 * query (after a reply with the wrong id first, with `wrongIdFirst`);
 * "silent" records the query and never answers.
 */
async function fakeUpstream(
  mode: "answer" | "silent" = "answer",
  opts: { wrongIdFirst?: boolean; ignore?: (name: string) => boolean } = {},
): Promise<FakeUpstream> {
  const silent = (raw: Buffer): boolean => mode === "silent" || opts.ignore?.(dnsPacket.decode(raw).questions?.[0]?.name ?? "") === true;
  const { port, udp, tcp } = await bindPair();
  const up: FakeUpstream = { port, address: { host: LOCAL, port }, received: [], sent: [] };
  udp.on("message", (raw, rinfo) => {
    up.received.push({ transport: "udp", raw: Buffer.from(raw) });
    if (silent(raw)) return;
    if (opts.wrongIdFirst === true) udp.send(upstreamAnswer(raw, 1), rinfo.port, rinfo.address);
    const answer = upstreamAnswer(raw);
    up.sent.push(answer);
    udp.send(answer, rinfo.port, rinfo.address);
  });
  const conns = new Set<net.Socket>();
  tcp.on("connection", (sock) => {
    conns.add(sock);
    sock.on("close", () => conns.delete(sock));
    sock.on("error", () => undefined);
    readFrames(sock, (raw) => {
      up.received.push({ transport: "tcp", raw: Buffer.from(raw) });
      if (silent(raw)) return;
      const answer = upstreamAnswer(raw);
      up.sent.push(answer);
      sock.write(frame(answer));
    });
  });
  cleanups.push(async () => {
    for (const c of conns) c.destroy();
    await Promise.all([closeUdp(udp), closeTcp(tcp)]);
  });
  return up;
}

// ---- the listener and its clients ----

const upstreamsOf = (servers: Array<string | HostPort>): UpstreamSource => new HostResolvers({ servers, log });

async function startListener(resolver: NameResolver, upstreams: Array<string | HostPort> = [], extra: Partial<DnsListenerOptions> = {}) {
  const listener = new DnsListener({
    listen: [{ host: LOCAL, port: 0 }],
    resolver,
    upstreams: upstreamsOf(upstreams),
    log,
    upstreamTimeoutMs: 300,
    ...extra,
  });
  cleanups.push(() => listener.close());
  const started = await listener.start();
  if (!started.ok) throw new Error(started.error);
  const port = listener.addresses()[0]!.port;
  return { listener, port };
}

function query(name: string, type: RecordType = "A", opts: { id?: number; edns?: number; cookie?: boolean } = {}): Buffer {
  const packet: Packet = {
    type: "query",
    id: opts.id ?? 4242,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: "IN" }],
  };
  if (opts.edns !== undefined) {
    // A client cookie (RFC 7873), an option dns-packet has no type for.
    const cookie = { code: 10, data: Buffer.from("0123456789abcdef", "hex") } as unknown as PacketOpt;
    const opt: OptAnswer = {
      type: "OPT",
      name: ".",
      udpPayloadSize: opts.edns,
      extendedRcode: 0,
      ednsVersion: 0,
      flags: 0,
      flag_do: false,
      options: opts.cookie === true ? [cookie] : [],
    };
    packet.additionals = [opt];
  }
  return dnsPacket.encode(packet);
}

/** A UDP client socket; every message it receives is queued for nextReply(). */
async function udpClient(from = LOCAL) {
  const sock = await bindUdp(0, from);
  cleanups.push(() => closeUdp(sock));
  const inbox: Buffer[] = [];
  const waiters: Array<(b: Buffer) => void> = [];
  sock.on("message", (msg) => {
    const w = waiters.shift();
    if (w === undefined) inbox.push(msg);
    else w(msg);
  });
  const nextReply = (): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const queued = inbox.shift();
      if (queued !== undefined) return resolve(queued);
      const timer = setTimeout(() => reject(new Error("no DNS reply")), REPLY_WAIT_MS);
      waiters.push((b) => {
        clearTimeout(timer);
        resolve(b);
      });
    });
  return {
    send: (port: number, msg: Buffer, host = LOCAL) => sock.send(msg, port, host),
    nextReply,
    ask: async (port: number, msg: Buffer, host = LOCAL) => {
      const reply = nextReply();
      sock.send(msg, port, host);
      return reply;
    },
  };
}

async function udpAsk(port: number, msg: Buffer, from = LOCAL): Promise<Buffer> {
  return (await udpClient(from)).ask(port, msg);
}

/** One TCP connection: its replies in arrival order, and a promise of its close. */
async function tcpClient(port: number, from = LOCAL) {
  const sock = net.connect({ port, host: LOCAL, localAddress: from });
  cleanups.push(() => void sock.destroy());
  await new Promise<void>((resolve, reject) => {
    sock.once("connect", resolve);
    sock.once("error", reject);
  });
  const replies: Buffer[] = [];
  const waiters: Array<() => void> = [];
  readFrames(sock, (msg) => {
    replies.push(Buffer.from(msg));
    for (const w of waiters.splice(0)) w();
  });
  let isClosed = false;
  const closed = new Promise<void>((resolve) => sock.once("close", () => resolve()));
  void closed.then(() => (isClosed = true));
  sock.on("error", () => undefined);
  const replyCount = (n: number): Promise<Buffer[]> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${replies.length} of ${n} TCP replies`)), REPLY_WAIT_MS);
      const check = (): void => {
        if (replies.length >= n) {
          clearTimeout(timer);
          resolve(replies.slice(0, n));
        } else waiters.push(check);
      };
      check();
    });
  return { sock, closed, isClosed: () => isClosed, replies, replyCount, write: (b: Buffer) => sock.write(b) };
}

async function tcpAsk(port: number, msg: Buffer, from = LOCAL): Promise<Buffer> {
  const c = await tcpClient(port, from);
  c.write(frame(msg));
  return (await c.replyCount(1))[0]!;
}

// ---- tests ----

describe("DNS listener: our names", () => {
  it("answers A with the addresses, AA, RD copied, RA, the question echoed and TTL 0", async () => {
    const resolver = table({ web: ["10.1.0.5"] });
    const { port } = await startListener(resolver);
    const reply = decode(await udpAsk(port, query("web", "A", { id: 777 })));
    expect(reply).toMatchObject({ id: 777, type: "response", rcode: "NOERROR", flag_aa: true, flag_rd: true, flag_ra: true, flag_tc: false });
    expect(reply.questions).toEqual([{ name: "web", type: "A", class: "IN" }]);
    expect(reply.answers).toEqual([expect.objectContaining({ type: "A", name: "web", class: "IN", ttl: 0, data: "10.1.0.5" })]);
  });

  it("gives the TTL of its options", async () => {
    const { port } = await startListener(table({ web: ["10.1.0.5"] }), [], { ttlSeconds: 5 });
    const reply = decode(await udpAsk(port, query("web")));
    expect(reply.answers?.[0]).toMatchObject({ ttl: 5 });
  });

  it("answers every address, in the resolver's order, and keeps the question's case", async () => {
    const { port } = await startListener(table({ db: ["10.1.0.7", "10.1.0.3", "10.2.0.9"] }));
    const reply = decode(await udpAsk(port, query("Db.")));
    expect(reply.questions?.[0]?.name).toBe("Db");
    expect(reply.answers?.map((a) => (a.type === "A" ? a.data : undefined))).toEqual(["10.1.0.7", "10.1.0.3", "10.2.0.9"]);
  });

  it("answers AAAA of one of our names with an authoritative no-data, and asks with the right types", async () => {
    const resolver = table({ web: ["10.1.0.5"] });
    const { port, listener } = await startListener(resolver);
    const reply = decode(await udpAsk(port, query("web", "AAAA")));
    expect(reply).toMatchObject({ rcode: "NOERROR", flag_aa: true, flag_ra: true });
    expect(reply.answers).toEqual([]);
    expect(reply.questions).toEqual([{ name: "web", type: "AAAA", class: "IN" }]);
    await udpAsk(port, query("web", "MX"));
    expect(resolver.asked.map((q) => q.type)).toEqual(["AAAA", "other"]);
    expect(listener.stats()).toMatchObject({ queries: 2, noData: 2, answered: 0 });
  });

  it("treats addresses for a question that is not A as no-data", async () => {
    const { port } = await startListener(new FakeResolver(() => ({ kind: "addresses", ips: ["10.1.0.5"] })));
    const reply = decode(await udpAsk(port, query("web", "AAAA")));
    expect(reply).toMatchObject({ rcode: "NOERROR", flag_aa: true });
    expect(reply.answers).toEqual([]);
  });

  it("passes the client's address as the source, over UDP and TCP", async () => {
    const resolver = table({ web: ["10.1.0.5"] });
    const { port } = await startListener(resolver);
    await udpAsk(port, query("web"));
    await tcpAsk(port, query("web"));
    expect(resolver.asked.map((q) => q.source)).toEqual([LOCAL, LOCAL]);
  });

  it("gives IPv4 clients of a dual-stack socket as plain IPv4 sources", async (ctx) => {
    const probe = await bindUdp(0, "::", "udp6").catch(() => undefined);
    if (probe === undefined) return ctx.skip();
    await closeUdp(probe);
    const resolver = table({ web: ["10.1.0.5"] });
    const { port } = await startListener(resolver, [], { listen: [{ host: "::", port: 0 }] });
    await udpAsk(port, query("web"));
    await tcpAsk(port, query("web"));
    expect(resolver.asked.map((q) => q.source)).toEqual([LOCAL, LOCAL]);
    expect(plainAddress("::ffff:10.1.0.5")).toBe("10.1.0.5");
    expect(plainAddress("fd00::5")).toBe("fd00::5");
  });

  it("answers over TCP", async () => {
    const { port, listener } = await startListener(table({ web: ["10.1.0.5", "10.1.0.6"] }));
    const reply = decode(await tcpAsk(port, query("web", "A", { id: 9 })));
    expect(reply).toMatchObject({ id: 9, rcode: "NOERROR", flag_aa: true });
    expect(reply.answers).toHaveLength(2);
    expect(listener.stats()).toMatchObject({ queries: 1, tcpQueries: 1, answered: 1 });
  });
});

describe("DNS listener: truncation", () => {
  const many = Array.from({ length: 60 }, (_, i) => `10.9.${Math.floor(i / 250)}.${(i % 250) + 1}`);

  it("cuts a UDP answer to 512 bytes with TC set; the client gets all of it over TCP", async () => {
    const { port, listener } = await startListener(table({ "replicated-service": many }));
    const raw = await udpAsk(port, query("replicated-service"));
    const cut = decode(raw);
    expect(raw.length).toBeLessThanOrEqual(512);
    expect(cut).toMatchObject({ flag_tc: true, flag_aa: true, rcode: "NOERROR" });
    expect(cut.answers!.length).toBeGreaterThan(0);
    expect(cut.answers!.length).toBeLessThan(many.length);
    const full = decode(await tcpAsk(port, query("replicated-service")));
    expect(full.flag_tc).toBe(false);
    expect(full.answers).toHaveLength(many.length);
    expect(listener.stats()).toMatchObject({ truncated: 1, answered: 2, tcpQueries: 1 });
  });

  it("honours the client's EDNS UDP size, and answers with an OPT record", async () => {
    const { port } = await startListener(table({ "replicated-service": many }));
    const raw = await udpAsk(port, query("replicated-service", "A", { edns: 4096 }));
    const reply = decode(raw);
    expect(raw.length).toBeGreaterThan(512);
    expect(reply.flag_tc).toBe(false);
    expect(reply.answers).toHaveLength(many.length);
    expect(reply.additionals).toEqual([expect.objectContaining({ type: "OPT" })]);
    // An EDNS size below 512 still means 512.
    const small = decode(await udpAsk(port, query("replicated-service", "A", { edns: 100 })));
    expect(small.flag_tc).toBe(true);
    expect(small.answers!.length).toBeGreaterThan(0);
  });
});

describe("DNS listener: forwarding", () => {
  it("relays the query and the upstream's answer byte for byte (its flags, its TTL, EDNS options)", async () => {
    const up = await fakeUpstream();
    const { port, listener } = await startListener(table({}), [up.address]);
    const q = query("example.com", "A", { id: 31337, edns: 1232, cookie: true });
    const raw = await udpAsk(port, q);
    expect(up.received).toHaveLength(1);
    expect(up.received[0]!.transport).toBe("udp");
    expect(up.received[0]!.raw.equals(q)).toBe(true);
    expect(raw.equals(up.sent[0]!)).toBe(true);
    const reply = decode(raw);
    expect(reply).toMatchObject({ id: 31337, flag_ad: true, flag_aa: false });
    expect(reply.answers?.[0]).toMatchObject({ data: "192.0.2.53", ttl: 77 });
    expect(listener.stats()).toMatchObject({ queries: 1, forwarded: 1, forwardFailed: 0 });
  });

  it("forwards a TCP query over TCP", async () => {
    const up = await fakeUpstream();
    const { port, listener } = await startListener(table({}), [up.address]);
    const q = query("example.com", "A", { id: 5 });
    const raw = await tcpAsk(port, q);
    expect(up.received.map((r) => r.transport)).toEqual(["tcp"]);
    expect(up.received[0]!.raw.equals(q)).toBe(true);
    expect(raw.equals(up.sent[0]!)).toBe(true);
    expect(listener.stats()).toMatchObject({ tcpQueries: 1, forwarded: 1 });
  });

  it("asks the resolver about questions of another class too, and forwards them when it says so", async () => {
    const up = await fakeUpstream();
    const resolver = table({ "version.bind": ["10.1.0.5"] });
    const { port } = await startListener(resolver, [up.address]);
    const q = dnsPacket.encode({ type: "query", id: 1, questions: [{ type: "TXT", name: "version.bind", class: "CH" }] });
    const raw = await udpAsk(port, q);
    expect(raw.equals(up.sent[0]!)).toBe(true);
    expect(resolver.asked).toEqual([{ name: "version.bind", type: "other", class: "other", source: LOCAL }]);
  });

  it("never forwards what the resolver says may not go out (a client with no way out): SERVFAIL, over UDP and TCP, any class", async () => {
    const up = await fakeUpstream();
    const resolver = new FakeResolver((q) => (q.name === "vault" && q.class === "IN" ? { kind: "addresses", ips: ["10.1.0.5"] } : { kind: "not-forwarded" }));
    const { port, listener } = await startListener(resolver, [up.address]);
    expect(decode(await udpAsk(port, query("vault", "A", { id: 30 })))).toMatchObject({ id: 30, rcode: "NOERROR" });
    const reply = decode(await udpAsk(port, query("secret.outside.lab", "A", { id: 31 })));
    expect(reply).toMatchObject({ id: 31, rcode: "SERVFAIL", flag_aa: false });
    expect(reply.questions).toEqual([{ name: "secret.outside.lab", type: "A", class: "IN" }]);
    expect(decode(await tcpAsk(port, query("secret.outside.lab", "TXT", { id: 32 })))).toMatchObject({ id: 32, rcode: "SERVFAIL" });
    const ch = dnsPacket.encode({ type: "query", id: 33, questions: [{ type: "TXT", name: "version.bind", class: "CH" }] });
    expect(decode(await udpAsk(port, ch))).toMatchObject({ id: 33, rcode: "SERVFAIL" });
    expect(up.received).toEqual([]);
    expect(listener.stats()).toMatchObject({ answered: 1, notForwarded: 3, forwarded: 0, forwardFailed: 0 });
  });

  it("moves on to the next upstream when the first refuses (UDP and TCP)", async () => {
    const up = await fakeUpstream();
    const { port, listener } = await startListener(table({}), [{ host: LOCAL, port: await deadPort() }, up.address]);
    expect(decode(await udpAsk(port, query("example.com"))).answers).toHaveLength(1);
    expect(decode(await tcpAsk(port, query("example.com"))).answers).toHaveLength(1);
    expect(listener.stats()).toMatchObject({ forwarded: 2, forwardFailed: 0 });
  });

  it("moves on to the next upstream when the first does not answer in time", async () => {
    const silent = await fakeUpstream("silent");
    const up = await fakeUpstream();
    const { port } = await startListener(table({}), [silent.address, up.address], { upstreamTimeoutMs: 150 });
    const raw = await udpAsk(port, query("example.com"));
    expect(raw.equals(up.sent[0]!)).toBe(true);
    expect(silent.received).toHaveLength(1);
    const viaTcp = await tcpAsk(port, query("example.com"));
    expect(viaTcp.equals(up.sent[1]!)).toBe(true);
    expect(silent.received.map((r) => r.transport)).toEqual(["udp", "tcp"]);
  });

  it("accepts only a reply with the query's id", async () => {
    const up = await fakeUpstream("answer", { wrongIdFirst: true });
    const { port } = await startListener(table({}), [up.address]);
    const raw = await udpAsk(port, query("example.com", "A", { id: 100 }));
    expect(decode(raw).id).toBe(100);
    expect(raw.equals(up.sent[0]!)).toBe(true);
  });

  it("answers SERVFAIL, with the question, when no upstream answers", async () => {
    const silent = await fakeUpstream("silent");
    const { port, listener } = await startListener(table({}), [{ host: LOCAL, port: await deadPort() }, silent.address], { upstreamTimeoutMs: 100 });
    const reply = decode(await udpAsk(port, query("example.com", "A", { id: 8 })));
    expect(reply).toMatchObject({ id: 8, rcode: "SERVFAIL", flag_aa: false, flag_rd: true });
    expect(reply.questions).toEqual([{ name: "example.com", type: "A", class: "IN" }]);
    expect(decode(await tcpAsk(port, query("example.com"))).rcode).toBe("SERVFAIL");
    expect(listener.stats()).toMatchObject({ forwarded: 0, forwardFailed: 2 });
  });

  it("answers SERVFAIL when no upstream is configured", async () => {
    const { port, listener } = await startListener(table({}), []);
    expect(decode(await udpAsk(port, query("example.com"))).rcode).toBe("SERVFAIL");
    expect(listener.stats()).toMatchObject({ forwardFailed: 1 });
  });

  it("never forwards to itself", async () => {
    const resolver = table({});
    const self: UpstreamSource = { servers: async () => listener.addresses() };
    const listener = new DnsListener({ listen: [{ host: LOCAL, port: 0 }], resolver, upstreams: self, log, upstreamTimeoutMs: 300 });
    cleanups.push(() => listener.close());
    expect((await listener.start()).ok).toBe(true);
    const reply = decode(await udpAsk(listener.addresses()[0]!.port, query("example.com")));
    expect(reply.rcode).toBe("SERVFAIL");
    expect(listener.stats()).toMatchObject({ queries: 1, forwardFailed: 1 });
  });
});

describe("DNS listener: bad input and failures", () => {
  it("drops what is no query, answers FORMERR and NOTIMP, and keeps serving", async () => {
    const { port, listener } = await startListener(table({ web: ["10.1.0.5"] }));
    const client = await udpClient();
    // Too short for a header: dropped. Then a valid query: its answer is the first reply.
    client.send(port, Buffer.from([1, 2, 3, 4, 5]));
    expect(decode(await client.ask(port, query("web", "A", { id: 1 })))).toMatchObject({ id: 1, rcode: "NOERROR" });
    // A header that promises a question it does not carry: FORMERR with its id.
    const headerOnly = dnsPacket.encode({ type: "query", id: 0xbeef, flags: dnsPacket.RECURSION_DESIRED, questions: [] });
    headerOnly.writeUInt16BE(1, 4);
    expect(decode(await client.ask(port, headerOnly))).toMatchObject({ id: 0xbeef, rcode: "FORMERR", type: "response" });
    // Two questions, or none: FORMERR.
    const two = dnsPacket.encode({
      type: "query",
      id: 2,
      questions: [
        { type: "A", name: "web" },
        { type: "A", name: "db" },
      ],
    });
    expect(decode(await client.ask(port, two))).toMatchObject({ id: 2, rcode: "FORMERR" });
    const none = dnsPacket.encode({ type: "query", id: 3, questions: [] });
    expect(decode(await client.ask(port, none))).toMatchObject({ id: 3, rcode: "FORMERR" });
    // Another opcode (STATUS = 2): NOTIMP, with the opcode echoed.
    const status = dnsPacket.encode({ type: "query", id: 4, flags: 2 << 11, questions: [{ type: "A", name: "web" }] });
    expect(decode(await client.ask(port, status))).toMatchObject({ id: 4, rcode: "NOTIMP", opcode: "STATUS" });
    // A response sent to us: dropped, like the short packet.
    client.send(port, dnsPacket.encode({ type: "response", id: 5, questions: [{ type: "A", name: "web" }] }));
    expect(decode(await client.ask(port, query("web", "A", { id: 6 })))).toMatchObject({ id: 6, rcode: "NOERROR" });
    expect(listener.stats()).toMatchObject({ queries: 8, dropped: 2, formErr: 3, notImp: 1, answered: 2 });
  });

  it("closes a TCP connection that sends a zero-length message, and keeps serving", async () => {
    const { port, listener } = await startListener(table({ web: ["10.1.0.5"] }));
    const bad = await tcpClient(port);
    bad.write(Buffer.from([0, 0, 1, 2]));
    await bad.closed;
    expect(decode(await tcpAsk(port, query("web"))).rcode).toBe("NOERROR");
    expect(listener.stats()).toMatchObject({ dropped: 1, answered: 1 });
  });

  it("answers SERVFAIL when the resolver throws or does not decide in time", async () => {
    const { port, listener } = await startListener(
      new FakeResolver((q) => {
        if (q.name === "boom") throw new Error("store gone");
        return new Promise<NameDecision>(() => undefined);
      }),
      [],
      { resolverTimeoutMs: 100 },
    );
    expect(decode(await udpAsk(port, query("boom", "A", { id: 11 })))).toMatchObject({ id: 11, rcode: "SERVFAIL", flag_aa: false });
    expect(decode(await tcpAsk(port, query("hangs", "A", { id: 12 })))).toMatchObject({ id: 12, rcode: "SERVFAIL" });
    expect(listener.stats()).toMatchObject({ resolverFailed: 2 });
  });

  it("answers SERVFAIL to a decision it cannot use", async () => {
    const { port, listener } = await startListener(new FakeResolver(() => ({ kind: "addresses" }) as unknown as NameDecision));
    expect(decode(await udpAsk(port, query("web", "A", { id: 13 })))).toMatchObject({ id: 13, rcode: "SERVFAIL" });
    expect(listener.stats()).toMatchObject({ resolverFailed: 1 });
  });

  it("answers a TCP client that half-closes after its query, then closes", async () => {
    const up = await fakeUpstream();
    const { port } = await startListener(table({ web: ["10.1.0.5"] }), [up.address]);
    const c = await tcpClient(port);
    c.write(Buffer.concat([frame(query("web", "A", { id: 21 })), frame(query("example.com", "A", { id: 22 }))]));
    c.sock.end();
    const replies = await c.replyCount(2);
    expect(replies.map((r) => decode(r).id).sort()).toEqual([21, 22]);
    await c.closed;
  });

  it("serves at most tcpMaxInFlight queries of one TCP connection at a time, and all of them", async () => {
    let current = 0;
    let most = 0;
    const resolver = new FakeResolver(async () => {
      current++;
      most = Math.max(most, current);
      await new Promise((resolve) => setImmediate(resolve));
      current--;
      return { kind: "addresses", ips: ["10.1.0.5"] };
    });
    const { port } = await startListener(resolver, [], { tcpMaxInFlight: 3 });
    const c = await tcpClient(port);
    // Ten pipelined queries in one write: without the cap all ten would be decided at once.
    c.write(Buffer.concat(Array.from({ length: 10 }, (_, i) => frame(query("web", "A", { id: 100 + i })))));
    const replies = await c.replyCount(10);
    expect(replies.map((r) => decode(r).id).sort()).toEqual(Array.from({ length: 10 }, (_, i) => 100 + i));
    expect(most).toBe(3);
  });

  it("refuses queries beyond maxInFlight", async () => {
    let release: () => void = () => undefined;
    let entered: () => void = () => undefined;
    const inResolver = new Promise<void>((resolve) => (entered = resolve));
    const resolver = new FakeResolver((q) => {
      if (q.name !== "slow") return { kind: "addresses", ips: ["10.1.0.5"] };
      entered();
      return new Promise<NameDecision>((resolve) => (release = () => resolve({ kind: "addresses", ips: ["10.1.0.6"] })));
    });
    const { port, listener } = await startListener(resolver, [], { maxInFlight: 1, resolverTimeoutMs: REPLY_WAIT_MS });
    const slow = udpAsk(port, query("slow", "A", { id: 1 }));
    await inResolver;
    expect(decode(await udpAsk(port, query("web", "A", { id: 2 })))).toMatchObject({ id: 2, rcode: "REFUSED" });
    release();
    expect(decode(await slow)).toMatchObject({ id: 1, rcode: "NOERROR" });
    expect(listener.stats()).toMatchObject({ refused: 1, answered: 1 });
  });

  it("closes an idle TCP connection", async () => {
    const { port } = await startListener(table({}), [], { tcpIdleTimeoutMs: 100 });
    const c = await tcpClient(port);
    await c.closed;
    expect(c.sock.destroyed).toBe(true);
  });
});

/** A "query" of about 61 KB: one question and 4,077 answer records (no resolver sends it; dns-packet would decode every record). */
function hugeQuery(id: number): Buffer {
  const answers: Answer[] = Array.from({ length: 4077 }, (_, i) => ({ type: "A", name: ".", ttl: 0, data: `10.0.${(i >> 8) & 255}.${i & 255}` }));
  return dnsPacket.encode({ type: "query", id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name: "x" }], answers });
}

/** A query for `name` with EDNS padding (RFC 7830) to make it about `size` bytes. */
function paddedQuery(name: string, id: number, padding: number): Buffer {
  const pad = { code: 12, length: padding } as unknown as PacketOpt;
  const opt: OptAnswer = { type: "OPT", name: ".", udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [pad] };
  return dnsPacket.encode({ type: "query", id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name }], additionals: [opt] });
}

/** The listener's calls of dns-packet's decoder on messages larger than any query (the test's own decoding reads small replies). */
function spyOnBigDecodes() {
  const spy = vi.spyOn(dnsPacket, "decode");
  cleanups.push(() => spy.mockRestore());
  return () => spy.mock.calls.filter(([buf]) => buf.length > MAX_QUERY_SIZE).length;
}

describe("DNS listener: screening on the header and the size", () => {
  it("answers a 61 KB query with 4,077 answer records FORMERR without decoding it; over TCP, closes before reading it", async () => {
    const bigDecodes = spyOnBigDecodes();
    const { port, listener } = await startListener(table({ web: ["10.1.0.5"] }));
    const huge = hugeQuery(0xabc);
    expect(huge.length).toBeGreaterThan(60_000);
    expect(decode(await udpAsk(port, huge))).toMatchObject({ id: 0xabc, rcode: "FORMERR", type: "response" });
    const c = await tcpClient(port);
    c.write(frame(huge));
    await c.closed;
    expect(c.replies).toEqual([]);
    expect(bigDecodes()).toBe(0);
    expect(decode(await udpAsk(port, query("web", "A", { id: 2 })))).toMatchObject({ id: 2, rcode: "NOERROR" });
    expect(listener.stats()).toMatchObject({ formErr: 1, dropped: 1, answered: 1 });
  });

  it("rejects from the header what no query carries: answer or authority records, more than one additional, no EDNS over 512 bytes, any over 4096 (TCP: see below)", async () => {
    const resolver = table({ web: ["10.1.0.5"] });
    const { port, listener } = await startListener(resolver);
    const client = await udpClient();
    const withCounts = (id: number, at: number, count: number): Buffer => {
      const q = query("web", "A", { id });
      q.writeUInt16BE(count, at);
      return q;
    };
    expect(decode(await client.ask(port, withCounts(1, 6, 1)))).toMatchObject({ id: 1, rcode: "FORMERR" }); // ANCOUNT 1
    expect(decode(await client.ask(port, withCounts(2, 8, 1)))).toMatchObject({ id: 2, rcode: "FORMERR" }); // NSCOUNT 1
    expect(decode(await client.ask(port, withCounts(3, 10, 2)))).toMatchObject({ id: 3, rcode: "FORMERR" }); // ARCOUNT 2
    // 600 bytes without EDNS: FORMERR; with EDNS (padding), served; over 4096 even with EDNS: FORMERR.
    const long = Buffer.concat([query("web", "A", { id: 4 }), Buffer.alloc(600)]);
    expect(decode(await client.ask(port, long))).toMatchObject({ id: 4, rcode: "FORMERR" });
    const padded = paddedQuery("web", 5, 600);
    expect(padded.length).toBeGreaterThan(600);
    expect(decode(await client.ask(port, padded))).toMatchObject({ id: 5, rcode: "NOERROR", answers: [expect.objectContaining({ data: "10.1.0.5" })] });
    expect(decode(await client.ask(port, paddedQuery("web", 6, 4100)))).toMatchObject({ id: 6, rcode: "FORMERR" });
    expect(resolver.asked).toHaveLength(1);
    expect(listener.stats()).toMatchObject({ formErr: 5, answered: 1 });
  });

  // The brief's measure: screening is what a flood of these costs now, decoding what each cost before.
  it("screens 1,000 such messages in less time than dns-packet decodes 100 of them", { timeout: 60_000 }, () => {
    const huge = hugeQuery(1);
    let rejected = 0;
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) if (screenQuery(huge, "udp").kind === "reject") rejected++;
    const screening = performance.now() - t0;
    const t1 = performance.now();
    for (let i = 0; i < 100; i++) dnsPacket.decode(huge);
    const decoding = performance.now() - t1;
    expect(rejected).toBe(1000);
    expect(screening, `1,000 screened in ${screening.toFixed(2)} ms, 100 decoded in ${decoding.toFixed(2)} ms`).toBeLessThan(decoding);
  });
});

describe("DNS listener: one client cannot starve the others", () => {
  const FLOODER = LOCAL;
  const OTHER = "127.0.0.2";

  /** Sends `count` queries from one client in rounds the listener can take in (a socket buffer holds a few hundred), waiting for each round to be received. */
  async function flood(port: number, listener: DnsListener, count: number, name: string): Promise<void> {
    const client = await udpClient(FLOODER);
    for (let sent = 0; sent < count;) {
      const round = Math.min(100, count - sent);
      const before = listener.stats().queries;
      for (let i = 0; i < round; i++) client.send(port, query(name, "A", { id: (sent + i) & 0xffff }));
      sent += round;
      await eventually(`the listener to receive ${sent} flooding queries`, () => listener.stats().queries >= before + round);
    }
  }

  it("a client flooding a name whose upstream never answers gets its share of forwards; another client's lookups and forwards are answered", async () => {
    const up = await fakeUpstream("answer", { ignore: (name) => name.startsWith("blackhole") });
    // Forwards of the flood stay in flight for the whole test.
    const { port, listener } = await startListener(table({ web: ["10.1.0.5"] }), [up.address], { upstreamTimeoutMs: 30_000 });
    await flood(port, listener, 1100, "blackhole.example");
    // Meanwhile another client is answered: our names, and forwards (before, it got REFUSED: the flood held the host's 1,024).
    for (let i = 0; i < 5; i++) {
      expect(decode(await udpAsk(port, query("web", "A", { id: 500 + i }), OTHER))).toMatchObject({ id: 500 + i, rcode: "NOERROR" });
      const fwd = decode(await udpAsk(port, query(`name${i}.example`, "A", { id: 600 + i }), OTHER));
      expect(fwd).toMatchObject({ id: 600 + i, rcode: "NOERROR", answers: [expect.objectContaining({ data: "192.0.2.53" })] });
    }
    expect(decode(await tcpAsk(port, query("example.org", "A", { id: 700 }), OTHER))).toMatchObject({ id: 700, rcode: "NOERROR" });
    // The flooder holds its 100 forwards; the rest of its queries were dropped (over its rate, or its share in flight).
    await eventually("the flooder's forwards and the other client's to reach the upstream", () => up.received.length === 100 + 6);
    const st = listener.stats();
    expect(st.rateLimited + st.clientBusy).toBe(1000);
    expect(listener.stats()).toMatchObject({ refused: 0, answered: 5, forwarded: 6 });
  });

  it("drops the queries of a client over its rate, unanswered, and keeps answering the others", async () => {
    // One token every 1,000 s: the burst is all the test can get.
    const { port, listener } = await startListener(table({ web: ["10.1.0.5"] }), [], { clientBurst: 20, clientRatePerSecond: 0.001 });
    await flood(port, listener, 100, "web");
    await eventually("every flooding query to be answered or dropped", () => listener.stats().answered + listener.stats().rateLimited === 100);
    expect(listener.stats()).toMatchObject({ answered: 20, rateLimited: 80 });
    expect(decode(await udpAsk(port, query("web", "A", { id: 9 }), OTHER))).toMatchObject({ id: 9, rcode: "NOERROR" });
  });
});

describe("client limits", () => {
  it("a token bucket per client: a burst, then its rate; each client its own", () => {
    let now = 0;
    const limits = new ClientLimits({ ratePerSecond: 10, burst: 5, maxInFlight: 2, now: () => now });
    const admitted = (client: string, n: number) => Array.from({ length: n }, () => limits.admit(client)).filter(Boolean).length;
    expect(admitted("a", 8)).toBe(5);
    expect(admitted("b", 8)).toBe(5);
    now += 300; // three tokens back
    expect(admitted("a", 8)).toBe(3);
    now += 10_000; // never more than the burst
    expect(admitted("a", 8)).toBe(5);
  });

  it("queries in flight per client", () => {
    const limits = new ClientLimits({ ratePerSecond: 10, burst: 5, maxInFlight: 2 });
    expect([limits.acquire("a"), limits.acquire("a"), limits.acquire("a"), limits.acquire("b")]).toEqual([true, true, false, true]);
    limits.release("a");
    expect(limits.inFlightOf("a")).toBe(1);
    expect(limits.acquire("a")).toBe(true);
    limits.release("nobody");
  });

  it("remembers at most maxClients, idle ones forgotten first", () => {
    let now = 0;
    const limits = new ClientLimits({ ratePerSecond: 1000, burst: 5, maxInFlight: 2, maxClients: 8, now: () => now });
    expect(limits.acquire("busy")).toBe(true);
    for (let i = 0; i < 100; i++) {
      now += 10;
      limits.admit(`10.0.0.${i}`);
    }
    expect(limits.size).toBeLessThanOrEqual(8);
    // The busy client, older than all the others, was kept while idle ones could go.
    expect(limits.inFlightOf("busy")).toBe(1);
  });
});

describe("DNS listener: TCP connections", () => {
  it("closes a connection whose message trickles in, at its deadline, before it is whole (each byte used to restart the idle timer)", async () => {
    const { port, listener } = await startListener(table({ web: ["10.1.0.5"] }), [], { tcpMessageTimeoutMs: 300, tcpIdleTimeoutMs: 200 });
    const c = await tcpClient(port);
    const bytes = frame(query("trickle.example", "A", { id: 1 }));
    let sent = 0;
    // One byte every 50 ms: the whole message would take well over a second.
    while (!c.isClosed() && sent < bytes.length) {
      c.write(bytes.subarray(sent, sent + 1));
      sent++;
      await quiet(50, "a trickling client: one byte every 50 ms");
    }
    await c.closed;
    expect(sent).toBeLessThan(bytes.length);
    expect(c.replies).toEqual([]);
    expect(listener.stats().queries).toBe(0);
  });

  it("a connection that was answered gets a new deadline for its next message", async () => {
    const { port } = await startListener(table({ web: ["10.1.0.5"] }), [], { tcpMessageTimeoutMs: 300, tcpIdleTimeoutMs: 5_000 });
    const c = await tcpClient(port);
    c.write(frame(query("web", "A", { id: 1 })));
    expect(decode((await c.replyCount(1))[0]!)).toMatchObject({ id: 1, rcode: "NOERROR" });
    // Half a message, then nothing: closed at the message's deadline, long before the idle limit.
    c.write(frame(query("web", "A", { id: 2 })).subarray(0, 10));
    await c.closed;
    expect(c.replies).toHaveLength(1);
  });

  it("does not hold a message's deadline against a client while its earlier queries keep the connection from being read", async () => {
    // Every answer takes longer than a message's deadline; one query at a time per connection.
    const resolver = new FakeResolver(async () => {
      await quiet(500, "every answer takes longer than a message's deadline");
      return { kind: "addresses", ips: ["10.1.0.5"] };
    });
    const { port } = await startListener(resolver, [], { tcpMessageTimeoutMs: 200, tcpMaxInFlight: 1, resolverTimeoutMs: 5_000 });
    const c = await tcpClient(port);
    // The first query and half the second in one segment; the rest of the second once the listener has read that.
    const second = frame(query("web", "A", { id: 2 }));
    c.write(Buffer.concat([frame(query("web", "A", { id: 1 })), second.subarray(0, 8)]));
    await eventually("the listener to read the first query", () => resolver.asked.length === 1);
    c.write(second.subarray(8));
    const replies = await c.replyCount(2);
    expect(replies.map((r) => decode(r).id)).toEqual([1, 2]);
    expect(c.isClosed()).toBe(false);
  });

  it("closes a connection announcing a message longer than any query, before reading it", async () => {
    const { port, listener } = await startListener(table({ web: ["10.1.0.5"] }));
    const c = await tcpClient(port);
    c.write(Buffer.from([0xea, 0x60])); // 60,000 bytes to come
    await c.closed;
    expect(listener.stats()).toMatchObject({ dropped: 1 });
  });

  /** Sends rounds of 32 queries for `name` (a connection may have 64 queued) on a connection whose client reads nothing, each once the listener has taken the last in, until it takes no more; returns how many were sent. */
  async function fillUntilStalled(c: Awaited<ReturnType<typeof tcpClient>>, resolver: FakeResolver, name: string): Promise<number> {
    c.sock.pause();
    let sent = 0;
    while (sent < 2000 && !c.isClosed()) {
      for (let i = 0; i < 32; i++) c.write(frame(query(name, "A", { id: sent + i })));
      sent += 32;
      const taken = await eventually("the listener to take the round in", () => resolver.asked.length >= sent, { timeoutMs: 1000 }).then(
        () => true,
        () => false,
      );
      if (!taken) break;
    }
    return sent;
  }
  // 3,000 addresses: about 57 KB an answer, so that a few dozen fill the sockets' buffers.
  const big = Array.from({ length: 3000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);

  it("stops reading and serving a connection whose client does not read its answers, and goes on when it does", async () => {
    const resolver = table({ big });
    const { port } = await startListener(resolver, [], { clientBurst: 100_000 });
    const c = await tcpClient(port);
    const sent = await fillUntilStalled(c, resolver, "big");
    expect(resolver.asked.length).toBeLessThan(sent);
    c.sock.resume();
    expect(await c.replyCount(sent)).toHaveLength(sent);
  });

  it("closes a connection whose client reads none of its answers after the idle limit, queries queued or not", { timeout: 15_000 }, async () => {
    const resolver = table({ big });
    const { port } = await startListener(resolver, [], { clientBurst: 100_000, tcpIdleTimeoutMs: 1_500 });
    const c = await tcpClient(port);
    const sent = await fillUntilStalled(c, resolver, "big");
    expect(resolver.asked.length).toBeLessThan(sent);
    // A client that reads nothing does not see the close either: it learns of it when it writes again (the reset).
    await eventually(
      "the listener to close the connection",
      () => {
        c.sock.write(Buffer.from([0]));
        return c.isClosed();
      },
      { timeoutMs: 10_000, everyMs: 50 },
    );
  });

  it("caps connections per client and in all: the one beyond is closed at once, the others are served", async () => {
    const { port, listener } = await startListener(table({ web: ["10.1.0.5"] }), [], { tcpMaxConnectionsPerClient: 2, tcpMaxConnections: 3 });
    const a1 = await tcpClient(port);
    const a2 = await tcpClient(port);
    const a3 = await tcpClient(port);
    await a3.closed;
    const b1 = await tcpClient(port, "127.0.0.2");
    const c1 = await tcpClient(port, "127.0.0.3");
    await c1.closed;
    for (const [i, c] of [a1, a2, b1].entries()) {
      c.write(frame(query("web", "A", { id: i })));
      expect(decode((await c.replyCount(1))[0]!)).toMatchObject({ id: i, rcode: "NOERROR" });
    }
    expect(listener.stats()).toMatchObject({ tcpRefused: 2, answered: 3 });
    // A connection that goes frees its place.
    a1.sock.destroy();
    await a1.closed;
    await eventually("a new connection of the first client to be served", async () => {
      const c = await tcpClient(port);
      c.write(frame(query("web", "A", { id: 9 })));
      const r = await Promise.race([
        c.replyCount(1).then(
          (replies) => replies[0],
          () => undefined,
        ),
        c.closed.then(() => undefined),
      ]);
      return r !== undefined && decode(r).id === 9;
    });
  });
});

describe("DNS listener: start and close", () => {
  it("binds everything or nothing, and says which address is taken", async () => {
    const free = await deadPort();
    const taken = await listenTcp();
    cleanups.push(() => closeTcp(taken));
    const takenPort = (taken.address() as net.AddressInfo).port;
    const listener = new DnsListener({
      listen: [
        { host: LOCAL, port: free },
        { host: LOCAL, port: takenPort },
      ],
      resolver: table({}),
      upstreams: upstreamsOf([]),
      log,
    });
    const r = await listener.start();
    expect(r).toEqual({ ok: false, error: `DNS listener: 127.0.0.1:${takenPort}/tcp: address in use (another DNS server on the host?)` });
    expect(listener.addresses()).toEqual([]);
    // Nothing is left bound: the first address's UDP and TCP, and the second's UDP, are free.
    const again = await bindBothOn(free);
    await Promise.all([closeUdp(again.udp), closeTcp(again.tcp), bindUdp(takenPort).then(closeUdp)]);
  });

  it("names UDP when the UDP port is taken", async () => {
    const taken = await bindUdp();
    cleanups.push(() => closeUdp(taken));
    const port = taken.address().port;
    const listener = new DnsListener({ listen: [{ host: LOCAL, port }], resolver: table({}), upstreams: upstreamsOf([]), log });
    expect(await listener.start()).toEqual({ ok: false, error: `DNS listener: 127.0.0.1:${port}/udp: address in use (another DNS server on the host?)` });
  });

  it("uses one port for UDP and TCP, frees it on close, and starts only once", async () => {
    const { listener, port } = await startListener(table({ web: ["10.1.0.5"] }));
    expect(listener.addresses()).toEqual([{ host: LOCAL, port }]);
    expect((await listener.start()).ok).toBe(false);
    await listener.close();
    expect(listener.addresses()).toEqual([]);
    const again = await bindBothOn(port);
    await Promise.all([closeUdp(again.udp), closeTcp(again.tcp)]);
  });
});

/** UDP and TCP on this very port (fails the test if either is still bound). */
async function bindBothOn(port: number): Promise<{ udp: dgram.Socket; tcp: net.Server }> {
  const udp = await bindUdp(port);
  return { udp, tcp: await listenTcp(port) };
}

describe("upstreams", () => {
  it("parses resolv.conf like glibc: nameserver lines, comments, IPv4 and IPv6, at most three", () => {
    const text = [
      "# written by NetworkManager",
      "; an old-style comment",
      "search lan example.com",
      "nameserver 192.168.1.1",
      "nameserver not-an-address",
      "  nameserver\t2001:db8::53   # trailing words are ignored",
      "#nameserver 10.0.0.1",
      "options ndots:1",
      "nameserver 127.0.0.53",
      "nameserver 9.9.9.9",
    ].join("\n");
    expect(parseResolvConf(text)).toEqual(["192.168.1.1", "2001:db8::53", "127.0.0.53"]);
    expect(parseResolvConf("")).toEqual([]);
    expect(parseResolvConf("nameserver 1.1.1.1\r\nnameserver 8.8.8.8\r\n")).toEqual(["1.1.1.1", "8.8.8.8"]);
  });

  it("reads the file, drops the listener's own addresses, and re-reads it when it changes (at most once a second)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tso-dns-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "resolv.conf");
    await writeFile(path, "nameserver 100.72.0.1\nnameserver 192.168.1.1\n");
    let now = 1_000_000;
    const resolvers = new HostResolvers({ path, exclude: [{ host: "100.72.0.1", port: 53 }], log, now: () => now });
    expect(await resolvers.servers()).toEqual([{ host: "192.168.1.1", port: 53 }]);

    await writeFile(path, "nameserver 10.0.0.2\nnameserver 10.0.0.3\n");
    await utimes(path, new Date(2_000_000_000), new Date(2_000_000_000));
    now += 500;
    expect(await resolvers.servers()).toEqual([{ host: "192.168.1.1", port: 53 }]);
    now += 500;
    expect(await resolvers.servers()).toEqual([
      { host: "10.0.0.2", port: 53 },
      { host: "10.0.0.3", port: 53 },
    ]);

    // A file that goes away keeps the last list.
    await rm(path);
    now += 1000;
    expect(await resolvers.servers()).toEqual([
      { host: "10.0.0.2", port: 53 },
      { host: "10.0.0.3", port: 53 },
    ]);
  });

  it("uses an explicit list instead of the file, strings on port 53, minus the listener", async () => {
    const resolvers = new HostResolvers({
      path: "/nonexistent/resolv.conf",
      servers: ["10.0.0.2", { host: LOCAL, port: 5353 }, "no.such.address", { host: LOCAL, port: 53 }],
      exclude: [{ host: LOCAL, port: 53 }],
      log,
    });
    expect(await resolvers.servers()).toEqual([
      { host: "10.0.0.2", port: 53 },
      { host: LOCAL, port: 5353 },
    ]);
  });
});
