/**
 * What the datapath's modules share: the names and paths of a network's
 * pieces, its in-memory state, and the context every operation runs with.
 */
import fs from "node:fs";
import path from "node:path";
import type { RtNetlinkSocket } from "netlink";
import type { NetworkSpec } from "../../contracts/datapath.js";
import { normalizeMac, parseIfaceCidr4, type IfaceCidr } from "../../../lib/net.js";
import type { Logger } from "../../../lib/log.js";

export const BRIDGE_NAME = "br0";
export const VXLAN_NAME = "vxlan0";
export const DEFAULT_VXLAN_PORT = 4789;
/** Host-side temporary names of VXLAN devices on their way into a namespace. */
export const TEMP_VXLAN_PREFIX = "vx-";
export const ZERO_MAC = "00:00:00:00:00:00";

/** The VNIs of the namespace files under `<dir>/netns` (mounted or not). */
export function listPinnedVnis(dir: string): number[] {
  let names: string[];
  try {
    names = fs.readdirSync(path.join(dir, "netns"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  return names.flatMap((n) => (/^vni-\d+$/.test(n) ? [Number(n.slice(4))] : []));
}

/** The namespace path of a VNI under `runDir`. */
export function networkNetnsPath(runDir: string, vni: number): string {
  return path.join(runDir, "netns", `vni-${vni}`);
}

/** Host-side temporary name of a network's VXLAN device (≤ 9 chars). */
export function tempVxlanName(vni: number): string {
  return `${TEMP_VXLAN_PREFIX}${vni.toString(16)}`;
}

/** Settings and the host socket, the same for every network. */
export interface DatapathContext {
  runDir: string;
  /** Where each namespace is pinned a second time (networkNetnsPath under it), or none. */
  keepDir: string | undefined;
  /** This host's underlay IPv4 address (canonical form). */
  vtepAddr: string;
  vxlanPort: number;
  underlayIfindex: number | undefined;
  /** rtnetlink in the namespace that plays the host (opened on first use). */
  host(): RtNetlinkSocket;
  log: Logger;
}

export interface NetworkState {
  spec: NetworkSpec;
  nsPath: string;
  /** rtnetlink socket opened inside the network's namespace. */
  nl: RtNetlinkSocket;
  /** The last ensureNetwork completed (false while one runs, or after it failed). */
  ready: boolean;
  /**
   * The peers the tables were last made to hold (peer-tables.ts): what a
   * `changesOnly` sync diffs against instead of reading the kernel. Cleared
   * whenever that may no longer be true (the network is ensured again, a sync failed).
   */
  programmed?: { neigh: ReadonlyMap<string, string>; fdb: ReadonlyMap<string, string> };
}

/** "10.0.0.7/24" → { ip, prefix }, or a TypeError. */
export function ipv4Cidr(cidr: string): IfaceCidr {
  const parsed = parseIfaceCidr4(cidr);
  if (!parsed.ok) throw new TypeError(parsed.error);
  return parsed.value;
}

/** Lower-case colon form of a MAC, or a TypeError. */
export function canonicalMac(mac: string): string {
  const m = normalizeMac(mac);
  if (m === undefined) throw new TypeError(`invalid MAC address ${JSON.stringify(mac)}`);
  return m;
}
