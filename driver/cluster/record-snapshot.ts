/**
 * The records that say which host has what, as one collector pass reads
 * them: endpoints, network memberships, address records and pool references.
 * Each family is listed once per pass and both halves of the pass (own
 * records, dead hosts) work from the same lists. Nothing here is locked: a
 * snapshot may be stale by the time it is used, which is why every write made
 * from it is conditional on the index it read, or idempotent.
 */
import type { ClusterIpam } from "../ipam/cluster-ipam.js";
import type { HeldAddress } from "../ipam/addresses.js";
import type { ClusterNetworks } from "../network/cluster-networks.js";
import type { KV, Store } from "../contracts/store.js";
import { keys, subnetFromKey } from "./keys.js";
import { EndpointRecord, parseRecord } from "./records.js";

export interface EndpointKv {
  subnet: string;
  endpointId: string;
  /** Undefined when the value is not a valid endpoint record. */
  rec: EndpointRecord | undefined;
  kv: KV;
}

export interface RecordSnapshot {
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
  const prefix = keys.allEndpoints();
  const out: EndpointKv[] = [];
  for (const kv of await store.list(prefix)) {
    const m = /^([^/]+)\/([^/]+)$/.exec(kv.key.slice(prefix.length));
    if (m) out.push({ subnet: subnetFromKey(m[1]!), endpointId: m[2]!, rec: parseRecord(EndpointRecord, kv.value), kv });
  }
  return out;
}
