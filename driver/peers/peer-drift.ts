import type { PeerEntry, PeerTables } from "../contracts/datapath.js";

/**
 * What a network's kernel tables get wrong against the peers desired, table
 * by table, in words an operator can act on (`tsoverlay peers`). Each peer
 * is three entries (see the adapter's peer-tables.ts): a neighbor (ip → mac),
 * an FDB entry (mac → VTEP), a static bridge entry (mac). "stale" is an
 * entry for a desired key with the wrong value, or learned where it must be
 * static; "extra" is an entry for nothing desired.
 */
export interface PeerDrift {
  missing: string[];
  stale: string[];
  extra: string[];
}

export function driftOf(desired: readonly PeerEntry[], have: PeerTables): PeerDrift {
  const drift: PeerDrift = { missing: [], stale: [], extra: [] };
  const wantNeigh = new Map(desired.map((p) => [p.ip, p.mac.toLowerCase()]));
  const wantFdb = new Map(desired.map((p) => [p.mac.toLowerCase(), p.vtep]));

  const neigh = new Map(have.neighbors.map((n) => [n.ip, n.mac.toLowerCase()]));
  for (const [ip, mac] of wantNeigh) {
    const got = neigh.get(ip);
    if (got === undefined) drift.missing.push(`neighbor ${ip} → ${mac}`);
    else if (got !== mac) drift.stale.push(`neighbor ${ip} → ${got} (should be ${mac})`);
  }
  for (const [ip, mac] of neigh) if (!wantNeigh.has(ip)) drift.extra.push(`neighbor ${ip} → ${mac}`);

  const fdb = new Map<string, string[]>();
  for (const e of have.fdb) fdb.set(e.mac.toLowerCase(), [...(fdb.get(e.mac.toLowerCase()) ?? []), e.dst]);
  for (const [mac, vtep] of wantFdb) {
    const got = fdb.get(mac);
    if (got === undefined) drift.missing.push(`fdb ${mac} → ${vtep}`);
    else if (!got.includes(vtep)) drift.stale.push(`fdb ${mac} → ${got.join(",")} (should be ${vtep})`);
    for (const dst of got ?? []) if (dst !== vtep) drift.extra.push(`fdb ${mac} → ${dst}`);
  }
  for (const [mac, dsts] of fdb) if (!wantFdb.has(mac)) for (const dst of dsts) drift.extra.push(`fdb ${mac} → ${dst}`);

  const bridge = new Map(have.bridge.map((b) => [b.mac.toLowerCase(), b.kind]));
  for (const mac of wantFdb.keys()) {
    const kind = bridge.get(mac);
    if (kind === undefined) drift.missing.push(`bridge ${mac}`);
    else if (kind !== "static") drift.stale.push(`bridge ${mac} (${kind}, should be static)`);
  }
  for (const [mac, kind] of bridge) if (!wantFdb.has(mac)) drift.extra.push(`bridge ${mac} (${kind})`);
  return drift;
}
