/**
 * (Over 300 lines on purpose: the one home of serving a query, UDP and TCP,
 * from its arrival to its answer or forward; the wire format, the upstream
 * exchanges and the sockets are in dns-wire.ts, exchange.ts, dns-sockets.ts.)
 *
 * The DNS listener: container names across hosts, served where Docker's
 * embedded DNS forwards what it cannot answer itself.
 *
 * Design note. Docker's embedded resolver (127.0.0.11 in each container)
 * forwards every name it does not know to the daemon's `dns` servers, from
 * the container's own network namespace; with 100.72.0.1 among them, the
 * query arrives here with the asking container's address as its source
 * (shown on the lab by test/e2e/cluster-network.test.ts). This module owns
 * what is done with each query; the domain (NameResolver) decides, per
 * question, between addresses, "no data" and "not ours".
 *
 *  - UDP and TCP, on every address: Docker forwards over the transport the
 *    client used, and a client that gets a truncated (TC) answer over UDP
 *    asks again over TCP. A name with many replicas does not fit in 512 bytes.
 *  - TTL 0 by default: the names move (a container restarts elsewhere, a
 *    replica goes away) and nothing tells a cache; Docker's own resolver does
 *    not cache forwarded answers either, so a TTL would only keep stale
 *    addresses in the clients that do cache.
 *  - AA on our answers and on our "no data": Docker 20.10 tries its next
 *    upstream after a non-authoritative NXDOMAIN/NODATA, which would hand our
 *    names to the host's resolvers.
 *  - Forwarded queries are relayed as raw bytes, both ways: the listener
 *    stands in front of every container's DNS, and re-encoding would lose what
 *    dns-packet does not model (EDNS options, DNSSEC records, unknown types,
 *    the upstream's flags). A UDP forward uses a fresh connected socket (a
 *    new random source port, replies from that upstream only) and accepts
 *    only a reply with the query's id.
 *  - dns-packet decodes the questions and encodes our own answers. The only
 *    bytes read by hand are the 12-byte header's id and QR bit, of packets
 *    dns-packet refuses (to answer FORMERR) and of relayed replies (which we
 *    must not fail to relay because the library does not understand them);
 *    the only bytes written by hand are TCP's 2-byte length prefix.
 *  - Never silent, never down: a failing resolver or a failed forward is
 *    SERVFAIL (clients move on at once instead of waiting seconds), bad input
 *    is FORMERR or dropped, and nothing a client sends can throw out of a
 *    socket handler.
 */
import dgram from "node:dgram";
import net from "node:net";
import type { Answer, OptAnswer, Question } from "dns-packet";
import type { NameDecision, NameQuestion, NameResolver } from "../contracts/names.js";
import type { Logger } from "../../lib/log.js";
import { failure, success, type Result } from "../../lib/result.js";
import { formatHostPort, plainAddress, sameHostPort, type HostPort, type UpstreamSource } from "./upstreams.js";
import { RCODE, FrameReader, encodeReply, frame, parseMessage, queryTypeOf, sizeLimit, type ReplySpec, type Transport } from "./dns-wire.js";
import { tcpExchange, udpExchange } from "./exchange.js";
import { bindUdp, closeServer, closeUdp, listenTcp } from "./dns-sockets.js";
import { messageOf } from "../../lib/errors.js";

export const DEFAULT_TTL_S = 0;
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 2000;
export const DEFAULT_RESOLVER_TIMEOUT_MS = 1000;
export const DEFAULT_TCP_IDLE_TIMEOUT_MS = 10_000;
export const DEFAULT_TCP_MAX_IN_FLIGHT = 4;
export const DEFAULT_TCP_MAX_CONNECTIONS = 256;
/** Docker's embedded resolver allows 1024 forwards in flight; so do we, then REFUSED. */
export const DEFAULT_MAX_IN_FLIGHT = 1024;

/** Frames received on one TCP connection and not yet served: beyond this the client is not a resolver. */
const MAX_TCP_QUEUED = 64;
/** A repeated warning (resolver failing, upstreams down) is logged at most this often; the rest go to debug. */
const WARN_EVERY_MS = 10_000;

