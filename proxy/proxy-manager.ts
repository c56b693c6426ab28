import net from "node:net";
import ipaddr from "ipaddr.js";
import type { Logger } from "../lib/log.js";
import { failure, success, type Result } from "../lib/result.js";
import { describeBinding, formatAddress, validateBinding, type Binding, type Proto } from "./binding.js";
import type { ProxyCounters } from "./counters.js";
import { listenTcp, listenUdp, type BoundListener, type LateLegOutcome, type ListenAddress } from "./listener.js";
import type { AcceptWorkers } from "./accept-workers.js";
import { CONN_DEFAULTS, shareLimits, SlotCounter } from "./limits.js";
import { ReadBufferPool } from "./read-buffers.js";
import { TcpProxy, type TcpProxyOptions } from "./tcp-proxy.js";
import { UdpProxy, type UdpProxyOptions } from "./udp-proxy.js";

export interface ProxyManagerOptions {
  log?: Logger;
  /** maxConns and maxConnsPerSource are per binding, whatever the number of accept workers (limits.ts). */
  tcp?: Omit<TcpProxyOptions, "log" | "buffers" | "pool">;
  udp?: Omit<UdpProxyOptions, "log">;
  /**
   * Backend → client read buffers (read-buffers.ts): sizes adapt between min and max (default
   * 16 KiB … 1 MiB); what connections hold beyond min is capped by budget (default 64 MiB).
   */
  readBuffer?: { min?: number; max?: number; budget?: number };
  /** TCP listen backlog (default 511, capped by net.core.somaxconn). */
  backlog?: number;
  /** Processes that accept on the TCP listeners too (accept-workers.ts); started by the caller. */
  workers?: AcceptWorkers;
}

/** A published port that is live: listening and forwarding. */
export interface ActiveBinding {
  /** "tcp/0.0.0.0:8080", "udp/[::1]:53", "tcp/*:8080" (all addresses). */
  id: string;
  /** As requested, except hostPort: the port actually bound. */
  binding: Binding;
  /** hostPort as requested (0 = the kernel picked `binding.hostPort`). */
  requestedHostPort: number;
  /** The sockets listening for it (two for hostIp "" on a host with IPv6). */
  addresses: ListenAddress[];
  /** A snapshot taken when this object was returned. */
  counters: ProxyCounters;
}

interface Entry {
  id: string;
  binding: Binding;
  requestedHostPort: number;
  listener: BoundListener;
  proxy: TcpProxy | UdpProxy;
}

export function bindingId(proto: Proto, hostIp: string, hostPort: number): string {
  return `${proto}/${formatAddress(hostIp, hostPort)}`;
}

/**
 * Owns every published port of this process. `add` binds the host socket(s) first, so a busy
 * port is an error at publish time, with Docker's userland-proxy wording; `remove` closes the
 * listener and every connection/flow, after which the port can be bound again at once.
 *
 * With `workers`, every TCP listener is also handed to accept worker processes (a second core
 * for the data path, accept-workers.ts); this manager still binds, owns and closes it.
 * Port ranges are expanded by the caller (port-range.ts).
 */
export class ProxyManager {
  private readonly entries = new Map<string, Entry>();
  /** Bindings with an explicit host port whose sockets are being opened right now. */
  private readonly reserving = new Set<Binding>();
  private readonly buffers: ReadBufferPool;
  private readonly log: Logger | undefined;

  constructor(private readonly opts: ProxyManagerOptions = {}) {
    this.buffers = new ReadBufferPool(opts.readBuffer?.min, opts.readBuffer?.max, opts.readBuffer?.budget);
    this.log = opts.log;
  }

  async add(requested: Binding): Promise<Result<ActiveBinding>> {
    const valid = validateBinding(requested);
    if (!valid.ok) return valid;
    const b: Binding = { ...requested };
    const name = describeBinding(b);
    if (b.hostPort !== 0) {
      const taken = [...this.entries.values()].map((e) => e.binding).concat([...this.reserving]);
      if (taken.some((t) => t.proto === b.proto && t.hostPort === b.hostPort && overlaps(t.hostIp, b.hostIp))) {
        return failure(`Bind for ${formatAddress(b.hostIp || "0.0.0.0", b.hostPort)} failed: port is already allocated (${name})`);
      }
    }

    this.reserving.add(b);
    const { local: tcpShare, pool } = b.proto === "tcp" ? this.tcpLimits() : { local: {}, pool: undefined };
    let proxy: TcpProxy | UdpProxy;
    let bound: Result<BoundListener>;
    try {
      if (b.proto === "tcp") {
        const tcp = new TcpProxy(b, { ...this.opts.tcp, ...tcpShare, pool, buffers: this.buffers, log: this.log });
        proxy = tcp;
        bound = await listenTcp(b, {
          backlog: this.opts.backlog,
          onConnection: (s) => tcp.handle(s),
          onError: (err) => this.log?.warn({ binding: name, err: err.message }, "accept failed"),
          onLateLeg: (o) => this.lateLeg(name, o),
        });
      } else {
        const udp = new UdpProxy(b, { ...this.opts.udp, log: this.log });
        proxy = udp;
        bound = await listenUdp(b, {
          onSocket: (s) => udp.attach(s),
          onError: (err) => this.log?.warn({ binding: name, err: err.message }, "udp listener error"),
          onLateLeg: (o) => this.lateLeg(name, o),
        });
      }
    } finally {
      this.reserving.delete(b);
    }
    if (!bound.ok) return failure(`Error starting userland proxy: ${bound.error} (${name})`);

    const listener = bound.value;
    const binding: Binding = { ...b, hostPort: listener.port };
    const id = bindingId(b.proto, b.hostIp, listener.port);
    const entry: Entry = { id, binding, requestedHostPort: requested.hostPort, listener, proxy };
    this.entries.set(id, entry);
    if (b.proto === "tcp") {
      const { connectTimeoutMs, resetOnBackendFailure, idleTimeoutMs } = this.opts.tcp ?? {};
      await this.opts.workers?.share(id, binding, listener.servers, { tcp: { connectTimeoutMs, resetOnBackendFailure, idleTimeoutMs, ...tcpShare }, pool });
    }
    this.log?.info({ binding: describeBinding(binding), addresses: listener.addresses }, "port published");
    return success(this.view(entry));
  }

