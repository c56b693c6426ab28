/**
 * Cluster-wide pools: the protocol that creates, shares and deletes the
 * `pools/<subnet>` records. Their shapes and the PoolID are in pool-records.ts.
 *
 * Design note.
 *
 * One key per pool, not one object per address space. libnetwork's IPAM, in
 * its cluster-store days, kept all pools of an address space in one store
 * object written with CAS, so "no pool overlaps this one" was checked and the
 * pool added in one atomic step. Here every host requests the pool of each
 * network it has (Docker's networks are per host), so that object would be
 * hot: every request and release on any host a CAS on it, losing to the
 * others, each rewriting the whole object, which grows with the pools.
 * Instead each pool is its own key and each host's share of it another
 * (`pools/<subnet>/refs/<host>`): a host joining an existing network, or
 * leaving one that others still hold, writes only its own reference, and
 * pools that do not overlap never touch the same key. The price: the overlap
 * check spans keys, and the store (driver/contracts/store.ts) has no CAS over
 * several keys. So a new pool is written as a claim first and checked after,
 * and a record that a host left half-way when it died must be taken over by
 * the others. Addresses (addresses.ts) and VNIs (vnis.ts) are one key per
 * item too.
 *
 * A pool record's states:
 *
 *   absent ──claim──▶ claiming ──no rival──▶ ready ──last ref dropped──▶ releasing ──no refs──▶ absent
 *                        │                    ▲                              │
 *                        └──rival──▶ absent   └───────a ref appeared─────────┘
 *
 *  - claim (create): only after a listing shows no record of an overlapping
 *    subnet; a create-only CAS writes `claiming` with a fresh uid (two claims
 *    of one subnet meet on that one key). Then the pools are listed again: the
 *    claim withdraws (deletes itself) if an overlapping record of another
 *    subnet is `ready` or `releasing`, or is a claim with a lower modifyIndex;
 *    otherwise a CAS on its own modifyIndex makes it `ready`. Oldest
 *    modifyIndex wins: the index is the store's order of writes, and the
 *    later of two overlapping claims lists after the earlier was written, so
 *    it withdraws unless the earlier is already gone; both cannot be ready.
 *  - hold: a host takes a ready pool with a create-only CAS of its reference
 *    (which fails if it holds the pool already: one network per subnet per
 *    host, refused in the words of Docker's overlap error). The reference is
 *    written first and the record read after: ready with the same uid is
 *    held; `releasing` is read again until it is ready or gone (or the
 *    request fails as contended); gone or another uid drops the reference and
 *    starts over.
 *  - release: the host deletes its reference; if none are left, a CAS marks
 *    the record `releasing` and the references are listed again. A reference
 *    that appeared meanwhile turns it back to `ready` (its holder is waiting
 *    in the step above); otherwise the pool's addresses, name bindings,
 *    references, cursor and then the record itself are deleted. Mark before
 *    look here, write before look in hold: one of the two sees the other.
 *  - stale takeover: `claiming` or `releasing` older than STALE_AFTER_MS
 *    (cas-rounds.ts; by the writer's clock in `at`) is taken over by a host
 *    that asks for that subnet or one overlapping it: a stale claim is
 *    deleted (CAS on its modifyIndex), a stale release is finished as above,
 *    back to ready if references exist. A fresh one is waited for, round by
 *    round. Allocation without --subnet does neither: it skips every block
 *    that a record overlaps.
 *
 * These steps are kept in one module because each is correct only against
 * another's order (claim against claim, hold against release); apart, the
 * halves of each argument would sit in different files.
 */
import { randomUUID } from "node:crypto";
import { keys, subnetFromKey } from "../cluster/keys.js";
import type { Logger } from "../../lib/log.js";
import { success } from "../../lib/result.js";
import { asBadRequest, refuse, type Outcome } from "../errors.js";
import type { KV, Store } from "../contracts/store.js";
import { POOL_PREFIX, Subnet } from "../../lib/net.js";
import { casRounds, contended, STALE_AFTER_MS } from "../cluster/cas-rounds.js";
import { decodePool, formatPoolId, parsePoolId, POOL_OVERLAP, readPool, refTime, type PoolRecord, type StoredPool } from "./pool-records.js";

