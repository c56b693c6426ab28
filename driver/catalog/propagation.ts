/**
 * Create once, remove once: keeps this host's Docker networks of our driver
 * equal to the cluster catalog.
 *
 * Design note. Docker never tells a driver a network's name, so the name is
 * learned from the daemon's own events and API, beside the driver calls and
 * never inside one. Level-triggered like the peers: every change (an event
 * here, a catalog change from elsewhere, a timer) leads to the same
 * reconcile of "what the catalog says" against "what this daemon has":
 *  - a network of ours here that the catalog lacks is published (first CAS wins);
 *  - an active name this daemon lacks is created here with the same subnet,
 *    gateway, range, options and labels (dockerd then calls our IPAM and
 *    driver, which join the existing cluster network by its subnet);
 *  - a removed name is removed here as soon as no container uses it.
 * A user's `docker network rm` (a destroy event not caused by us) removes the
 * name cluster-wide; destroys followed within a second by a prune event are a
 * `docker network prune`, which stays local: every copy on a host without
 * containers is "unused", and a prune must not empty the cluster.
 * A name removed here is not created again while the catalog still calls
 * it active (see LeavingNames). An entry is only created from if it is one
 * a tsoverlay host writes, for our driver and options (entry-checks.ts):
 * the catalog is shared, and the daemon creates whatever it is handed.
 * One class over the usual size: its paths (events, reconcile, adopt,
 * create, remove) share the maps of known, removing, draining and leaving
 * networks, and each is right only against the others' order.
 */
import type { Logger } from "../../lib/log.js";
import { Mutex } from "../../lib/keyed-mutex.js";
import { casRounds, contended } from "../cluster/cas-rounds.js";
import type { DockerEvent, DockerNetwork, DockerPort } from "../contracts/docker.js";
import { specOf, type NetworkCatalog, type StoredEntry } from "./catalog.js";
import { checkCatalogEntry, isOurDriver } from "./entry-checks.js";
import { LeavingNames } from "./leaving-names.js";
import { messageOf } from "../../lib/errors.js";

/** How many refusals the status endpoint shows. */
const REFUSALS_KEPT = 20;
/** Enough for a removal to go through the durable queue while the store answers. */
const LEAVING_HOLD_MS = 60_000;

export interface PropagationDeps {
  docker: DockerPort;
  catalog: NetworkCatalog;
  hostId: string;
  /**
   * Removes a name cluster-wide for a user's `docker network rm` here. The
   * plugin queues it in the outbox (durable, retried until the store
   * answers: a removal made while Consul is away is not lost); tests may
   * remove directly.
   */
  removeName?: (name: string, subnet: string) => Promise<void>;
  /** Driver names that are tsoverlay on this daemon ("tsoverlay", or the managed plugin's name). */
  drivers: readonly string[];
  log: Logger;
  /** How long destroys wait for a prune event that would make them local (ms). */
  pruneWindowMs?: number;
  /** Tombstones older than this are swept (ms). */
  tombstoneTtlMs?: number;
  /** How long a name removed here is not created again while the catalog still says active (ms). */
  leavingHoldMs?: number;
  /**
   * Where destroys wait out the prune window, durably: a `docker network rm`
   * followed at once by a plugin stop (a dockerd restart) is still told to the
   * cluster when the plugin is back. Kept in memory only when absent (tests).
   */
  pending?: {
    add(d: { name: string; subnet: string }): Promise<void>;
    remove(name: string): Promise<void>;
    all(): Promise<{ name: string; subnet: string }[]>;
  };
}

export interface PropagationStatus {
  /** This daemon's networks of ours, by name (as last seen). */
  networks: { name: string; subnet: string; id: string }[];
  /** Names removed in the cluster that this host still has containers on. */
  draining: string[];
  /** Names this host could not bring in line, with the reason. */
  problems: { name: string; problem: string }[];
  /** Networks created here that were undone because the cluster has another network of that name (the latest few). */
  refused: { name: string; problem: string; at: string }[];
}

export class NetworkPropagation {
  private readonly mutex = new Mutex();
  /** Networks this daemon has, by id (to know a destroyed network's subnet). */
  private readonly known = new Map<string, DockerNetwork>();
  /** Ids of networks this worker is removing: their destroy events are ours. */
  private readonly removing = new Set<string>();
  private readonly draining = new Map<string, string>();
  private readonly problems = new Map<string, string>();
  private readonly refused: PropagationStatus["refused"] = [];
  private pendingDestroys: { name: string; subnet: string }[] = [];
  /** Names removed here and not yet removed in the catalog (see LeavingNames). */
  private readonly leaving: LeavingNames;
  private pruneTimer: NodeJS.Timeout | undefined;
  private restoredPending = false;
  private readonly log: Logger;

  constructor(private readonly d: PropagationDeps) {
    this.log = d.log.child({ component: "propagation" });
    this.leaving = new LeavingNames(d.leavingHoldMs ?? LEAVING_HOLD_MS);
  }

