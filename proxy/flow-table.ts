/**
 * The UDP proxy's flow table with its limits: flows by client address:port, at most `max` in all
 * and `maxPerSource` per source, and which flow must make room for a new one. Flows the backend
 * has not answered are kept in opening order, in all and per source, so a flood costs O(1) per
 * datagram to find its victim: the oldest unanswered flow, the table's or the source's own.
 */
export interface TableFlow {
  key: string;
  /** sourceOf(client address), limits.ts. */
  source: string;
  /** The backend has answered: no other source's new flow displaces it. */
  answered: boolean;
  /** When the flow last carried a datagram, on the owner's counter. */
  lastUse: number;
}

interface Source<F> {
  all: Set<F>;
  unanswered: Set<F>;
}

/** What must go before a flow from a source fits: nothing, one flow (and which limit), or the table is full of answered flows. */
export type Room<F> = { evict: F; limit: "port" | "source" } | "fits" | "full";

/** How many of a source's oldest answered flows are looked at for the least recently used: no scan of thousands per datagram. */
const LRU_SAMPLE = 32;

export class FlowTable<F extends TableFlow> {
  private readonly flows = new Map<string, F>();
  private readonly unanswered = new Set<F>();
  private readonly sources = new Map<string, Source<F>>();

  constructor(
    readonly max: number,
    readonly maxPerSource: number,
  ) {}

  get size(): number {
    return this.flows.size;
  }

  get(key: string): F | undefined {
    return this.flows.get(key);
  }

  all(): F[] {
    return [...this.flows.values()];
  }

  /**
   * A source at its limit gives up its own oldest unanswered flow, else the least recently used
   * of its oldest; a full table gives up its oldest unanswered flow, or has no room.
   */
  room(source: string): Room<F> {
    const own = this.sources.get(source);
    if (own !== undefined && own.all.size >= this.maxPerSource) {
      const evict = first(own.unanswered) ?? leastRecentlyUsed(own.all);
      return evict === undefined ? "full" : { evict, limit: "source" };
    }
    if (this.flows.size < this.max) return "fits";
    const evict = first(this.unanswered);
    return evict === undefined ? "full" : { evict, limit: "port" };
  }

  add(flow: F): void {
    let source = this.sources.get(flow.source);
    if (source === undefined) {
      source = { all: new Set(), unanswered: new Set() };
      this.sources.set(flow.source, source);
    }
    this.flows.set(flow.key, flow);
    source.all.add(flow);
    if (!flow.answered) {
      this.unanswered.add(flow);
      source.unanswered.add(flow);
    }
  }

  /** The backend has answered the flow: no longer the first to go. */
  answered(flow: F): void {
    this.unanswered.delete(flow);
    this.sources.get(flow.source)?.unanswered.delete(flow);
  }

  delete(flow: F): void {
    if (this.flows.get(flow.key) === flow) this.flows.delete(flow.key);
    this.unanswered.delete(flow);
    const source = this.sources.get(flow.source);
    if (source === undefined) return;
    source.all.delete(flow);
    source.unanswered.delete(flow);
    if (source.all.size === 0) this.sources.delete(flow.source);
  }
}

const first = <T>(set: Set<T>): T | undefined => set.values().next().value;

function leastRecentlyUsed<F extends TableFlow>(flows: Set<F>): F | undefined {
  let lru: F | undefined;
  let n = 0;
  for (const f of flows) {
    if (lru === undefined || f.lastUse < lru.lastUse) lru = f;
    if (++n === LRU_SAMPLE) break;
  }
  return lru;
}
