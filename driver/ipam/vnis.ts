import { keys } from "../cluster/keys.js";
import { failure, success, type Result } from "../../lib/result.js";
import { asBadRequest, refuse, type Outcome } from "../errors.js";
import type { KV, Store } from "../contracts/store.js";
import { casRounds, contended } from "../cluster/cas-rounds.js";

/**
 * VXLAN network identifiers, claimed cluster-wide: `vnis/<vni>` holds the
 * subnet of the network that owns it. One VNI per subnet.
 */
export interface VniRange {
  min: number;
  max: number;
}

/** The VNI field is 24 bits; 0 is left out as "no VNI". */
export const VNI_LIMITS: VniRange = { min: 1, max: 16_777_215 };
/**
 * Starts at 2^20: Docker's own overlay hands out VNIs upwards from 4096, and
 * two VXLAN devices with one VNI on one UDP port cannot coexist on a host, so
 * the default keeps well clear of it; lower VNIs stay free for `-o vni=…`.
 */
export const DEFAULT_VNI_RANGE: VniRange = { min: 1_048_576, max: VNI_LIMITS.max };

function isValidVni(vni: number): boolean {
  return Number.isInteger(vni) && vni >= VNI_LIMITS.min && vni <= VNI_LIMITS.max;
}

/** A configured range (TSOVERLAY_VNI_RANGE): checked at start, so its errors are plain text. */
export function validateVniRange(range: VniRange): Result<VniRange> {
  if (!isValidVni(range.min) || !isValidVni(range.max)) {
    return failure(`invalid VNI range ${range.min}-${range.max}: VNIs are integers in ${VNI_LIMITS.min}..${VNI_LIMITS.max}`);
  }
  if (range.min > range.max) return failure(`invalid VNI range ${range.min}-${range.max}: min is above max`);
  return success(range);
}

export interface ClaimVniRequest {
  subnet: string;
  /** A VNI chosen by the user; may lie outside `range`. */
  requested?: number;
  range: VniRange;
}

/**
 * Claims a VNI for `subnet`: exactly `requested`, or the lowest free one in
 * `range`. Idempotent: a subnet that already holds a VNI gets it back, and a
 * request for a different one is refused.
 */
export async function claimVni(store: Store, req: ClaimVniRequest): Promise<Outcome<number>> {
  const { subnet, requested } = req;
  if (requested !== undefined && !isValidVni(requested)) {
    return refuse("bad-request", `invalid VNI ${requested} for network ${subnet}: VNIs are integers in ${VNI_LIMITS.min}..${VNI_LIMITS.max}`);
  }
  const range = asBadRequest(validateVniRange(req.range));
  if (!range.ok) return range;

  const claimed = await casRounds(async (): Promise<Outcome<number> | undefined> => {
    const claims = await listClaims(store);
    const held = ownedBy(claims, subnet)[0];
    if (held !== undefined) {
      if (requested !== undefined && held.vni !== requested) {
        return refuse("conflict", `network ${subnet} already uses VNI ${held.vni}, not ${requested}`);
      }
      return success(held.vni);
    }

    if (requested !== undefined) {
      const owner = claims.find((c) => c.vni === requested)?.subnet;
      if (owner !== undefined) return refuse("conflict", `VNI ${requested} is already used by network ${owner}`);
      if ((await store.cas(keys.vni(requested), subnet, 0)) && (await keptClaim(store, requested, subnet))) return success(requested);
      return undefined;
    }

    const taken = new Set(claims.map((c) => c.vni));
    let exhausted = true;
    for (let vni = range.value.min; vni <= range.value.max; vni++) {
      if (taken.has(vni)) continue;
      exhausted = false;
      // A lost create-only CAS means someone took this VNI: try the next one.
      if (!(await store.cas(keys.vni(vni), subnet, 0))) continue;
      if (await keptClaim(store, vni, subnet)) return success(vni);
      break;
    }
    return exhausted ? refuse("conflict", `no free VNI left in range ${range.value.min}-${range.value.max} for network ${subnet}`) : undefined;
  });
  return claimed ?? refuse("conflict", contended(`claiming a VNI for network ${subnet}`));
}

/** Deletes the claim only if it belongs to `subnet`; returns whether it did. */
export async function releaseVni(store: Store, vni: number, subnet: string): Promise<boolean> {
  const released = await casRounds(async () => {
    const kv = await store.get(keys.vni(vni));
    if (kv === undefined || kv.value !== subnet) return false;
    return (await store.delete(kv.key, kv.modifyIndex)) ? true : undefined;
  });
  return released ?? false;
}

interface Claim {
  vni: number;
  subnet: string;
  modifyIndex: number;
}

async function listClaims(store: Store): Promise<Claim[]> {
  const prefix = keys.vnis();
  return (await store.list(prefix)).map((kv: KV) => ({
    vni: Number(kv.key.slice(prefix.length)),
    subnet: kv.value,
    modifyIndex: kv.modifyIndex,
  }));
}

/** The subnet's claims, oldest first: the oldest one is the subnet's VNI. */
function ownedBy(claims: Claim[], subnet: string): Claim[] {
  return claims.filter((c) => c.subnet === subnet).sort((a, b) => a.modifyIndex - b.modifyIndex);
}

/**
 * Two hosts may claim different VNIs for the same subnet at once. Each then
 * looks again: the oldest claim wins and the others withdraw theirs, after
 * which the caller's next round returns (or refuses) the winner.
 */
async function keptClaim(store: Store, vni: number, subnet: string): Promise<boolean> {
  const mine = await store.get(keys.vni(vni));
  if (mine === undefined || mine.value !== subnet) return false;
  const oldest = ownedBy(await listClaims(store), subnet)[0];
  if (oldest === undefined || oldest.vni === vni) return true;
  await store.delete(mine.key, mine.modifyIndex);
  return false;
}