  status(): PropagationStatus {
    return {
      networks: [...this.known.values()].map((n) => ({ name: n.name, subnet: n.subnet, id: n.id })).sort((a, b) => a.name.localeCompare(b.name)),
      draining: [...this.draining.keys()].sort(),
      problems: [...this.problems].map(([name, problem]) => ({ name, problem })),
      refused: [...this.refused],
    };
  }

  /** The daemon's events, as they come (handled one at a time, in order). */
  onEvent(e: DockerEvent): void {
    void this.mutex.run(() => this.handle(e)).catch((err: unknown) => this.log.warn({ event: e.kind, err: messageOf(err) }, "handling a Docker event failed"));
  }

  /** Brings this daemon in line with the catalog (see the design note). */
  reconcile(why: string): Promise<void> {
    return this.mutex.run(() => this.doReconcile(why));
  }

  stop(): void {
    clearTimeout(this.pruneTimer);
  }

  private ours(driver: string): boolean {
    return isOurDriver(driver, this.d.drivers);
  }

  private async handle(e: DockerEvent): Promise<void> {
    switch (e.kind) {
      case "network-created": {
        if (!this.ours(e.driver)) return;
        const net = await this.d.docker.network(e.networkId);
        if (net === undefined) return;
        this.known.set(net.id, net);
        await this.adopt(net, true);
        return;
      }
      case "network-destroyed": {
        // Unknown here (its create came while the store was away): its name is enough.
        const net = this.known.get(e.networkId) ?? { name: e.name, subnet: "" };
        this.known.delete(e.networkId);
        if (this.removing.delete(e.networkId) || !this.ours(e.driver)) return;
        this.pendingDestroys.push({ name: net.name, subnet: net.subnet });
        this.leaving.mark(net.name, net.subnet);
        await this.d.pending?.add({ name: net.name, subnet: net.subnet });
        clearTimeout(this.pruneTimer);
        this.pruneTimer = setTimeout(() => void this.mutex.run(() => this.flushDestroys()), this.d.pruneWindowMs ?? 1_000);
        return;
      }
      case "networks-pruned": {
        if (this.pendingDestroys.length > 0) {
          this.log.info({ networks: this.pendingDestroys.map((n) => n.name) }, "networks pruned on this host; the cluster keeps them");
        }
        for (const n of this.pendingDestroys) {
          await this.d.pending?.remove(n.name);
          this.leaving.forget(n.name);
        }
        const pruned = this.pendingDestroys.length > 0;
        this.pendingDestroys = [];
        clearTimeout(this.pruneTimer);
        // The cluster keeps them: this host gets its copies back now.
        if (pruned) await this.doReconcile("networks pruned here");
        return;
      }
      case "network-disconnected": {
        const net = this.known.get(e.networkId);
        if (net !== undefined && this.draining.has(net.name)) await this.removeHere(net);
        return;
      }
      default:
        return;
    }
  }

  /** Destroys that no prune followed: users removed these networks; the cluster removes them too. */
  private async flushDestroys(): Promise<void> {
    const destroyed = this.pendingDestroys;
    this.pendingDestroys = [];
    await this.tellRemoved(destroyed);
  }

  private async tellRemoved(destroyed: { name: string; subnet: string }[]): Promise<void> {
    for (const net of destroyed) {
      this.leaving.mark(net.name, net.subnet);
      this.log.info({ network: net.name, subnet: net.subnet || undefined }, "network removed here: removing it from the cluster");
      if (this.d.removeName !== undefined) await this.d.removeName(net.name, net.subnet);
      else await this.d.catalog.removeName(net.name, net.subnet === "" ? undefined : net.subnet, this.d.hostId);
      await this.d.pending?.remove(net.name);
    }
  }

