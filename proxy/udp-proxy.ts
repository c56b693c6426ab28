import dgram from "node:dgram";
import net from "node:net";
import type { Logger } from "../lib/log.js";
import { describeBinding, type Binding } from "./binding.js";
import { newCounters, type ProxyCounters } from "./counters.js";
import { FlowTable, type TableFlow } from "./flow-table.js";
import { LimitNotice, sourceOf } from "./limits.js";

/**
 * Largest UDP payload over IPv4 (65535 − 20 − 8); docker-proxy's per-flow buffer (UDPBufSize).
 * Node receives up to 64 KiB per datagram, so nothing up to this size is truncated; over IPv6
 * payloads up to 65527 bytes pass too (docker-proxy would cut them), unless the backend is IPv4,
 * where the send fails with EMSGSIZE and the datagram is counted as dropped.
 */
export const MAX_UDP_PAYLOAD_V4 = 65507;
export const MAX_UDP_PAYLOAD_V6 = 65527;

export interface UdpProxyOptions {
  /** A flow the backend has answered is closed after this long with no datagram either way (docker-proxy: 90 s). */
  idleTimeoutMs?: number;
  /** A flow the backend has not answered yet is closed after this long with no datagram (default 5 s, at most idleTimeoutMs). */
  unrepliedTimeoutMs?: number;
  /**
   * At most this many flows per binding (default 16,384). When the table is full a new flow
   * evicts the oldest flow the backend has not answered; if every flow has been answered, the
   * new client's datagram is dropped (conntrack's early drop).
   */
  maxFlows?: number;
  /**
   * At most this many flows from one source, an IPv4 address or an IPv6 /64 (default 4,096): a
   * new flow beyond it evicts that source's own oldest unanswered flow, else the least recently
   * used of its oldest. A source can only displace its own flows.
   */
  maxFlowsPerSource?: number;
  /** Datagrams queued per flow while its backend socket is still connecting. */
  maxQueuedPerFlow?: number;
  log?: Logger;
}

export const UDP_DEFAULTS = { idleTimeoutMs: 90_000, unrepliedTimeoutMs: 5000, maxFlows: 16_384, maxFlowsPerSource: 4096 } as const;

interface Flow extends TableFlow {
  clientIp: string;
  clientPort: number;
  listener: dgram.Socket;
  sock: dgram.Socket;
  /** Datagrams that arrived before `connect` completed; undefined once connected. */
  queue: Buffer[] | undefined;
  timer: NodeJS.Timeout;
  closed: boolean;
}

/**
 * The UDP data path of one binding, docker-proxy's model: a flow table keyed by client
 * address:port, each flow with its own connected socket to the backend, so the backend sees one
 * source port per client and each reply goes back to the client that caused it.
 *
 * Differences from docker-proxy: the idle timer is refreshed by traffic in either direction
 * (docker-proxy: reply deadline plus "recent write" check, equivalent for practical purposes);
 * ECONNREFUSED from the backend (ICMP port unreachable) keeps the flow, and a send failing on
 * such a stale error is retried once, as moby does since 2026. Node exposes no IP_PKTINFO, so on
 * a wildcard listener of a multi-homed host a reply leaves from the address the kernel picks;
 * publish on a specific hostIp when that matters.
 *
 * Limits (docker-proxy has none; each flow is a socket and a few KiB): flows are capped per
 * binding and per source (flow-table.ts), and held the way conntrack holds them: a flow the
 * backend has not answered costs little to drop, so it lives a few seconds and is the one
 * evicted when the table is full, which keeps new clients served through a flood of datagrams
 * from fresh source ports; an answered flow is a conversation, kept for the normal idle time and
 * never displaced by another source. The table never exceeds maxFlows.
 */
export class UdpProxy {
  readonly counters: ProxyCounters = newCounters();
  private readonly flows: FlowTable<Flow>;
  private readonly idleTimeoutMs: number;
  private readonly unrepliedTimeoutMs: number;
  private readonly maxQueued: number;
  private readonly backendType: dgram.SocketType;
  private readonly log: Logger | undefined;
  private readonly notice: LimitNotice;
  private clock = 0;
  private closed = false;

  constructor(
    readonly binding: Binding,
    opts: UdpProxyOptions = {},
  ) {
    this.idleTimeoutMs = opts.idleTimeoutMs ?? UDP_DEFAULTS.idleTimeoutMs;
    this.unrepliedTimeoutMs = Math.min(opts.unrepliedTimeoutMs ?? UDP_DEFAULTS.unrepliedTimeoutMs, this.idleTimeoutMs);
    this.flows = new FlowTable(opts.maxFlows ?? UDP_DEFAULTS.maxFlows, opts.maxFlowsPerSource ?? UDP_DEFAULTS.maxFlowsPerSource);
    this.maxQueued = opts.maxQueuedPerFlow ?? 64;
    this.backendType = net.isIPv6(binding.backendIp) ? "udp6" : "udp4";
    this.log = opts.log?.child({ binding: describeBinding(binding) });
    this.notice = new LimitNotice(this.log);
  }

  snapshot(): ProxyCounters {
    return { ...this.counters };
  }

  /** Starts proxying the datagrams that arrive on a bound listening socket. */
  attach(listener: dgram.Socket): void {
    listener.on("message", (msg, rinfo) => this.fromClient(listener, msg, rinfo));
  }