const VALID_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export interface RequestPoolArgs {
  hostId: string;
  /** --subnet; "" or absent: pick one. */
  pool?: string;
  /** --ip-range; needs `pool`. */
  subPool?: string;
  /** `--ipam-opt name=…`: pools with the same name on several hosts are one network. */
  name?: string;
  v6: boolean;
}

export interface PoolResponse {
  poolId: string;
  pool: string;
  data: Record<string, string>;
}

export interface ReleasePoolArgs {
  hostId: string;
  poolId: string;
}

export interface PoolAllocatorConfig {
  poolRange: string;
  poolSize: number;
}

type Created = { kind: "created" } | { kind: "overlap"; other: Subnet } | { kind: "lost" };
type HeldCheck = "held" | "gone" | "contended";

/**
 * Cluster-wide pools. A pool is identified by its subnet: the same subnet
 * requested on several hosts is one network, held by one reference per host
 * (`pools/<subnet>/refs/<hostId>`); the last release deletes the pool, its
 * addresses and its name. A host asking again for a pool it already holds is
 * refused the way Docker's own IPAM refuses an overlapping pool: one host has
 * one network per subnet.
 *
 * Repeated identical requests give the same PoolID, except without --subnet
 * and without a name: libnetwork repeats those when a pool clashes with a host
 * route and needs a different pool each time.
 */
export class PoolAllocator {
  private readonly range: Subnet;
  private readonly poolSize: number;

  constructor(
    private readonly store: Store,
    cfg: PoolAllocatorConfig,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    const range = Subnet.parse(cfg.poolRange);
    if (!range.ok) throw new Error(`pool range: ${range.error}`);
    if (!(cfg.poolSize >= Math.max(range.value.prefix, POOL_PREFIX.min) && cfg.poolSize <= POOL_PREFIX.max)) {
      throw new Error(`pool size /${cfg.poolSize} does not fit pool range ${cfg.poolRange}`);
    }
    this.range = range.value;
    this.poolSize = cfg.poolSize;
  }

  async requestPool(req: RequestPoolArgs): Promise<Outcome<PoolResponse>> {
    if (req.v6) return refuse("bad-request", "IPv6 pools are not supported yet: tsoverlay allocates IPv4 pools only");
    const name = req.name || undefined;
    if (name !== undefined && !VALID_NAME.test(name)) {
      return refuse("bad-request", `invalid pool name "${name}": use up to 128 letters, digits, '.', '_' or '-'`);
    }
    const poolText = req.pool || undefined;
    const subPoolText = req.subPool || undefined;

    let subnet: Outcome<Subnet>;
    let subPool: Subnet | undefined;
    if (poolText !== undefined) {
      const pool = asBadRequest(Subnet.parse(poolText, POOL_PREFIX));
      if (!pool.ok) return pool;
      if (subPoolText !== undefined) {
        const parsed = asBadRequest(Subnet.parse(subPoolText, undefined, "sub-pool"));
        if (!parsed.ok) return parsed;
        if (!pool.value.containsSubnet(parsed.value)) {
          return refuse("bad-request", `sub-pool ${subPoolText} is not inside pool ${pool.value.toString()}`);
        }
        subPool = parsed.value;
      }
      subnet = await this.acquireGiven(pool.value, req.hostId, name);
    } else if (subPoolText !== undefined) {
      return refuse("bad-request", `sub-pool ${subPoolText} needs a pool: give --subnet with --ip-range`);
    } else if (name !== undefined) {
      subnet = await this.acquireNamed(name, req.hostId);
    } else {
      subnet = await this.allocate(req.hostId);
    }
    if (!subnet.ok) return subnet;
    return success({ poolId: formatPoolId(subnet.value, subPool), pool: subnet.value.toString(), data: {} });
  }

  async releasePool(req: ReleasePoolArgs): Promise<Outcome<void>> {
    const id = parsePoolId(req.poolId);
    if (!id.ok) return id;
    if ((await readPool(this.store, id.value.pool)) === undefined) {
      this.log.debug({ pool: id.value.pool.toString(), host: req.hostId }, "released pool was already gone");
      return success(undefined);
    }
    return this.release(id.value.pool, req.hostId);
  }

