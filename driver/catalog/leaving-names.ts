/**
 * Names removed on this host that the catalog may still call active.
 *
 * Design note. A user's `docker network rm` reaches the catalog late: the
 * removal waits out the prune window, then the durable queue (longer while the
 * store is away), and a reconcile can even run before the destroy event is
 * handled (the event is queued behind it). Meanwhile the catalog says active
 * and a reconcile would create the network again. A name stays held until the
 * catalog says removed, the name is another network's (another subnet), the
 * network is back here, or the hold times out (a destroy event that never
 * came: the cluster's network comes back, as before).
 */
export class LeavingNames {
  private readonly held = new Map<string, { subnet: string; since: number }>();

  constructor(
    private readonly holdMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Held from now, unless already held (subnet "" when unknown here). */
  mark(name: string, subnet: string): void {
    if (!this.held.has(name)) this.held.set(name, { subnet, since: this.now() });
  }

  forget(name: string): void {
    this.held.delete(name);
  }

  /** Whether the catalog's active network `subnet` of this name must not be created here yet. */
  holds(name: string, subnet: string): boolean {
    const h = this.held.get(name);
    if (h === undefined) return false;
    if ((h.subnet !== "" && h.subnet !== subnet) || this.now() - h.since > this.holdMs) {
      this.held.delete(name);
      return false;
    }
    return true;
  }

  /** Drops the names that are back here or that the catalog no longer calls active. */
  settle(isHere: (name: string) => boolean, isActive: (name: string) => boolean): void {
    for (const name of this.held.keys()) if (isHere(name) || !isActive(name)) this.held.delete(name);
  }
}
