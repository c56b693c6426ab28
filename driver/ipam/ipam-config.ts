import { failure, success, type Result } from "../../lib/result.js";
import { POOL_PREFIX, Subnet } from "../../lib/net.js";
import { DEFAULT_VNI_RANGE, validateVniRange, type VniRange } from "./vnis.js";

export interface IpamConfig {
  /** This host's identity in the cluster (its underlay address). */
  hostId: string;
  /** Where pools are carved from when `docker network create` gives no --subnet. */
  poolRange: string;
  /** Prefix length of those automatic pools. */
  poolSize: number;
  vniRange: VniRange;
}

const DEFAULT_POOL_RANGE = "10.213.0.0/16";
const DEFAULT_POOL_SIZE = 24;

const IPAM_ENV = {
  poolRange: "TSOVERLAY_POOL_RANGE",
  poolSize: "TSOVERLAY_POOL_SIZE",
  vniRange: "TSOVERLAY_VNI_RANGE",
} as const;

export interface IpamConfigText {
  hostId: string;
  poolRange?: string;
  poolSize?: string;
  vniRange?: string;
}

/** Checks the IPAM's settings (blank means default); errors name the setting. */
export function parseIpamConfig(given: IpamConfigText): Result<IpamConfig> {
  const blank = (t: string | undefined): string | undefined => t?.trim() || undefined;
  const text = { hostId: given.hostId, poolRange: blank(given.poolRange), poolSize: blank(given.poolSize), vniRange: blank(given.vniRange) };
  const hostId = text.hostId.trim();
  // The host id is a path segment of cluster keys.
  if (hostId === "" || /[\s/]/.test(hostId)) {
    return failure(`invalid host id "${text.hostId}": it must be non-empty, without '/' or spaces`);
  }

  const poolRange = parsePoolRange(text.poolRange ?? DEFAULT_POOL_RANGE);
  if (!poolRange.ok) return failure(`${IPAM_ENV.poolRange}: ${poolRange.error}`);

  const poolSize = parsePoolSize(text.poolSize ?? String(DEFAULT_POOL_SIZE), poolRange.value);
  if (!poolSize.ok) return failure(`${IPAM_ENV.poolSize}: ${poolSize.error}`);

  const vniRange = text.vniRange === undefined ? success(DEFAULT_VNI_RANGE) : parseVniRange(text.vniRange);
  if (!vniRange.ok) return failure(`${IPAM_ENV.vniRange}: ${vniRange.error}`);

  return success({ hostId, poolRange: poolRange.value.toString(), poolSize: poolSize.value, vniRange: vniRange.value });
}

function parsePoolRange(text: string): Result<Subnet> {
  return Subnet.parse(text.trim(), { min: 1, max: POOL_PREFIX.max });
}

/** "24" or "/24"; the blocks must fit in the range. */
function parsePoolSize(text: string, range: Subnet): Result<number> {
  const match = /^\/?(\d{1,2})$/.exec(text.trim());
  const size = Number(match?.[1]);
  if (match === null || size < POOL_PREFIX.min || size > POOL_PREFIX.max) {
    return failure(`invalid pool size "${text}": expected a prefix length between ${POOL_PREFIX.min} and ${POOL_PREFIX.max}`);
  }
  if (size < range.prefix) return failure(`pool size /${size} is larger than the pool range ${range.toString()}`);
  return success(size);
}

/** "min-max", e.g. "4096-16777215". */
export function parseVniRange(text: string): Result<VniRange> {
  const match = /^(\d+)\s*-\s*(\d+)$/.exec(text.trim());
  if (match === null) return failure(`invalid VNI range "${text}": expected min-max, e.g. 4096-16777215`);
  return validateVniRange({ min: Number(match[1]), max: Number(match[2]) });
}