export interface DnsListenerOptions {
  /** Every address is served over both UDP and TCP. Port 0 picks a free port (the same one for UDP and TCP); see addresses(). */
  listen: readonly HostPort[];
  resolver: NameResolver;
  /** Where "forward" goes, tried in order; the listener's own addresses are skipped. */
  upstreams: UpstreamSource;
  log: Logger;
  /** TTL of our A records (default 0). */
  ttlSeconds?: number;
  /** How long each upstream gets to answer (default 2000 ms). */
  upstreamTimeoutMs?: number;
  /** How long the resolver gets to decide before the answer is SERVFAIL (default 1000 ms). */
  resolverTimeoutMs?: number;
  /** A TCP connection with nothing in flight is closed after this long without traffic (default 10 s). */
  tcpIdleTimeoutMs?: number;
  /** Queries served at once per TCP connection; the connection is paused beyond (default 4). */
  tcpMaxInFlight?: number;
  /** TCP connections at once, over all addresses of a server (default 256). */
  tcpMaxConnections?: number;
  /** Queries served at once over the whole listener; beyond, REFUSED (default 1024). */
  maxInFlight?: number;
}

/** Counters since start, for the status endpoint. `queries` counts every message received (UDP and TCP), answered or not. */
export interface DnsStats {
  queries: number;
  tcpQueries: number;
  /** Answered with addresses. */
  answered: number;
  /** Answered NOERROR without records (a name of ours without this type). */
  noData: number;
  /** Relayed to an upstream, and its answer relayed back. */
  forwarded: number;
  /** No upstream answered (or none configured): SERVFAIL. */
  forwardFailed: number;
  /** The resolver threw or took too long: SERVFAIL. */
  resolverFailed: number;
  /** UDP answers cut to fit (TC set). */
  truncated: number;
  formErr: number;
  notImp: number;
  /** Too many queries in flight. */
  refused: number;
  /** Not answered at all: not a DNS query (too short, a response, from port 0). */
  dropped: number;
}

interface Bound {
  address: HostPort;
  udp: dgram.Socket;
  tcp: net.Server;
}

const zeroStats = (): DnsStats => ({
  queries: 0,
  tcpQueries: 0,
  answered: 0,
  noData: 0,
  forwarded: 0,
  forwardFailed: 0,
  resolverFailed: 0,
  truncated: 0,
  formErr: 0,
  notImp: 0,
  refused: 0,
  dropped: 0,
});

export class DnsListener {
  private readonly log: Logger;
  private readonly ttl: number;
  private readonly upstreamTimeoutMs: number;
  private readonly resolverTimeoutMs: number;
  private readonly tcpIdleTimeoutMs: number;
  private readonly tcpMaxInFlight: number;
  private readonly tcpMaxConnections: number;
  private readonly maxInFlight: number;
  private state: "new" | "starting" | "up" | "closed" = "new";
  private bound: Bound[] = [];
  private readonly connections = new Set<net.Socket>();
  /** Aborts the forwards in flight on close(). */
  private readonly closing = new AbortController();
  private inFlight = 0;
  private counters = zeroStats();
  private readonly lastWarn = new Map<string, number>();

