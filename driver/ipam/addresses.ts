// Over 300 lines on purpose: the one home of address records: request, release, list, reclaim; each a CAS on one key.
import { z } from "zod";
import { keys, subnetFromKey } from "../cluster/keys.js";
import type { Logger } from "../../lib/log.js";
import { success } from "../../lib/result.js";
import { asBadRequest, refuse, type Outcome } from "../errors.js";
import type { KV, Store } from "../contracts/store.js";
import { addressRange, formatIpv4, parseIpv4, type Ipv4, type Subnet } from "../../lib/net.js";
import { parsePoolId, readPool } from "./pool-records.js";
import { casRounds, contended } from "../cluster/cas-rounds.js";
import { messageOf } from "../../lib/errors.js";

/**
 * `addresses/<subnet>/<ip>`. libnetwork sends --aux-address requests with
 * empty options, indistinguishable from endpoints, so "aux" is never written
 * today; it is kept so that records stay readable if that changes.
 */
const AddressRecord = z.object({
  host: z.string(),
  kind: z.enum(["gateway", "endpoint", "aux"]),
  mac: z.string().optional(),
  /** The container's name, when Docker gives it (29 and later). */
  name: z.string().optional(),
  at: z.string(),
});
export type AddressRecord = z.infer<typeof AddressRecord>;

/** An address record as the collector sees it. */
export interface HeldAddress {
  pool: string;
  ip: string;
  record: AddressRecord;
  kv: KV;
}

export interface RequestAddressArgs {
  hostId: string;
  poolId: string;
  /** --ip / --gateway; "" or absent: pick one. */
  address?: string;
  /** The network's gateway (one per pool, shared by its hosts), not an endpoint's address. */
  gateway?: boolean;
  /** The endpoint's MAC, when Docker gives one. */
  mac?: string;
  /** The container the address is for (Docker 29+ names it). */
  name?: string;
}

export interface AddressResponse {
  /** "a.b.c.d/nn" */
  address: string;
  data: Record<string, string>;
}

export interface ReleaseAddressArgs {
  hostId: string;
  poolId: string;
  address: string;
}

/**
 * Cluster-wide addresses: every allocated address is one create-only key, so
 * no address is handed out twice across hosts. The gateway is one per pool,
 * shared by every host of the network, and lives as long as the pool.
 */
export class AddressAllocator {
  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  async requestAddress(req: RequestAddressArgs): Promise<Outcome<AddressResponse>> {
    const id = parsePoolId(req.poolId);
    if (!id.ok) return id;
    const { pool, subPool } = id.value;
    const stored = await readPool(this.store, pool);
    if (stored === undefined || stored.record.state === "claiming") {
      return refuse("not-found", `pool ${pool.toString()} does not exist in the cluster`);
    }
    if (stored.record.state === "releasing") return refuse("conflict", `pool ${pool.toString()} is being released`);

    let wanted: Ipv4 | undefined;
    if (req.address) {
      const ip = parseAddressIn(req.address, pool);
      if (!ip.ok) return ip;
      wanted = ip.value;
    }
    const gateway = req.gateway === true;
    const mac = req.mac || undefined;
    const record: AddressRecord = {
      host: req.hostId,
      kind: gateway ? "gateway" : "endpoint",
      ...(mac === undefined ? {} : { mac }),
      ...(req.name === undefined || gateway ? {} : { name: req.name }),
      at: new Date(this.now()).toISOString(),
    };

    let ip: Outcome<Ipv4>;
    if (gateway) {
      ip = await this.claimGateway(pool, wanted, record);
    } else if (wanted !== undefined) {
      if (subPool !== undefined && !subPool.contains(wanted)) {
        return refuse("bad-request", `address ${formatIpv4(wanted)} is outside the range ${subPool.toString()} of pool ${pool.toString()}`);
      }
      ip = await this.claimGiven(pool, wanted, record);
    } else {
      ip = await this.claimNext(pool, subPool, record);
    }
    if (!ip.ok) return ip;
    const allocated = formatIpv4(ip.value);
    this.log.debug({ pool: pool.toString(), address: allocated, host: req.hostId, kind: record.kind }, "address allocated");
    return success({ address: `${allocated}/${pool.prefix}`, data: {} });
  }