  /**
   * A network of ours that this daemon has: published if the catalog lacks
   * it; a clash with the catalog's name is reported (and, for a network just
   * created here, undone: that is how the create is refused).
   */
  private async adopt(net: DockerNetwork, justCreated: boolean): Promise<void> {
    // A lost CAS means another host wrote the name meanwhile: look again.
    const current = await casRounds(async () => {
      const read = await this.d.catalog.get(net.name);
      const removed = read?.entry.state === "removed";
      // A tombstone of this very network (same subnet) on a host that was away: its copy goes.
      if (removed && read.entry.spec.subnet === net.subnet && !justCreated) return read;
      if (read !== undefined && !removed) return read;
      if (!(await this.d.catalog.publish({ ...net }, this.d.hostId, read?.index ?? 0))) return undefined;
      this.problems.delete(net.name);
      this.log.info({ network: net.name, subnet: net.subnet, over: removed ? "a removed one" : undefined }, "network published to the cluster");
      return "published" as const;
    });
    if (current === "published") return;
    if (current === undefined) {
      this.problems.set(net.name, contended(`publishing network ${net.name}`));
      return;
    }
    if (current.entry.state === "removed") {
      await this.removeHere(net);
      return;
    }
    if (current.entry.spec.subnet === net.subnet) {
      this.problems.delete(net.name);
      return;
    }
    const clash = `network ${net.name}: this host's is ${net.subnet}, the cluster's ${net.name} is ${current.entry.spec.subnet} (created on ${current.entry.host}); one name is one network: remove one of them or pick another name`;
    this.log.error({ network: net.name, here: net.subnet, cluster: current.entry.spec.subnet }, clash);
    if (!justCreated) {
      this.problems.set(net.name, clash);
      return;
    }
    // Refused: undone here, and the cluster's network of that name takes its place.
    this.refused.push({ name: net.name, problem: `${clash} (refused: the ${net.subnet} network was removed again)`, at: new Date().toISOString() });
    if (this.refused.length > REFUSALS_KEPT) this.refused.shift();
    await this.removeHere(net);
    if (!this.known.has(net.id)) await this.createHere(current);
  }

  private async removeHere(net: DockerNetwork): Promise<void> {
    this.removing.add(net.id);
    const r = await this.d.docker.removeNetwork(net.id);
    if (!r.ok || r.value === "in-use") {
      this.removing.delete(net.id);
      if (r.ok) {
        if (!this.draining.has(net.name)) this.log.info({ network: net.name }, "network removed in the cluster; kept here until its containers are gone");
        this.draining.set(net.name, net.id);
      } else this.problems.set(net.name, r.error.message);
      return;
    }
    this.draining.delete(net.name);
    this.known.delete(net.id);
    this.log.info({ network: net.name, result: r.value }, "network removed here");
  }

  private async doReconcile(why: string): Promise<void> {
    // Once, at start: removals the plugin saw before it stopped and had not told yet (it stopped inside the prune window).
    if (!this.restoredPending) {
      this.restoredPending = true;
      const waiting = new Set(this.pendingDestroys.map((n) => n.name));
      const left = ((await this.d.pending?.all()) ?? []).filter((n) => !waiting.has(n.name));
      if (left.length > 0) await this.tellRemoved(left);
    }
    // The daemon first: what it has is known here even when the store does not answer.
    const local = (await this.d.docker.networks(this.d.drivers)).filter((n) => this.ours(n.driver));
    const localIds = new Set(local.map((n) => n.id));
    for (const gone of this.known.values()) {
      // Gone without our removal: its destroy event is queued behind this reconcile.
      if (!localIds.has(gone.id) && !this.removing.has(gone.id)) this.leaving.mark(gone.name, gone.subnet);
    }
    this.known.clear();
    for (const n of local) this.known.set(n.id, n);
    const entries = await this.d.catalog.all();
    const byName = new Map(entries.map((e) => [e.entry.name, e]));
    for (const net of local) await this.adopt(net, false);
    const localNames = new Set(local.map((n) => n.name));
    for (const [name, s] of byName) {
      if (s.entry.state === "active" && !localNames.has(name) && !this.leaving.holds(name, s.entry.spec.subnet)) await this.createHere(s);
      if (s.entry.state === "removed" && !localNames.has(name)) this.draining.delete(name);
    }
    this.leaving.settle(
      (name) => localNames.has(name),
      (name) => byName.get(name)?.entry.state === "active",
    );
    // A problem with a name that neither the catalog nor this daemon has any more (a refused entry deleted) is over.
    const named = new Set([...localNames, ...byName.keys(), ...entries.map((e) => e.keyName)]);
    for (const name of [...this.problems.keys()]) if (!named.has(name)) this.problems.delete(name);
    if (this.d.tombstoneTtlMs !== undefined) await this.d.catalog.sweep(this.d.tombstoneTtlMs);
    this.log.debug({ why, local: local.length, catalog: entries.length }, "networks reconciled");
  }

  private async createHere(s: StoredEntry): Promise<void> {
    const checked = checkCatalogEntry(s.value, s.keyName, this.d.drivers);
    if (!checked.ok) {
      const problem = `not created here: the cluster's catalog entry for it is refused: ${checked.error}`;
      if (this.problems.get(s.keyName) !== problem)
        this.log.warn({ network: s.keyName, from: s.entry.host, reason: checked.error }, "refusing a catalog entry: nothing is created");
      this.problems.set(s.keyName, problem);
      return;
    }
    const r = await this.d.docker.createNetwork(specOf(s.entry));
    if (r.ok) {
      this.problems.delete(s.entry.name);
      this.log.info({ network: s.entry.name, subnet: s.entry.spec.subnet, from: s.entry.host }, "network created from the cluster");
      return;
    }
    this.problems.set(s.entry.name, r.error.message);
    this.log.warn({ network: s.entry.name, err: r.error.message }, "cannot create the cluster's network here");
  }
}