  private async acquireGiven(pool: Subnet, hostId: string, name: string | undefined): Promise<Outcome<Subnet>> {
    const held = await this.hold(pool, hostId, name);
    if (!held.ok) return held;
    if (name === undefined) return success(pool);
    const bound = await this.bindName(name, pool);
    if (bound.ok && bound.value.equals(pool)) return success(pool);
    await this.release(pool, hostId);
    if (!bound.ok) return bound;
    return refuse("conflict", `pool name ${name} is already bound to pool ${bound.value.toString()} in the cluster, not ${pool.toString()}`);
  }

  /** No --subnet but a name: the name's pool, or a new pool bound to the name. */
  private async acquireNamed(name: string, hostId: string): Promise<Outcome<Subnet>> {
    const acquired = await casRounds(async (): Promise<Outcome<Subnet> | undefined> => {
      const binding = await this.store.get(keys.name(name));
      const subnet = binding === undefined ? await this.allocate(hostId, name) : await this.holdBound(binding, hostId);
      if (!subnet.ok) return subnet;
      // Binding again also restores a name deleted by a concurrent last release.
      const bound = await this.bindName(name, subnet.value);
      if (bound.ok && bound.value.equals(subnet.value)) return subnet;
      await this.release(subnet.value, hostId);
      if (!bound.ok) return bound;
      // Another host bound the name first: use its pool on the next round.
      return undefined;
    });
    return acquired ?? refuse("conflict", contended(`requesting the pool named ${name}`));
  }

  private async holdBound(binding: KV, hostId: string): Promise<Outcome<Subnet>> {
    const subnet = Subnet.parse(binding.value, POOL_PREFIX);
    if (!subnet.ok) throw new Error(`corrupt name binding at ${binding.key}: ${subnet.error}`);
    const held = await this.hold(subnet.value, hostId);
    return held.ok ? subnet : held;
  }

  /** Create-only binding of `names/<name>`; returns the subnet the name ends up bound to. */
  private async bindName(name: string, subnet: Subnet): Promise<Outcome<Subnet>> {
    const bound = await casRounds(async (): Promise<Outcome<Subnet> | undefined> => {
      if (await this.store.cas(keys.name(name), subnet.toString(), 0)) return success(subnet);
      const binding = await this.store.get(keys.name(name));
      if (binding === undefined) return undefined;
      const parsed = Subnet.parse(binding.value, POOL_PREFIX);
      if (!parsed.ok) throw new Error(`corrupt name binding at ${binding.key}: ${parsed.error}`);
      return success(parsed.value);
    });
    return bound ?? refuse("conflict", contended(`binding the pool name ${name}`));
  }

  /** The lowest free /poolSize block of the range, created and held by this host. */
  private async allocate(hostId: string, name?: string): Promise<Outcome<Subnet>> {
    const allocated = await casRounds(async (): Promise<Outcome<Subnet> | undefined> => {
      const pools = await this.listPools();
      let sawFree = false;
      for (const block of this.range.split(this.poolSize)) {
        if (pools.some((p) => p.subnet.overlaps(block))) continue;
        sawFree = true;
        const created = await this.create(block, hostId, name, pools);
        if (created.kind !== "created") continue; // taken meanwhile: try the next block
        const held = await this.hold(block, hostId, name);
        return held.ok ? success(block) : held;
      }
      if (!sawFree && !pools.some((p) => p.record.state !== "ready" && p.subnet.overlaps(this.range))) {
        return refuse("conflict", `no free /${this.poolSize} pool left in the cluster pool range ${this.range.toString()}`);
      }
      return undefined;
    });
    return allocated ?? refuse("conflict", contended(`allocating a /${this.poolSize} pool from ${this.range.toString()}`));
  }