  /**
   * Idempotent: an address that is not allocated, or is the gateway (released
   * with its pool), or belongs to another host, is left alone and reported as
   * released — libnetwork only logs release errors.
   */
  async releaseAddress(req: ReleaseAddressArgs): Promise<Outcome<void>> {
    const id = parsePoolId(req.poolId);
    if (!id.ok) return id;
    const pool = id.value.pool;
    const ip = parseAddressIn(req.address, pool);
    if (!ip.ok) return ip;
    const key = keys.address(pool.toString(), formatIpv4(ip.value));
    const context = { pool: pool.toString(), address: formatIpv4(ip.value), host: req.hostId };

    const released = await casRounds(async () => {
      const kv = await this.store.get(key);
      if (kv === undefined) {
        this.log.debug(context, "released address was not allocated");
        return success(undefined);
      }
      const record = decodeAddress(kv);
      if (record.kind === "gateway") return success(undefined);
      if (record.host !== req.hostId) {
        // Most likely a late repeat: the address was freed and handed to another host since.
        this.log.warn({ ...context, owner: record.host }, "not releasing an address that another host holds");
        return success(undefined);
      }
      if (!(await this.store.delete(key, kv.modifyIndex))) return undefined;
      this.log.debug(context, "address released");
      return success(undefined);
    });
    return released ?? refuse("conflict", contended(`releasing address ${formatIpv4(ip.value)} in pool ${pool.toString()}`));
  }

  /** Every address record of the cluster (gateways included). */
  async held(): Promise<HeldAddress[]> {
    const prefix = keys.allAddresses();
    const out: HeldAddress[] = [];
    for (const kv of await this.store.list(prefix)) {
      const m = /^([^/]+)\/([^/]+)$/.exec(kv.key.slice(prefix.length));
      if (!m || !parseIpv4(m[2]!).ok) continue;
      let record: AddressRecord;
      try {
        record = decodeAddress(kv);
      } catch (err) {
        this.log.warn({ key: kv.key, err: messageOf(err) }, "ignoring a corrupt address record");
        continue;
      }
      out.push({ pool: subnetFromKey(m[1]!), ip: m[2]!, record, kv });
    }
    return out;
  }

  /** The record of one address, if it is allocated. */
  async record(pool: string, ip: string): Promise<AddressRecord | undefined> {
    const kv = await this.store.get(keys.address(pool, ip));
    return kv === undefined ? undefined : decodeAddress(kv);
  }

  /** Deletes a record read by held(), unless it changed since. */
  drop(a: HeldAddress): Promise<boolean> {
    return this.store.delete(a.kv.key, a.kv.modifyIndex);
  }

  /**
   * Writes this host's record of an address it uses, if it went missing (the
   * collector re-asserting). Fails if another host holds the address now.
   */
  async reclaim(pool: string, ip: string, hostId: string, kind: "endpoint" | "gateway"): Promise<Outcome<"kept" | "restored">> {
    const key = keys.address(pool, ip);
    const record: AddressRecord = { host: hostId, kind, at: new Date(this.now()).toISOString() };
    if (await this.store.cas(key, JSON.stringify(record), 0)) return success("restored");
    const kv = await this.store.get(key);
    if (kv === undefined) return refuse("conflict", `address ${ip} in pool ${pool} changed hands while being restored`);
    const holder = decodeAddress(kv);
    if (kind === "gateway" ? holder.kind === "gateway" : holder.host === hostId) return success("kept");
    return refuse("conflict", `address ${ip} in pool ${pool} is held by ${holder.kind === "gateway" ? "the gateway" : `host ${holder.host}`}`);
  }

  private async claimGiven(pool: Subnet, ip: Ipv4, record: AddressRecord): Promise<Outcome<Ipv4>> {
    if (await this.store.cas(keys.address(pool.toString(), formatIpv4(ip)), JSON.stringify(record), 0)) return success(ip);
    return refuse("conflict", `address ${formatIpv4(ip)} is already in use in pool ${pool.toString()}`);
  }

  /**
   * The next free address after the one last handed out in the pool, wrapping
   * around (Docker's serial allocation): a freed address is not handed out
   * again until the others have been, so containers and clients that still
   * cache it (ARP, DNS, connection tables) meet nothing rather than a stranger.
   */
  private async claimNext(pool: Subnet, subPool: Subnet | undefined, record: AddressRecord): Promise<Outcome<Ipv4>> {
    const first = Math.max(pool.firstHost, subPool?.network ?? pool.firstHost);
    const last = Math.min(pool.lastHost, subPool?.broadcast ?? pool.lastHost);
    const where = subPool === undefined ? `pool ${pool.toString()}` : `range ${subPool.toString()} of pool ${pool.toString()}`;

    const claimed = await casRounds(async (): Promise<Outcome<Ipv4> | undefined> => {
      const taken = new Set((await this.allocated(pool)).map((a) => a.ip));
      const cursor = await this.cursor(pool);
      const start = cursor !== undefined && cursor >= first && cursor < last ? cursor + 1 : first;
      let sawFree = false;
      for (const ip of wrapAround(start, first, last)) {
        if (taken.has(ip)) continue;
        sawFree = true;
        // A lost create-only CAS means another host took this one: try the next.
        if (await this.store.cas(keys.address(pool.toString(), formatIpv4(ip)), JSON.stringify(record), 0)) {
          // A hint only: two hosts moving it at once just both go on from about here.
          await this.store.put(keys.addressCursor(pool.toString()), formatIpv4(ip));
          return success(ip);
        }
      }
      return sawFree ? undefined : refuse("conflict", `no available IPv4 addresses in ${where}`);
    });
    return claimed ?? refuse("conflict", contended(`allocating an address in ${where}`));
  }

