/**
 * The records that say which host has what, as one collector pass reads
 * them: endpoints (under `by-host/`, and the previous layout's), network
 * memberships, address records and pool references.
 * Each family is listed once per pass and both halves of the pass (own
 * records, dead hosts) work from the same lists. Nothing here is locked: a
 * snapshot may be stale by the time it is used, which is why every write made
 * from it is conditional on the index it read, or idempotent.
 */
import type { ClusterIpam } from "../ipam/cluster-ipam.js";
import type { HeldAddress } from "../ipam/addresses.js";
import type { ClusterNetworks } from "../network/cluster-networks.js";
import type { KV, Store } from "../contracts/store.js";
import { keys, parseByHostKey, parsePreviousEndpointKey, previousKeys } from "./keys.js";
import { EndpointRecord, parseRecord } from "./records.js";

export interface EndpointKv {
  /** Whose it is: the host its key names (`by-host/<h>/…`), or for the previous layout the host its record names. */
  hostId: string | undefined;
  layout: "by-host" | "previous";
  subnet: string;
  endpointId: string;
  /** Undefined when the value is not a valid endpoint record. */
  rec: EndpointRecord | undefined;
  kv: KV;
}

export interface RecordSnapshot {
  /** Under `by-host/`, and the previous layout's. */
  endpoints: EndpointKv[];
  memberships: { subnet: string; hostId: string }[];
  addresses: HeldAddress[];
  refs: { subnet: string; hostId: string; at: string }[];
}

export async function readRecordSnapshot(store: Store, networks: ClusterNetworks, ipam: ClusterIpam): Promise<RecordSnapshot> {
  const [endpoints, memberships, addresses, refs] = await Promise.all([
    endpointKvs(store),
    networks.memberships(),
    ipam.addressRecords(),
    ipam.poolReferences(),
  ]);
  return { endpoints, memberships, addresses, refs };
}

async function endpointKvs(store: Store): Promise<EndpointKv[]> {
  const [byHost, previous] = await Promise.all([store.list(keys.byHost()), store.list(previousKeys.allEndpoints())]);
  const out: EndpointKv[] = [];
  for (const kv of byHost) {
    const k = parseByHostKey(kv.key);
    if (k?.kind === "endpoint")
      out.push({ hostId: k.hostId, layout: "by-host", subnet: k.subnet, endpointId: k.endpointId, rec: parseRecord(EndpointRecord, kv.value), kv });
  }
  for (const kv of previous) {
    const k = parsePreviousEndpointKey(kv.key);
    const rec = parseRecord(EndpointRecord, kv.value);
    if (k !== undefined) out.push({ hostId: rec?.hostId, layout: "previous", ...k, rec, kv });
  }
  return out;
}
