/**
 * How many TCP connections a published port may hold, in all and per source, and how that limit
 * holds when accept workers (accept-workers.ts) accept on the same socket in other processes.
 *
 * A source is a client's IPv4 address, or its IPv6 /64: one host, or one LAN, gets an IPv6 /64,
 * so counting single IPv6 addresses would let one client pick a fresh address per connection.
 *
 * Across processes: each of the k processes accepting on a port (the plugin and its workers)
 * admits on its own up to a small local share (1/(2k) of each limit, at most 64), with no round
 * trip; beyond it, a connection takes a slot from a pool the plugin process keeps (the rest of
 * each limit), which a worker asks for over IPC. The local shares plus the pool add up to the
 * limit, so it is never exceeded whatever the kernel's spread of connections. What it costs: a
 * share another process leaves unused cannot be lent, so a port may refuse up to (k − 1) × 64
 * connections short of its limit when the kernel hands nearly all of them to one process; and
 * a worker's connections beyond its first 64 wait for one IPC round trip to the plugin.
 * A worker that dies gives its pool slots back with it; one that is down leaves its share unused.
 */
import net from "node:net";
import ipaddr from "ipaddr.js";
import type { Logger } from "../lib/log.js";

/** Which limit refused a connection: the port's total, or its source's share. */
export type Refusal = "port" | "source";

/**
 * TCP connections one TcpProxy admits on its own, in all and per source; beyond them, a slot
 * from its pool or a reset. ProxyManager splits its settings between the processes accepting
 * on a port (shareLimits).
 */
export interface ConnLimits {
  maxConns: number;
  maxConnsPerSource: number;
}

export const CONN_DEFAULTS: ConnLimits = { maxConns: 16_384, maxConnsPerSource: 4096 };

/** The source a limit counts against: an IPv4 address (also IPv4-mapped IPv6), or an IPv6 /64. */
export function sourceOf(ip: string | undefined): string {
  if (ip === undefined || !ip.includes(":")) return ip ?? "unknown";
  if (!net.isIPv6(ip)) return ip;
  const addr = ipaddr.IPv6.parse(ip.replace(/%.*$/, ""));
  if (addr.isIPv4MappedAddress()) return addr.toIPv4Address().toString();
  return `${addr.parts
    .slice(0, 4)
    .map((p) => p.toString(16))
    .join(":")}::/64`;
}

/** Slots counted against a total and a per-source maximum. */
export class SlotCounter {
  private readonly bySource = new Map<string, number>();
  private used = 0;

  constructor(
    readonly max: number,
    readonly maxPerSource: number,
  ) {}

  get size(): number {
    return this.used;
  }

  /** Takes a slot for `source`: undefined when granted, else the limit that said no. */
  take(source: string): Refusal | undefined {
    if (this.used >= this.max) return "port";
    const n = this.bySource.get(source) ?? 0;
    if (n >= this.maxPerSource) return "source";
    this.bySource.set(source, n + 1);
    this.used++;
    return undefined;
  }

  give(source: string): void {
    const n = this.bySource.get(source);
    if (n === undefined) return;
    if (n <= 1) this.bySource.delete(source);
    else this.bySource.set(source, n - 1);
    this.used--;
  }
}

/** The plugin process's pool of a port's slots beyond the local shares; a worker's goes over IPC. */
export interface SlotPool {
  take(source: string): Refusal | undefined | Promise<Refusal | undefined>;
  give(source: string): void;
}

/** Admits one binding's connections: from the local slots, else from the pool, else refused. */
export class Admission {
  constructor(
    private readonly local: SlotCounter,
    private readonly pool: SlotPool | undefined,
  ) {}

  /** Calls back with the slot's release, or with the limit that refused; at once unless a worker asks the pool over IPC. */
  admit(source: string, admitted: (release: () => void) => void, refused: (why: Refusal) => void): void {
    const local = this.local.take(source);
    if (local === undefined) return admitted(() => this.local.give(source));
    const pool = this.pool;
    if (pool === undefined) return refused(local);
    const answer = (why: Refusal | undefined): void => (why === undefined ? admitted(() => pool.give(source)) : refused(why));
    const asked = pool.take(source);
    if (asked instanceof Promise) void asked.then(answer, () => refused("port"));
    else answer(asked);
  }
}

/** The most a process admits on its own, per port and per source, when others accept on the port too. */
export const LOCAL_SHARE_MAX = 64;

/** The local share of each of `processes` processes, and what is left for the shared pool. */
export function shareLimits(limits: ConnLimits, processes: number): { local: ConnLimits; pool: ConnLimits | undefined } {
  if (processes <= 1) return { local: limits, pool: undefined };
  const share = (limit: number): number => Math.min(LOCAL_SHARE_MAX, Math.floor(limit / (2 * processes)));
  const local: ConnLimits = { maxConns: share(limits.maxConns), maxConnsPerSource: share(limits.maxConnsPerSource) };
  const pool: ConnLimits = {
    maxConns: limits.maxConns - processes * local.maxConns,
    maxConnsPerSource: limits.maxConnsPerSource - processes * local.maxConnsPerSource,
  };
  return { local, pool };
}

/** A binding's notice that a limit is being hit, at most once a minute: under a flood the counters count every event. */
export class LimitNotice {
  private last = -Infinity;

  constructor(private readonly log: Logger | undefined) {}

  warn(fields: Record<string, unknown>, what: string): void {
    const now = Date.now();
    if (now - this.last < 60_000) return;
    this.last = now;
    this.log?.warn(fields, what);
  }
}