  private async cursor(pool: Subnet): Promise<Ipv4 | undefined> {
    const kv = await this.store.get(keys.addressCursor(pool.toString()));
    if (kv === undefined) return undefined;
    const ip = parseIpv4(kv.value);
    return ip.ok && pool.contains(ip.value) ? ip.value : undefined;
  }

  /**
   * The pool's one gateway: --gateway or the first host address. Hosts that
   * claim different gateways at once each look again afterwards; the oldest
   * gateway record wins and the others withdraw theirs.
   */
  private async claimGateway(pool: Subnet, wanted: Ipv4 | undefined, record: AddressRecord): Promise<Outcome<Ipv4>> {
    const ip = wanted ?? pool.firstHost;
    const key = keys.address(pool.toString(), formatIpv4(ip));
    const claimed = await casRounds(async (): Promise<Outcome<Ipv4> | undefined> => {
      const current = (await this.gateways(pool))[0];
      if (current !== undefined) {
        if (wanted !== undefined && current.ip !== wanted) {
          const cluster = formatIpv4(current.ip);
          return refuse("conflict", `gateway mismatch in pool ${pool.toString()}: the cluster's gateway is ${cluster}, not ${formatIpv4(wanted)}`);
        }
        return success(current.ip);
      }
      if (await this.store.cas(key, JSON.stringify(record), 0)) {
        if ((await this.gateways(pool))[0]?.ip === ip) return success(ip);
        const mine = await this.store.get(key);
        if (mine !== undefined) await this.store.delete(key, mine.modifyIndex);
        return undefined;
      }
      const holder = await this.store.get(key);
      if (holder !== undefined && decodeAddress(holder).kind !== "gateway") {
        return refuse("conflict", `gateway address ${formatIpv4(ip)} is already in use in pool ${pool.toString()}`);
      }
      return undefined;
    });
    return claimed ?? refuse("conflict", contended(`allocating the gateway of pool ${pool.toString()}`));
  }

  private async allocated(pool: Subnet): Promise<{ ip: Ipv4; kv: KV }[]> {
    const prefix = keys.addresses(pool.toString());
    const out: { ip: Ipv4; kv: KV }[] = [];
    for (const kv of await this.store.list(prefix)) {
      const ip = parseIpv4(kv.key.slice(prefix.length));
      if (ip.ok) out.push({ ip: ip.value, kv });
    }
    return out;
  }

  /** Gateway records of the pool, oldest first. */
  private async gateways(pool: Subnet): Promise<{ ip: Ipv4; kv: KV }[]> {
    return (await this.allocated(pool)).filter((a) => decodeAddress(a.kv).kind === "gateway").sort((a, b) => a.kv.modifyIndex - b.kv.modifyIndex);
  }
}

/** first..last, starting at `start` and wrapping round to `first`. */
function* wrapAround(start: Ipv4, first: Ipv4, last: Ipv4): Generator<Ipv4> {
  yield* addressRange(start, last);
  yield* addressRange(first, start - 1);
}

/** "a.b.c.d" (libnetwork's form) or "a.b.c.d/nn", which must be a host address of the pool. */
function parseAddressIn(text: string, pool: Subnet): Outcome<Ipv4> {
  const parsed = asBadRequest(parseIpv4(text.replace(/\/\d{1,2}$/, "")));
  if (!parsed.ok) return parsed;
  const ip = parsed.value;
  const shown = formatIpv4(ip);
  if (!pool.contains(ip)) return refuse("bad-request", `address ${shown} is not in pool ${pool.toString()}`);
  if (ip === pool.network) return refuse("bad-request", `address ${shown} is the network address of pool ${pool.toString()}`);
  if (ip === pool.broadcast) return refuse("bad-request", `address ${shown} is the broadcast address of pool ${pool.toString()}`);
  return success(ip);
}

function decodeAddress(kv: KV): AddressRecord {
  try {
    return AddressRecord.parse(JSON.parse(kv.value));
  } catch (err) {
    throw new Error(`corrupt address record at ${kv.key}: ${messageOf(err)}`, { cause: err });
  }
}
