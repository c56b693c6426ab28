/**
 * What one client of the name service may ask: a rate (a token bucket) and a
 * number of queries in flight, per client address.
 *
 * Design note. The listener's own in-flight limit is per host: one container
 * asking 1,100 times in half a second for a name whose upstream never answers
 * filled it, and every other container on the host got REFUSED for the two
 * seconds the forwards took. Per client, that container runs out of its own
 * share first. A client is its address, without the port (as unbound keys its
 * ip-ratelimit): a container's resolver picks a new port for every query.
 * What a client over its limit gets is decided by the listener (a drop, as
 * unbound does for both of its per-address limits); this module only counts.
 * The table forgets a client once it is idle (nothing in flight, bucket full
 * again), and never holds more than maxClients: beyond, idle clients are swept
 * and then the oldest forgotten, so addresses made up by a sender cost memory
 * only up to that bound (the listener's global limit still stands behind).
 */

export interface ClientLimitsOptions {
  /** Queries per second a client may keep up (the bucket's refill rate). */
  ratePerSecond: number;
  /** Queries a client may send at once above its rate (the bucket's size). */
  burst: number;
  /** Queries of one client being served at once. */
  maxInFlight: number;
  /** Clients remembered at most (default 4096). */
  maxClients?: number;
  /** The clock, in ms (tests). */
  now?: () => number;
}

interface ClientState {
  tokens: number;
  /** When tokens was last brought up to date (ms). */
  at: number;
  inFlight: number;
}

const DEFAULT_MAX_CLIENTS = 4096;

export class ClientLimits {
  private readonly clients = new Map<string, ClientState>();
  private readonly now: () => number;
  private readonly maxClients: number;

  constructor(private readonly opts: ClientLimitsOptions) {
    this.now = opts.now ?? Date.now;
    this.maxClients = Math.max(1, opts.maxClients ?? DEFAULT_MAX_CLIENTS);
  }

  /** Takes one token of the client's bucket; false when it is empty (the client is over its rate). */
  admit(client: string): boolean {
    const c = this.stateOf(client);
    if (c.tokens < 1) return false;
    c.tokens -= 1;
    return true;
  }

  /** Counts one more query of the client in flight; false (and not counted) when it has maxInFlight already. */
  acquire(client: string): boolean {
    const c = this.stateOf(client);
    if (c.inFlight >= this.opts.maxInFlight) return false;
    c.inFlight++;
    return true;
  }

  /** One query of the client acquired before is done. */
  release(client: string): void {
    const c = this.clients.get(client);
    if (c !== undefined && c.inFlight > 0) c.inFlight--;
  }

  inFlightOf(client: string): number {
    return this.clients.get(client)?.inFlight ?? 0;
  }

  /** Clients remembered now. */
  get size(): number {
    return this.clients.size;
  }

  private stateOf(client: string): ClientState {
    const now = this.now();
    let c = this.clients.get(client);
    if (c === undefined) {
      if (this.clients.size >= this.maxClients) this.makeRoom(now);
      c = { tokens: this.opts.burst, at: now, inFlight: 0 };
      this.clients.set(client, c);
      return c;
    }
    this.refill(c, now);
    return c;
  }

  private refill(c: ClientState, now: number): void {
    const elapsed = Math.max(0, now - c.at);
    c.tokens = Math.min(this.opts.burst, c.tokens + (elapsed * this.opts.ratePerSecond) / 1000);
    c.at = now;
  }

  /**
   * Forgets idle clients, then, while more than three quarters of the room is
   * taken, the oldest ones (one forgotten in flight just starts afresh): the
   * sweep runs once per quarter of maxClients new clients, not once per query.
   */
  private makeRoom(now: number): void {
    for (const [client, c] of this.clients) {
      this.refill(c, now);
      if (c.inFlight === 0 && c.tokens >= this.opts.burst) this.clients.delete(client);
    }
    const keep = Math.floor((this.maxClients * 3) / 4);
    for (const client of this.clients.keys()) {
      if (this.clients.size <= keep) break;
      this.clients.delete(client);
    }
  }
}