  /**
   * Takes one reference on the subnet's pool for this host, creating the pool
   * if needed. The ref is written first and the pool checked after, so a
   * concurrent last release either sees the ref (and keeps the pool) or has
   * already started deleting (and we start over).
   */
  private async hold(subnet: Subnet, hostId: string, name?: string): Promise<Outcome<void>> {
    const held = await casRounds(async (): Promise<Outcome<void> | "contended" | undefined> => {
      const pool = await readPool(this.store, subnet);
      if (pool === undefined) {
        const created = await this.create(subnet, hostId, name);
        if (created.kind === "overlap") {
          return refuse("conflict", `pool ${subnet.toString()} overlaps ${created.other.toString()}, already in use in the cluster`);
        }
        return undefined;
      }
      if (pool.record.state !== "ready") {
        await this.recoverIfStale(pool);
        return undefined;
      }
      if (!(await this.store.cas(keys.poolRef(subnet.toString(), hostId), JSON.stringify({ at: this.timestamp() }), 0))) {
        return refuse("conflict", `${POOL_OVERLAP} (${subnet.toString()} is already in use by a tsoverlay network on this host)`);
      }
      const check = await this.confirmHeld(subnet, pool.record.uid);
      if (check === "held") {
        this.log.debug({ pool: subnet.toString(), host: hostId }, "pool reference taken");
        return success(undefined);
      }
      await this.store.delete(keys.poolRef(subnet.toString(), hostId));
      return check === "contended" ? check : undefined;
    });
    return held === undefined || held === "contended" ? refuse("conflict", contended(`requesting pool ${subnet.toString()}`)) : held;
  }

  private async confirmHeld(subnet: Subnet, uid: string): Promise<HeldCheck> {
    const settled = await casRounds(async (): Promise<HeldCheck | undefined> => {
      const pool = await readPool(this.store, subnet);
      if (pool === undefined || pool.record.uid !== uid) return "gone";
      if (pool.record.state === "ready") return "held";
      // "releasing": the releaser either sees our ref and reverts, or deletes.
      await this.recoverIfStale(pool);
      return undefined;
    });
    return settled ?? "contended";
  }

  /**
   * Creates the pool record. Checking for overlaps and then creating is not
   * atomic across two different keys, so the record is first a claim: after
   * writing it we look again, and whoever finds an overlapping ready pool or
   * an older claim withdraws.
   */
  private async create(subnet: Subnet, hostId: string, name?: string, known?: StoredPool[]): Promise<Created> {
    const pools = known ?? (await this.listPools());
    if (pools.some((p) => p.subnet.equals(subnet))) return { kind: "lost" };
    const blocker = pools.find((p) => p.subnet.overlaps(subnet));
    if (blocker !== undefined) {
      if (blocker.record.state === "ready") return { kind: "overlap", other: blocker.subnet };
      await this.recoverIfStale(blocker);
      return { kind: "lost" };
    }

    const key = keys.pool(subnet.toString());
    const record: PoolRecord = {
      subnet: subnet.toString(),
      state: "claiming",
      uid: randomUUID(),
      host: hostId,
      ...(name === undefined ? {} : { name }),
      at: this.timestamp(),
    };
    if (!(await this.store.cas(key, JSON.stringify(record), 0))) return { kind: "lost" };
    const claim = await readPool(this.store, subnet);
    if (claim === undefined || claim.record.uid !== record.uid) return { kind: "lost" };

    const rival = (await this.listPools()).find(
      (p) => !p.subnet.equals(subnet) && p.subnet.overlaps(subnet) && (p.record.state !== "claiming" || p.kv.modifyIndex < claim.kv.modifyIndex),
    );
    if (rival !== undefined) {
      await this.store.delete(key, claim.kv.modifyIndex);
      return rival.record.state === "ready" ? { kind: "overlap", other: rival.subnet } : { kind: "lost" };
    }
    const ready: PoolRecord = { ...record, state: "ready", at: this.timestamp() };
    if (!(await this.store.cas(key, JSON.stringify(ready), claim.kv.modifyIndex))) return { kind: "lost" };
    this.log.info({ pool: subnet.toString(), host: hostId, name }, "pool created");
    return { kind: "created" };
  }

  /**
   * Drops `hostId`'s reference; the last one out deletes the pool. Idempotent:
   * a reference that is already gone is fine (a replayed teardown, or a dead
   * host's records collected by another host).
   */
  async release(subnet: Subnet, hostId: string): Promise<Outcome<void>> {
    const dropped = await this.store.delete(keys.poolRef(subnet.toString(), hostId));
    this.log.debug({ pool: subnet.toString(), host: hostId, dropped }, "pool reference dropped");
    await this.deleteIfUnused(subnet);
    return success(undefined);
  }