  /** Closes every flow socket; the listening sockets belong to the listener module. */
  closeAll(): void {
    this.closed = true;
    for (const f of this.flows.all()) this.closeFlow(f);
  }

  private fromClient(listener: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const c = this.counters;
    c.datagramsIn++;
    c.bytesIn += msg.length;
    if (this.closed) return;
    const key = `${rinfo.address}|${rinfo.port}`;
    const flow = this.flows.get(key) ?? this.openFlow(key, listener, rinfo);
    if (flow === undefined) {
      c.dropped++;
      return;
    }
    this.seen(flow);
    if (flow.queue === undefined) this.forward(flow, msg, true);
    else if (flow.queue.length < this.maxQueued) flow.queue.push(msg);
    else c.dropped++;
  }

  /** Makes room for a new flow from `source`; false when the table is full and every flow in it has been answered. */
  private makeRoom(source: string): boolean {
    const room = this.flows.room(source);
    if (room === "fits") return true;
    const c = this.counters;
    if (room === "full") {
      c.refusedPortLimit++;
      this.warn("udp flow table full of answered flows: datagrams from new clients dropped");
      return false;
    }
    if (room.limit === "port") c.evictedPortLimit++;
    else c.evictedSourceLimit++;
    c.dropped += room.evict.queue?.length ?? 0;
    this.warn(room.limit === "port" ? "udp flow table full: oldest unanswered flows evicted" : "a source reached its udp flow limit: its oldest flows evicted");
    this.closeFlow(room.evict);
    return true;
  }

  private openFlow(key: string, listener: dgram.Socket, rinfo: dgram.RemoteInfo): Flow | undefined {
    const source = sourceOf(rinfo.address);
    if (!this.makeRoom(source)) return undefined;
    const sock = dgram.createSocket(this.backendType);
    const flow: Flow = {
      key,
      source,
      clientIp: rinfo.address,
      clientPort: rinfo.port,
      listener,
      sock,
      queue: [],
      timer: setTimeout(() => this.closeFlow(flow), this.unrepliedTimeoutMs).unref(),
      answered: false,
      lastUse: this.clock,
      closed: false,
    };
    this.flows.add(flow);
    this.counters.connectionsTotal++;
    this.counters.connectionsActive++;

    sock.on("message", (reply) => this.toClient(flow, reply));
    sock.on("error", (err: NodeJS.ErrnoException) => {
      this.counters.errors++;
      // ICMP port unreachable from a backend that is not listening (yet): keep waiting, as docker-proxy does.
      if (err.code === "ECONNREFUSED") return;
      this.log?.debug({ err: err.message, client: key }, "udp flow failed");
      this.closeFlow(flow);
    });
    sock.connect(this.binding.backendPort, this.binding.backendIp, (err?: Error) => {
      if (err) {
        this.counters.errors++;
        this.counters.dropped += flow.queue?.length ?? 0;
        this.closeFlow(flow);
        return;
      }
      const queued = flow.queue ?? [];
      flow.queue = undefined;
      for (const m of queued) this.forward(flow, m, true);
    });
    return flow;
  }

  private forward(flow: Flow, msg: Buffer, retry: boolean): void {
    if (flow.closed) return;
    flow.sock.send(msg, (err) => {
      if (!err) return;
      // A previous datagram's ICMP error surfaces on this send: retry once (moby@28810d88d1).
      if (retry && (err as NodeJS.ErrnoException).code === "ECONNREFUSED") return this.forward(flow, msg, false);
      this.counters.errors++;
      this.counters.dropped++;
    });
  }

  private toClient(flow: Flow, reply: Buffer): void {
    if (flow.closed) return;
    if (!flow.answered) this.answered(flow);
    this.seen(flow);
    this.counters.datagramsOut++;
    this.counters.bytesOut += reply.length;
    try {
      flow.listener.send(reply, flow.clientPort, flow.clientIp, this.onReplySent);
    } catch {
      this.onReplySent(new Error("listener closed")); // the listening socket is closing (binding being removed)
    }
  }

  /** A datagram either way: the idle timer starts again. */
  private seen(flow: Flow): void {
    flow.lastUse = ++this.clock;
    flow.timer.refresh();
  }

  /** The backend's first reply: the flow now lives the normal idle time and no other source can displace it. */
  private answered(flow: Flow): void {
    flow.answered = true;
    this.flows.answered(flow);
    clearTimeout(flow.timer);
    flow.timer = setTimeout(() => this.closeFlow(flow), this.idleTimeoutMs).unref();
  }

  /** One callback for every reply (no closure per datagram). */
  private readonly onReplySent = (err: Error | null): void => {
    if (!err) return;
    this.counters.errors++;
    this.counters.dropped++;
  };

  private warn(what: string): void {
    const { refusedPortLimit, evictedPortLimit, evictedSourceLimit } = this.counters;
    this.notice.warn({ flows: this.flows.size, refusedPortLimit, evictedPortLimit, evictedSourceLimit }, what);
  }

  private closeFlow(flow: Flow): void {
    if (flow.closed) return;
    flow.closed = true;
    clearTimeout(flow.timer);
    this.flows.delete(flow);
    this.counters.connectionsActive--;
    try {
      flow.sock.close();
    } catch {
      // already closed
    }
  }
}
