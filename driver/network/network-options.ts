import { VNI_LIMITS } from "../ipam/vnis.js";
import { failure, success, type Result } from "../result.js";

/** The `-o` options a tsoverlay network understands. */
export interface NetworkOptions {
  /** Explicit VNI; otherwise one is allocated from the cluster range. */
  vni?: number;
  /** MTU for the overlay; otherwise the underlay MTU − 50 (VXLAN overhead). */
  mtu?: number;
  /**
   * Send a PROXY protocol header to published ports' backends so they learn the
   * client's address (the userland proxy otherwise hides it).
   */
  proxyProtocol?: "v1" | "v2";
}

export const VXLAN_OVERHEAD = 50;
const KNOWN = ["vni", "mtu", "com.docker.network.driver.mtu", "proxy-protocol"] as const;

function parseIntOption(name: string, raw: string, min: number, max: number): Result<number> {
  if (!/^\d+$/.test(raw.trim())) return failure(`invalid option ${name}=${raw}: must be a number`);
  const n = Number(raw.trim());
  if (n < min || n > max) return failure(`invalid option ${name}=${raw}: must be between ${min} and ${max}`);
  return success(n);
}

/**
 * Parses `com.docker.network.generic`. Unknown keys are refused (a typo must
 * not silently give a different network), except Docker's own
 * `com.docker.network.*` keys, which may be added by newer daemons.
 */
export function parseNetworkOptions(generic: Record<string, string>): Result<NetworkOptions> {
  const out: NetworkOptions = {};
  for (const [k, v] of Object.entries(generic)) {
    if (k === "vni") {
      // Any valid VNI: the automatic range deliberately leaves the low ones for this.
      const r = parseIntOption(k, v, VNI_LIMITS.min, VNI_LIMITS.max);
      if (!r.ok) return r;
      out.vni = r.value;
    } else if (k === "mtu" || k === "com.docker.network.driver.mtu") {
      const r = parseIntOption(k, v, 576, 65535 - VXLAN_OVERHEAD);
      if (!r.ok) return r;
      if (out.mtu !== undefined && out.mtu !== r.value) return failure(`conflicting MTU options: ${out.mtu} and ${r.value}`);
      out.mtu = r.value;
    } else if (k === "proxy-protocol") {
      if (v !== "v1" && v !== "v2") return failure(`invalid option proxy-protocol=${v}: must be v1 or v2`);
      out.proxyProtocol = v;
    } else if (!k.startsWith("com.docker.network.")) {
      return failure(`unknown option ${k} (tsoverlay understands: ${KNOWN.join(", ")})`);
    }
  }
  return success(out);
}