  /**
   * Publishes the first candidate whose host port is free (a single container port with a host
   * port range, see expandPortRange's "any" plan).
   */
  async addAny(candidates: readonly Binding[]): Promise<Result<ActiveBinding>> {
    let last: string | undefined;
    for (const c of candidates) {
      const r = await this.add(c);
      if (r.ok) return r;
      if (!/already (allocated|in use)/.test(r.error)) return r;
      last = r.error;
    }
    const first = candidates[0];
    const what = first ? describeBinding(first) : "no candidates";
    return failure(`all ports are allocated (${what}${last ? `; last: ${last}` : ""})`);
  }

  /** Unpublishes: closes the listener(s) and every open connection or flow. */
  async remove(ref: string | ActiveBinding | Binding): Promise<Result<void>> {
    const id = typeof ref === "string" ? ref : "id" in ref ? ref.id : bindingId(ref.proto, ref.hostIp, ref.hostPort);
    const entry = this.entries.get(id);
    if (entry === undefined) return failure(`no published port ${id}`);
    this.entries.delete(id);
    const closed = entry.listener.close(); // stop accepting first
    const unshared = this.opts.workers?.unshare(id); // the port is free once the workers let go too
    entry.proxy.closeAll();
    await Promise.all([closed, unshared]);
    this.log?.info({ binding: describeBinding(entry.binding) }, "port unpublished");
    return success(undefined);
  }

  get(id: string): ActiveBinding | undefined {
    const e = this.entries.get(id);
    return e && this.view(e);
  }

  /** Every live binding with a snapshot of its counters, the workers' included (for a status endpoint). */
  list(): ActiveBinding[] {
    return [...this.entries.values()].map((e) => this.view(e));
  }

  /** Read-buffer memory: bytes beyond the minimum held by connections, and parked for reuse. */
  bufferUsage(): { lent: number; pooled: number } {
    return this.buffers.usage();
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.entries.keys()].map((id) => this.remove(id)));
  }

  /**
   * Each accepting process's own share of a TCP binding's limits, and a fresh pool of the rest,
   * which this process's TcpProxy and the workers take from (limits.ts).
   */
  private tcpLimits(): { local: { maxConns: number; maxConnsPerSource: number }; pool: SlotCounter | undefined } {
    const configured = {
      maxConns: this.opts.tcp?.maxConns ?? CONN_DEFAULTS.maxConns,
      maxConnsPerSource: this.opts.tcp?.maxConnsPerSource ?? CONN_DEFAULTS.maxConnsPerSource,
    };
    const { local, pool } = shareLimits(configured, (this.opts.workers?.count ?? 0) + 1);
    return { local, pool: pool && new SlotCounter(pool.maxConns, pool.maxConnsPerSource) };
  }

  private lateLeg(name: string, o: LateLegOutcome): void {
    if (o.ok) this.log?.info({ binding: name, address: o.address }, "port published on IPv6 too");
    else this.log?.info({ binding: name, err: o.error }, "IPv6 side of the port left to whoever holds it (the container's IPv6 gateway network, usually)");
  }

  private view(e: Entry): ActiveBinding {
    const counters = e.proxy.snapshot();
    const workers = e.binding.proto === "tcp" ? this.opts.workers?.countersOf(e.id) : undefined;
    if (workers) for (const k of Object.keys(counters) as (keyof ProxyCounters)[]) counters[k] += workers[k];
    return {
      id: e.id,
      binding: { ...e.binding },
      requestedHostPort: e.requestedHostPort,
      addresses: e.listener.addresses.map((a) => ({ ...a })),
      counters,
    };
  }
}

/** Whether two host IPs of the same proto and port would claim a common address. */
function overlaps(a: string, b: string): boolean {
  for (const family of [4, 6] as const) {
    const ca = claim(a, family);
    const cb = claim(b, family);
    if (ca === undefined || cb === undefined) continue;
    if (ca === "*" || cb === "*" || ca === cb) return true;
  }
  return false;
}

/** What `ip` claims in one family: "*" (every address), one normalized address, or nothing. */
function claim(ip: string, family: 4 | 6): string | undefined {
  if (ip === "") return "*";
  if (net.isIP(ip) !== family) return undefined;
  const addr = ipaddr.parse(ip.replace(/%.*$/, ""));
  const s = addr.toNormalizedString();
  return addr.range() === "unspecified" ? "*" : s;
}
