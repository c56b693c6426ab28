/**
 * What the cluster store holds about pools, and the PoolID Docker carries:
 * the record shapes and their codecs. The allocation protocol that writes
 * them is pools.ts.
 */
import { z } from "zod";
import { keys } from "../cluster/keys.js";
import { success } from "../../lib/result.js";
import { refuse, type Outcome } from "../errors.js";
import type { KV, Store } from "../contracts/store.js";
import { POOL_PREFIX, Subnet } from "../../lib/net.js";
import { messageOf } from "../../lib/errors.js";

/** The address space our IPAM reports; networks from any other IPAM are refused. */
export const ADDRESS_SPACE = "tsoverlay";

/** libnetwork's own words (ipamapi.ErrPoolOverlap, as its default IPAM reports it). */
export const POOL_OVERLAP = "invalid pool request: Pool overlaps with other one on this address space";

/**
 * PoolID, opaque to Docker, which hands it back in every address request:
 *   "<subnet>"             e.g. "10.10.0.0/24"
 *   "<subnet>|<subPool>"   e.g. "10.10.0.0/24|10.10.0.128/25" (--ip-range)
 * The sub-pool rides in the ID so that address requests stay inside it.
 */
export interface PoolId {
  pool: Subnet;
  subPool?: Subnet;
}

export function formatPoolId(pool: Subnet, subPool?: Subnet): string {
  return subPool === undefined ? pool.toString() : `${pool.toString()}|${subPool.toString()}`;
}

export function parsePoolId(poolId: string): Outcome<PoolId> {
  const [poolText = "", subPoolText, ...rest] = poolId.split("|");
  if (rest.length > 0) return refuse("bad-request", `invalid pool ID ${poolId}: expected <subnet> or <subnet>|<sub-pool>`);
  const pool = Subnet.parse(poolText, POOL_PREFIX);
  if (!pool.ok) return refuse("bad-request", `invalid pool ID ${poolId}: ${pool.error}`);
  if (subPoolText === undefined) return success({ pool: pool.value });
  const subPool = Subnet.parse(subPoolText, undefined, "sub-pool");
  if (!subPool.ok) return refuse("bad-request", `invalid pool ID ${poolId}: ${subPool.error}`);
  if (!pool.value.containsSubnet(subPool.value)) {
    return refuse("bad-request", `invalid pool ID ${poolId}: sub-pool ${subPoolText} is not inside pool ${poolText}`);
  }
  return success({ pool: pool.value, subPool: subPool.value });
}

/**
 * `pools/<subnet>`. A pool is created "claiming", checked against rival
 * claims, then made "ready"; it is marked "releasing" while the last host
 * deletes it. `uid` tells one incarnation of a subnet's pool from the next.
 */
const PoolRecord = z.object({
  subnet: z.string(),
  state: z.enum(["claiming", "ready", "releasing"]),
  uid: z.string(),
  host: z.string(),
  name: z.string().optional(),
  at: z.string(),
});
export type PoolRecord = z.infer<typeof PoolRecord>;

export interface StoredPool {
  subnet: Subnet;
  record: PoolRecord;
  kv: KV;
}

export async function readPool(store: Store, subnet: Subnet): Promise<StoredPool | undefined> {
  const kv = await store.get(keys.pool(subnet.toString()));
  return kv && decodePool(kv);
}

export function decodePool(kv: KV): StoredPool {
  let record: PoolRecord;
  try {
    record = PoolRecord.parse(JSON.parse(kv.value));
  } catch (err) {
    throw new Error(`corrupt pool record at ${kv.key}: ${messageOf(err)}`, { cause: err });
  }
  const subnet = Subnet.parse(record.subnet);
  if (!subnet.ok) throw new Error(`corrupt pool record at ${kv.key}: ${subnet.error}`);
  return { subnet: subnet.value, record, kv };
}

/** `pools/<subnet>/refs/<hostId>`: this host holds the pool (one reference per host). */
const RefRecord = z.object({ at: z.string() });

/** A reference's time; references written before they carried one count as old. */
export function refTime(kv: KV): string {
  try {
    return RefRecord.parse(JSON.parse(kv.value)).at;
  } catch {
    return new Date(0).toISOString();
  }
}