  /**
   * Takes `hostId`'s reference again if it went missing (the collector
   * re-asserting this host's records): unlike requestPool, holding it already
   * is fine, and the pool is created again if it was deleted meanwhile.
   */
  async reclaim(subnet: Subnet, hostId: string): Promise<Outcome<void>> {
    if ((await this.heldSince(subnet, hostId)) !== undefined && (await readPool(this.store, subnet)) !== undefined) return success(undefined);
    await this.store.delete(keys.poolRef(subnet.toString(), hostId));
    return this.hold(subnet, hostId);
  }

  /** Every pool reference in the cluster: which host holds which pool, since when. */
  async references(): Promise<{ subnet: string; hostId: string; at: string }[]> {
    const prefix = keys.pools();
    const out: { subnet: string; hostId: string; at: string }[] = [];
    for (const kv of await this.store.list(prefix)) {
      const m = /^([^/]+)\/refs\/([^/]+)$/.exec(kv.key.slice(prefix.length));
      if (m) out.push({ subnet: subnetFromKey(m[1]!), hostId: m[2]!, at: refTime(kv) });
    }
    return out;
  }

  /** When `hostId` took its reference on the pool, if it holds one. */
  async heldSince(subnet: Subnet, hostId: string): Promise<string | undefined> {
    const kv = await this.store.get(keys.poolRef(subnet.toString(), hostId));
    return kv === undefined ? undefined : refTime(kv);
  }

  /** When no host holds a ref any more: mark "releasing", check the refs again, delete. */
  private async deleteIfUnused(subnet: Subnet): Promise<void> {
    const done = await casRounds(async () => {
      const pool = await readPool(this.store, subnet);
      if (pool === undefined || pool.record.state !== "ready") return true;
      if ((await this.store.list(keys.poolRefs(subnet.toString()))).length > 0) return true;
      const releasing: PoolRecord = { ...pool.record, state: "releasing", at: this.timestamp() };
      if (!(await this.store.cas(pool.kv.key, JSON.stringify(releasing), pool.kv.modifyIndex))) return undefined;
      const marked = await readPool(this.store, subnet);
      if (marked?.record.uid === pool.record.uid && marked.record.state === "releasing") {
        await this.finishRelease(marked);
      }
      return true;
    });
    if (done === undefined) this.log.warn({ pool: subnet.toString() }, "pool left in the cluster: its record stayed contended");
  }

  private async finishRelease(pool: StoredPool): Promise<void> {
    const subnet = pool.subnet.toString();
    if ((await this.store.list(keys.poolRefs(subnet))).length > 0) {
      // A host took a ref while we were marking: the pool lives on.
      const ready: PoolRecord = { ...pool.record, state: "ready", at: this.timestamp() };
      await this.store.cas(pool.kv.key, JSON.stringify(ready), pool.kv.modifyIndex);
      return;
    }
    await this.store.deleteTree(keys.addresses(subnet));
    for (const binding of await this.store.list(keys.names())) {
      if (binding.value === subnet) await this.store.delete(binding.key, binding.modifyIndex);
    }
    await this.store.deleteTree(keys.poolRefs(subnet));
    await this.store.delete(keys.addressCursor(subnet));
    await this.store.delete(pool.kv.key, pool.kv.modifyIndex);
    this.log.info({ pool: subnet }, "pool released by the last host");
  }

  /** Takes over a claim or release whose host died half-way. */
  private async recoverIfStale(pool: StoredPool): Promise<void> {
    if (pool.record.state === "ready" || this.now() - Date.parse(pool.record.at) < STALE_AFTER_MS) return;
    const { state, host } = pool.record;
    this.log.warn({ pool: pool.subnet.toString(), state, host }, "taking over a stale pool record");
    if (pool.record.state === "claiming") await this.store.delete(pool.kv.key, pool.kv.modifyIndex);
    else await this.finishRelease(pool);
  }

  /** Pool records only: `pools/` also holds every `<subnet>/refs/<hostId>`. */
  private async listPools(): Promise<StoredPool[]> {
    const prefix = keys.pools();
    return (await this.store.list(prefix)).filter((kv) => !kv.key.slice(prefix.length).includes("/")).map(decodePool);
  }

  private timestamp(): string {
    return new Date(this.now()).toISOString();
  }
}
