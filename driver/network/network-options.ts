import { VNI_LIMITS } from "../ipam/vnis.js";
import { success } from "../../lib/result.js";
import { refuse, type Outcome } from "../errors.js";

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
  /** `--internal`: the network has no way out. */
  internal?: boolean;
  /** Prefix of the interface name inside containers (Docker's `eth`). */
  ifacePrefix?: string;
  /** `-o encrypted`: traffic between hosts goes through WireGuard (README "Encrypted networks"). */
  encrypted?: boolean;
}

export const VXLAN_OVERHEAD = 50;
/** WireGuard over an IPv4 underlay: IPv4 20 + UDP 8 + its header 16 + tag 16. */
export const WIREGUARD_OVERHEAD = 60;
const VXLANID_LIST = "com.docker.network.driver.overlay.vxlanid_list";
const IFACE_PREFIX = "com.docker.network.container_iface_prefix";
const KNOWN = ["vni", "mtu", "proxy-protocol", "encrypted", "com.docker.network.driver.mtu", VXLANID_LIST, IFACE_PREFIX] as const;
/** Short enough that prefix + a number fits a Linux interface name (15). */
const VALID_IFACE_PREFIX = /^[A-Za-z][A-Za-z0-9_-]{0,10}$/;

function parseIntOption(name: string, raw: string, min: number, max: number): Outcome<number> {
  if (!/^\d+$/.test(raw.trim())) return refuse("bad-request", `invalid option ${name}=${raw}: must be a number`);
  const n = Number(raw.trim());
  if (n < min || n > max) return refuse("bad-request", `invalid option ${name}=${raw}: must be between ${min} and ${max}`);
  return success(n);
}

/**
 * Parses `com.docker.network.generic`. Every key is either understood or
 * refused: a typo must not silently give a different network, and an option
 * that belongs to another driver must not look as if it worked.
 *   vni, com.docker.network.driver.overlay.vxlanid_list  the VNI (Docker's overlay spells it the second way)
 *   mtu, com.docker.network.driver.mtu                    the overlay MTU
 *   proxy-protocol                                        v1|v2 for published ports
 *   com.docker.network.container_iface_prefix             the container's interface prefix
 *   encrypted                                             WireGuard between hosts (Docker's overlay: `--opt encrypted`, any value;
 *                                                         here empty, true or 1, and false or 0 for a plain network)
 */
export function parseNetworkOptions(generic: Record<string, string>): Outcome<NetworkOptions> {
  const out: NetworkOptions = {};
  const setVni = (k: string, v: string): Outcome<void> => {
    // Any valid VNI: the automatic range deliberately leaves the low ones for this.
    const r = parseIntOption(k, v, VNI_LIMITS.min, VNI_LIMITS.max);
    if (!r.ok) return r;
    if (out.vni !== undefined && out.vni !== r.value) return refuse("bad-request", `conflicting VNI options: ${out.vni} and ${r.value}`);
    out.vni = r.value;
    return success(undefined);
  };
  for (const [k, v] of Object.entries(generic)) {
    if (k === "vni") {
      const r = setVni(k, v);
      if (!r.ok) return r;
    } else if (k === VXLANID_LIST) {
      const ids = v
        .split(",")
        .map((x) => x.trim())
        .filter((x) => x !== "");
      if (ids.length !== 1) return refuse("bad-request", `invalid option ${k}=${v}: a tsoverlay network has one subnet, so exactly one VXLAN ID`);
      const r = setVni(k, ids[0]!);
      if (!r.ok) return r;
    } else if (k === "mtu" || k === "com.docker.network.driver.mtu") {
      const r = parseIntOption(k, v, 576, 65535 - VXLAN_OVERHEAD);
      if (!r.ok) return r;
      if (out.mtu !== undefined && out.mtu !== r.value) return refuse("bad-request", `conflicting MTU options: ${out.mtu} and ${r.value}`);
      out.mtu = r.value;
    } else if (k === "proxy-protocol") {
      if (v !== "v1" && v !== "v2") return refuse("bad-request", `invalid option proxy-protocol=${v}: must be v1 or v2`);
      out.proxyProtocol = v;
    } else if (k === "encrypted") {
      const v2 = v.trim().toLowerCase();
      if (v2 === "" || v2 === "true" || v2 === "1") out.encrypted = true;
      else if (v2 !== "false" && v2 !== "0") return refuse("bad-request", `invalid option encrypted=${v}: give it no value (-o encrypted), true or false`);
    } else if (k === IFACE_PREFIX) {
      if (!VALID_IFACE_PREFIX.test(v)) return refuse("bad-request", `invalid option ${k}=${v}: use a letter, then up to 10 letters, digits, '_' or '-'`);
      out.ifacePrefix = v;
    } else if (k.startsWith("com.docker.network.bridge.")) {
      return refuse("bad-request", `option ${k} belongs to Docker's bridge driver; tsoverlay does not support it (tsoverlay understands: ${KNOWN.join(", ")})`);
    } else if (k.startsWith("com.docker.network.")) {
      return refuse("bad-request", `option ${k} is not supported by tsoverlay (tsoverlay understands: ${KNOWN.join(", ")})`);
    } else {
      return refuse("bad-request", `unknown option ${k} (tsoverlay understands: ${KNOWN.join(", ")})`);
    }
  }
  return success(out);
}
