import dgram from "node:dgram";
import net from "node:net";
import type { Logger } from "../lib/log.js";
import { describeBinding, type Binding } from "./binding.js";
import { newCounters, type ProxyCounters } from "./counters.js";

/**
 * Largest UDP payload over IPv4 (65535 − 20 − 8); docker-proxy's per-flow buffer (UDPBufSize).
 * Node receives up to 64 KiB per datagram, so nothing up to this size is truncated; over IPv6
 * payloads up to 65527 bytes pass too (docker-proxy would cut them), unless the backend is IPv4,
 * where the send fails with EMSGSIZE and the datagram is counted as dropped.
 */
export const MAX_UDP_PAYLOAD_V4 = 65507;
export const MAX_UDP_PAYLOAD_V6 = 65527;

export interface UdpProxyOptions {
  /** A flow with no datagram in either direction for this long is closed (Docker: 90 s). */
  idleTimeoutMs?: number;
  /** At most this many concurrent flows; datagrams from new clients beyond it are dropped. */
  maxFlows?: number;
  /** Datagrams queued per flow while its backend socket is still connecting. */
  maxQueuedPerFlow?: number;
  log?: Logger;
}

interface Flow {
  key: string;
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
 * flows are capped (`maxFlows`); ECONNREFUSED from the backend (ICMP port unreachable) keeps
 * the flow, and a send failing on such a stale error is retried once, as moby does since 2026.
 * Node exposes no IP_PKTINFO, so on a wildcard listener of a multi-homed host a reply leaves
 * from the address the kernel picks; publish on a specific hostIp when that matters.
 */
export class UdpProxy {
  readonly counters: ProxyCounters = newCounters();
  private readonly flows = new Map<string, Flow>();
  private readonly idleTimeoutMs: number;
  private readonly maxFlows: number;
  private readonly maxQueued: number;
  private readonly backendType: dgram.SocketType;
  private readonly log: Logger | undefined;
  private closed = false;

  constructor(
    readonly binding: Binding,
    opts: UdpProxyOptions = {},
  ) {
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 90_000;
    this.maxFlows = opts.maxFlows ?? 16_384;
    this.maxQueued = opts.maxQueuedPerFlow ?? 64;
    this.backendType = net.isIPv6(binding.backendIp) ? "udp6" : "udp4";
    this.log = opts.log?.child({ binding: describeBinding(binding) });
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
    for (const f of [...this.flows.values()]) this.closeFlow(f);
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
    flow.timer.refresh();
    if (flow.queue === undefined) this.forward(flow, msg, true);
    else if (flow.queue.length < this.maxQueued) flow.queue.push(msg);
    else c.dropped++;
  }

  private openFlow(key: string, listener: dgram.Socket, rinfo: dgram.RemoteInfo): Flow | undefined {
    if (this.flows.size >= this.maxFlows) return undefined;
    const sock = dgram.createSocket(this.backendType);
    const flow: Flow = {
      key,
      clientIp: rinfo.address,
      clientPort: rinfo.port,
      listener,
      sock,
      queue: [],
      timer: setTimeout(() => this.closeFlow(flow), this.idleTimeoutMs).unref(),
      closed: false,
    };
    this.flows.set(key, flow);
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
    flow.timer.refresh();
    this.counters.datagramsOut++;
    this.counters.bytesOut += reply.length;
    try {
      flow.listener.send(reply, flow.clientPort, flow.clientIp, this.onReplySent);
    } catch {
      this.onReplySent(new Error("listener closed")); // the listening socket is closing (binding being removed)
    }
  }

  /** One callback for every reply (no closure per datagram). */
  private readonly onReplySent = (err: Error | null): void => {
    if (!err) return;
    this.counters.errors++;
    this.counters.dropped++;
  };

  private closeFlow(flow: Flow): void {
    if (flow.closed) return;
    flow.closed = true;
    clearTimeout(flow.timer);
    if (this.flows.get(flow.key) === flow) this.flows.delete(flow.key);
    this.counters.connectionsActive--;
    try {
      flow.sock.close();
    } catch {
      // already closed
    }
  }
}