  constructor(private readonly opts: DnsListenerOptions) {
    this.log = opts.log.child({ component: "dns" });
    this.ttl = opts.ttlSeconds ?? DEFAULT_TTL_S;
    this.upstreamTimeoutMs = opts.upstreamTimeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS;
    this.resolverTimeoutMs = opts.resolverTimeoutMs ?? DEFAULT_RESOLVER_TIMEOUT_MS;
    this.tcpIdleTimeoutMs = opts.tcpIdleTimeoutMs ?? DEFAULT_TCP_IDLE_TIMEOUT_MS;
    this.tcpMaxInFlight = Math.max(1, opts.tcpMaxInFlight ?? DEFAULT_TCP_MAX_IN_FLIGHT);
    this.tcpMaxConnections = opts.tcpMaxConnections ?? DEFAULT_TCP_MAX_CONNECTIONS;
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT);
  }

  /**
   * Binds UDP and TCP on every address, or nothing: on the first failure
   * whatever was bound is closed again and the error names the address, the
   * transport and the likely cause.
   */
  async start(): Promise<Result<void>> {
    if (this.state !== "new") return failure(`DNS listener: cannot start: it is ${this.state === "closed" ? "closed" : "already started"}`);
    this.state = "starting";
    const opened: Bound[] = [];
    for (const address of this.opts.listen) {
      const b = await this.bindBoth(address);
      if (!b.ok) {
        await Promise.all(opened.map(closeBound));
        if (!this.isClosed()) this.state = "new";
        this.log.error({ listen: this.opts.listen.map(formatHostPort), error: b.error }, "DNS listener failed to start");
        return failure(`DNS listener: ${b.error}`);
      }
      opened.push(b.value);
    }
    if (this.isClosed()) {
      // close() came while binding.
      await Promise.all(opened.map(closeBound));
      return failure("DNS listener: closed while starting");
    }
    this.bound = opened;
    for (const b of opened) this.serve(b);
    this.state = "up";
    this.log.info({ listen: this.addresses().map(formatHostPort) }, "DNS listener up (udp, tcp)");
    return success(undefined);
  }

  /** The addresses actually bound (ports resolved), each served over UDP and TCP; [] before start and after close. */
  addresses(): HostPort[] {
    return this.bound.map((b) => ({ ...b.address }));
  }

  stats(): DnsStats {
    return { ...this.counters };
  }

  /** Stops serving: closes the sockets, drops TCP connections and abandons the forwards in flight. */
  async close(): Promise<void> {
    if (this.state === "closed") return;
    const wasUp = this.state === "up";
    this.state = "closed";
    this.closing.abort();
    for (const c of this.connections) c.destroy();
    this.connections.clear();
    const bound = this.bound;
    this.bound = [];
    await Promise.all(bound.map(closeBound));
    if (wasUp) this.log.info("DNS listener closed");
  }

  private isClosed(): boolean {
    return this.state === "closed";
  }

  // ---- binding ----

  /** UDP first, then TCP on the same port (for port 0, a few tries if TCP's side of the port the kernel picked is taken). */
  private async bindBoth(address: HostPort): Promise<Result<Bound>> {
    const family = net.isIP(address.host);
    if (family === 0) return failure(`${formatHostPort(address)}: not an IP address`);
    for (let attempt = 0; ; attempt++) {
      const udp = await bindUdp(address, family === 6 ? "udp6" : "udp4");
      if (!udp.ok) return failure(`${formatHostPort(address)}/udp: ${udp.error}`);
      const port = udp.value.address().port;
      const actual = { host: address.host, port };
      const tcp = await listenTcp(actual);
      if (tcp.ok) return success({ address: actual, udp: udp.value, tcp: tcp.value });
      await closeUdp(udp.value);
      if (address.port === 0 && tcp.error.code === "EADDRINUSE" && attempt < 8) continue;
      return failure(`${formatHostPort(actual)}/tcp: ${tcp.error.text}`);
    }
  }

  private serve(b: Bound): void {
    b.udp.on("error", (err) => this.log.warn({ err, listen: formatHostPort(b.address) }, "DNS UDP socket error"));
    b.udp.on("message", (msg, rinfo) => this.onDatagram(b.udp, msg, rinfo));
    b.tcp.maxConnections = this.tcpMaxConnections;
    b.tcp.on("error", (err) => this.log.warn({ err, listen: formatHostPort(b.address) }, "DNS TCP server error"));
    b.tcp.on("connection", (sock) => this.onConnection(sock));
  }

  // ---- transports ----

  private onDatagram(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.counters.queries++;
    if (rinfo.port === 0) {
      this.counters.dropped++;
      return;
    }
    void this.handle(msg, plainAddress(rinfo.address), "udp").then((reply) => {
      if (reply === undefined || this.state === "closed") return;
      try {
        sock.send(reply, rinfo.port, rinfo.address, (err) => {
          if (err) this.log.debug({ err, client: rinfo.address }, "DNS UDP answer not sent");
        });
      } catch (err) {
        this.log.debug({ err, client: rinfo.address }, "DNS UDP answer not sent");
      }
    });
  }

  /**
   * One TCP connection: length-prefixed queries, answered as they are ready
   * (RFC 7766 allows out of order), at most tcpMaxInFlight at a time (the
   * socket is paused beyond), closed when idle.
   */
  private onConnection(sock: net.Socket): void {
    if (this.state === "closed") {
      sock.destroy();
      return;
    }
    this.connections.add(sock);
    const client = plainAddress(sock.remoteAddress ?? "");
    const reader = new FrameReader();
    const queue: Buffer[] = [];
    let inFlight = 0;
    /** The client has sent FIN: answer what it asked, then close our side. */
    let ended = false;
    const endIfDone = (): void => {
      if (ended && inFlight === 0 && queue.length === 0 && !sock.destroyed) sock.end();
    };
    sock.setNoDelay(true);
    sock.setTimeout(this.tcpIdleTimeoutMs);
    sock.on("timeout", () => {
      if (inFlight === 0 && queue.length === 0) sock.destroy();
    });
    sock.on("error", (err) => this.log.debug({ err, client }, "DNS TCP connection error"));
    sock.on("close", () => this.connections.delete(sock));
    const pump = (): void => {
      while (inFlight < this.tcpMaxInFlight && queue.length > 0) {
        const query = queue.shift()!;
        inFlight++;
        void this.handle(query, client, "tcp").then((reply) => {
          inFlight--;
          if (reply !== undefined && !sock.destroyed) sock.write(frame(reply));
          if (inFlight === 0 && !sock.destroyed) sock.setTimeout(this.tcpIdleTimeoutMs);
          pump();
          endIfDone();
        });
      }
      if (sock.destroyed) return;
      if (queue.length > 0 || inFlight >= this.tcpMaxInFlight) sock.pause();
      else sock.resume();
    };
    sock.on("data", (chunk: Buffer) => {
      const frames = reader.push(chunk);
      if (frames === undefined) {
        this.counters.dropped++;
        this.log.debug({ client }, "DNS TCP message of length 0; closing the connection");
        sock.destroy();
        return;
      }
      this.counters.queries += frames.length;
      this.counters.tcpQueries += frames.length;
      queue.push(...frames);
      if (queue.length > MAX_TCP_QUEUED) {
        this.counters.dropped += queue.length;
        this.log.debug({ client, queued: queue.length }, "DNS TCP client sends far more than it waits for; closing the connection");
        queue.length = 0;
        sock.destroy();
        return;
      }
      pump();
    });
    sock.on("end", () => {
      ended = true;
      endIfDone();
    });
  }

  // ---- one query ----

  /** The answer to one message (undefined: none), whatever the message; never throws. */
  private async handle(raw: Buffer, source: string, transport: Transport): Promise<Buffer | undefined> {
    try {
      return await this.answer(raw, source, transport);
    } catch (err) {
      this.warnEvery("internal", { err, client: source }, "DNS query failed unexpectedly; not answered");
      this.counters.dropped++;
      return undefined;
    }
  }

  private async answer(raw: Buffer, source: string, transport: Transport): Promise<Buffer | undefined> {
    const parsed = parseMessage(raw);
    if (parsed.kind === "drop") {
      this.counters.dropped++;
      this.log.debug({ client: source, transport, reason: parsed.reason }, "DNS message dropped");
      return undefined;
    }
    if (parsed.kind === "malformed") {
      this.counters.formErr++;
      this.log.debug({ client: source, transport }, "undecodable DNS query: FORMERR");
      return this.reply({ id: parsed.id, queryFlags: parsed.flags, rcode: RCODE.FORMERR });
    }
    const msg = parsed.msg;
    const base = { id: msg.id ?? 0, queryFlags: msg.flags ?? 0 };
    if (msg.opcode !== "QUERY") {
      this.counters.notImp++;
      return this.reply({ ...base, rcode: RCODE.NOTIMP });
    }
    const opts = (msg.additionals ?? []).filter((a): a is OptAnswer => a.type === "OPT");
    const question = msg.questions?.length === 1 ? msg.questions[0] : undefined;
    if (question === undefined || opts.length > 1) {
      this.counters.formErr++;
      return this.reply({ ...base, rcode: RCODE.FORMERR });
    }
    const reply = { ...base, rcode: RCODE.NOERROR, question, edns: opts.length === 1, limit: sizeLimit(transport, opts[0]) };
    if (this.inFlight >= this.maxInFlight) {
      this.counters.refused++;
      this.warnEvery("busy", { inFlight: this.inFlight }, "DNS listener busy: REFUSED");
      return this.reply({ ...reply, rcode: RCODE.REFUSED });
    }
    this.inFlight++;
    try {
      return await this.decideAndAnswer(raw, source, transport, reply);
    } catch (err) {
      // A decision of the wrong shape, an answer that would not encode: still an answer, not silence.
      this.warnEvery("internal", { err, name: question.name, client: source }, "DNS query failed: SERVFAIL");
      this.counters.resolverFailed++;
      return this.reply({ ...reply, rcode: RCODE.SERVFAIL });
    } finally {
      this.inFlight--;
    }
  }

  /** The resolver's decision on one question of class IN (others are forwarded), as an answer. */
  private async decideAndAnswer(raw: Buffer, source: string, transport: Transport, reply: ReplySpec & { question: Question }): Promise<Buffer> {
    const question = reply.question;
    // Only class IN is about names of ours (CH "version.bind" and the like go on).
    const decision: NameDecision | undefined =
      question.class === "IN" ? await this.decide({ name: question.name, type: queryTypeOf(question), source }) : { kind: "forward" };
    if (decision === undefined) {
      this.counters.resolverFailed++;
      return this.reply({ ...reply, rcode: RCODE.SERVFAIL });
    }
    switch (decision.kind) {
      case "addresses": {
        const ips = decision.ips.filter((ip) => net.isIPv4(ip));
        if (ips.length < decision.ips.length) {
          this.warnEvery("bad-ips", { name: question.name, ips: decision.ips }, "resolver gave addresses that are no IPv4; left out");
        }
        // A records answer A questions only: addresses for another type is "no data".
        if (question.type !== "A" || ips.length === 0) {
          this.counters.noData++;
          return this.reply({ ...reply, rcode: RCODE.NOERROR, authoritative: true });
        }
        this.counters.answered++;
        const answers: Answer[] = ips.map((ip) => ({ type: "A", class: "IN", name: question.name, ttl: this.ttl, data: ip }));
        return this.reply({ ...reply, rcode: RCODE.NOERROR, authoritative: true, answers });
      }
      case "no-data":
        this.counters.noData++;
        return this.reply({ ...reply, rcode: RCODE.NOERROR, authoritative: true });
      case "forward":
        return (await this.forward(raw, transport)) ?? this.reply({ ...reply, rcode: RCODE.SERVFAIL });
    }
  }

  private reply(spec: ReplySpec): Buffer {
    const { bytes, truncated } = encodeReply(spec);
    if (truncated) this.counters.truncated++;
    return bytes;
  }

  /** The resolver's decision, or undefined when it threw or did not decide in time. */
  private async decide(q: NameQuestion): Promise<NameDecision | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no decision within ${this.resolverTimeoutMs} ms`)), this.resolverTimeoutMs);
    });
    try {
      return await Promise.race([this.opts.resolver.decide(q), late]);
    } catch (err) {
      this.warnEvery("resolver", { err, name: q.name, type: q.type, client: q.source }, "name resolver failed: SERVFAIL");
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The first upstream answer, as received; undefined (and counted) when none answered. */
  private async forward(raw: Buffer, transport: Transport): Promise<Buffer | undefined> {
    let servers: HostPort[];
    try {
      servers = await this.opts.upstreams.servers();
    } catch (err) {
      this.log.warn({ err }, "DNS upstreams unknown");
      servers = [];
    }
    const self = this.addresses();
    servers = servers.filter((s) => !self.some((me) => sameHostPort(s, me)));
    const failures: string[] = [];
    for (const server of servers) {
      if (this.closing.signal.aborted) break;
      try {
        const exchange = transport === "udp" ? udpExchange : tcpExchange;
        const reply = await exchange(raw, server, this.upstreamTimeoutMs, this.closing.signal);
        this.counters.forwarded++;
        return reply;
      } catch (err) {
        const why = messageOf(err);
        failures.push(`${formatHostPort(server)}: ${why}`);
        this.log.debug({ upstream: formatHostPort(server), transport, error: why }, "DNS upstream did not answer");
      }
    }
    this.counters.forwardFailed++;
    if (!this.closing.signal.aborted) {
      if (servers.length === 0) this.warnEvery("no-upstream", {}, "no DNS upstream configured: SERVFAIL for every name not ours");
      else this.warnEvery("upstreams", { transport, failures }, "no DNS upstream answered: SERVFAIL");
    }
    return undefined;
  }

  /** A warning that may repeat for every query: logged at most every WARN_EVERY_MS per kind, at debug in between. */
  private warnEvery(kind: string, fields: object, message: string): void {
    const now = Date.now();
    const last = this.lastWarn.get(kind);
    if (last !== undefined && now - last < WARN_EVERY_MS) {
      this.log.debug(fields, message);
      return;
    }
    this.lastWarn.set(kind, now);
    this.log.warn(fields, message);
  }
}

async function closeBound(b: Bound): Promise<void> {
  await Promise.all([closeUdp(b.udp), closeServer(b.tcp)]);
}
