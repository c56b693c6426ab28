/**
 * Remote endpoints in a network's kernel tables. Each peer is three static
 * entries, one per table a frame meets on its way out (see the design note
 * in kernel-datapath.ts for why the third one exists):
 *   - a permanent neighbor entry on vxlan0 (ip → mac), answered locally by
 *     the device's ARP proxy;
 *   - an FDB entry of the device (mac → remote VTEP);
 *   - a static entry in br0's own table (mac → the vxlan0 port).
 * A sync makes each table hold exactly the desired peers: it adds what is
 * missing or different and removes everything else, hand-made entries,
 * flood lists and anything br0 learned included. The neighbor entries it
 * added or changed are then announced to the local containers
 * (peer-announce.ts); a sync that changed none sends nothing.
 *
 * Design note: a sync caused by a store change writes only the difference
 * from what the previous sync programmed (kept on the network's state),
 * reading nothing back; the periodic reconcile and a network's first sync
 * read all three tables and repair whatever else happened to them. At
 * 10,000 peers the three dumps and their parsing take most of a second,
 * which a single new peer should not cost every host.
 */
import type { RtNetlinkSocket } from "netlink";
import type { PeerEntry, PeerSyncOptions, PeerSyncReport, PeerTables } from "../../contracts/datapath.js";
import { normalizeIp } from "../../../lib/net.js";
import { mustGetLink } from "../links.js";
import {
  deleteBridgeFdb,
  deleteFdbEntry,
  deleteNeighbor,
  listBridgeFdb,
  listFdbEntries,
  listNeighbors,
  replaceBridgeFdbStatic,
  replaceFdbEntry,
  replaceNeighbor,
} from "../neighbors.js";
import { VXLAN_NAME, ZERO_MAC, canonicalMac, type DatapathContext, type NetworkState } from "./context.js";
import { announcePeers, type Announced } from "./peer-announce.js";

interface WantedPeers {
  /** ip → mac */
  neigh: Map<string, string>;
  /** mac → vtep */
  fdb: Map<string, string>;
}

/**
 * Makes the network's three tables hold exactly `desired`; validates everything before touching the kernel.
 * With `changesOnly`, and when the datapath knows what it last programmed, only the difference from
 * the last sync is written; otherwise the tables are read and repaired.
 */
export async function syncPeerTables(ctx: DatapathContext, st: NetworkState, desired: PeerEntry[], opts: PeerSyncOptions = {}): Promise<PeerSyncReport> {
  const want = indexPeers(desired);
  const nl = st.nl;
  const ifindex = (await mustGetLink(nl, VXLAN_NAME)).index;
  const announce: Announced[] = [];
  const last = opts.changesOnly === true ? st.programmed : undefined;
  // Unknown until this sync is through: after a failure the next one reads the kernel.
  st.programmed = undefined;
  let tables: Required<NonNullable<PeerSyncReport["tables"]>>;
  try {
    tables =
      last === undefined
        ? {
            fdb: await syncFdb(nl, ifindex, want),
            neighbor: await syncNeighbors(nl, ifindex, want, announce),
            bridge_fdb: await syncBridgeFdb(nl, ifindex, want),
          }
        : await writeDifference(nl, ifindex, last, want, announce);
  } finally {
    // After all three tables, so that what a container sends on the news finds its way;
    // in a finally, so that what a failed sync did program is announced too.
    await announcePeers(ctx, st, announce);
  }
  st.programmed = want;
  const added = tables.fdb.added + tables.neighbor.added + tables.bridge_fdb.added;
  const removed = tables.fdb.removed + tables.neighbor.removed + tables.bridge_fdb.removed;
  if (added > 0 || removed > 0) {
    ctx.log.info({ subnet: st.spec.subnet, peers: want.neigh.size, added, removed }, "peers synced");
  } else {
    ctx.log.debug({ subnet: st.spec.subnet, peers: want.neigh.size }, "peers in sync");
  }
  return { added, removed, tables };
}

/** The three tables as they are (for a check that changes nothing). */
export async function readPeerTables(st: NetworkState): Promise<PeerTables> {
  const ifindex = (await mustGetLink(st.nl, VXLAN_NAME)).index;
  const [neighbors, fdb, bridge] = [await listNeighbors(st.nl, ifindex), await listFdbEntries(st.nl, ifindex), await listBridgeFdb(st.nl, ifindex)];
  return {
    neighbors: neighbors.map((n) => ({ ip: n.ip, mac: n.mac ?? "incomplete" })),
    fdb: fdb.map((e) => ({ mac: e.mac, dst: e.dst })),
    bridge: bridge.flatMap((e) => (e.kind === "local" ? [] : [{ mac: e.mac, kind: e.kind }])),
  };
}

function indexPeers(desired: PeerEntry[]): WantedPeers {
  const neigh = new Map<string, string>();
  const fdb = new Map<string, string>();
  for (const p of desired) {
    const ip = normalizeIp(p.ip);
    const mac = canonicalMac(p.mac);
    const vtep = normalizeIp(p.vtep);
    if (mac === ZERO_MAC) throw new TypeError(`peer ${ip}: the all-zeros MAC is not a peer`);
    const m = neigh.get(ip);
    if (m !== undefined && m !== mac) throw new TypeError(`peer ${ip} listed with two MACs (${m}, ${mac})`);
    const v = fdb.get(mac);
    if (v !== undefined && v !== vtep) throw new TypeError(`peer MAC ${mac} listed behind two VTEPs (${v}, ${vtep})`);
    neigh.set(ip, mac);
    fdb.set(mac, vtep);
  }
  return { neigh, fdb };
}

/**
 * The three tables moved from `last` (what the previous sync left) to `want`, reading nothing back:
 * the same writes a full sync would make if the kernel still held `last`, in the same order
 * (FDB, neighbors, bridge; additions before removals).
 */
async function writeDifference(
  nl: RtNetlinkSocket,
  ifindex: number,
  last: NonNullable<NetworkState["programmed"]>,
  want: WantedPeers,
  changed: Announced[],
): Promise<Required<NonNullable<PeerSyncReport["tables"]>>> {
  const fdb = { added: 0, removed: 0 };
  const neighbor = { added: 0, removed: 0 };
  const bridge = { added: 0, removed: 0 };
  for (const [mac, dst] of want.fdb) {
    if (last.fdb.get(mac) === dst) continue;
    await replaceFdbEntry(nl, { ifindex, mac, dst });
    fdb.added++;
  }
  for (const [ip, mac] of want.neigh) {
    if (last.neigh.get(ip) === mac) continue;
    await replaceNeighbor(nl, { ifindex, ip, mac });
    changed.push({ ip, mac });
    neighbor.added++;
  }
  for (const mac of want.fdb.keys()) {
    if (last.fdb.has(mac)) continue;
    await replaceBridgeFdbStatic(nl, ifindex, mac);
    bridge.added++;
  }
  for (const [mac, dst] of last.fdb) {
    if (want.fdb.has(mac)) continue;
    await deleteFdbEntry(nl, { ifindex, mac, dst });
    fdb.removed++;
    await deleteBridgeFdb(nl, ifindex, mac);
    bridge.removed++;
  }
  for (const ip of last.neigh.keys()) {
    if (want.neigh.has(ip)) continue;
    await deleteNeighbor(nl, { ifindex, ip });
    neighbor.removed++;
  }
  return { fdb, neighbor, bridge_fdb: bridge };
}

/** vxlan0's FDB: mac → vtep (a MAC may carry several destinations after `append`). */
async function syncFdb(nl: RtNetlinkSocket, ifindex: number, want: WantedPeers): Promise<PeerSyncReport> {
  let added = 0;
  let removed = 0;
  const have = await listFdbEntries(nl, ifindex);
  // Keyed sets, not a scan of `have` per peer: at 10,000 peers that scan was most of a sync's time.
  const held = new Set(have.flatMap((e) => (e.permanent ? [`${e.mac} ${e.dst}`] : [])));
  for (const [mac, dst] of want.fdb) {
    if (held.has(`${mac} ${dst}`)) continue;
    await replaceFdbEntry(nl, { ifindex, mac, dst });
    added++;
  }
  // Read again after a change: a replace moved a MAC's entry to its new VTEP in place, which is no removal.
  for (const e of added === 0 ? have : await listFdbEntries(nl, ifindex)) {
    if (want.fdb.get(e.mac) === e.dst) continue;
    await deleteFdbEntry(nl, { ifindex, mac: e.mac, dst: e.dst });
    removed++;
  }
  return { added, removed };
}

/** Neighbors on vxlan0: ip → mac (answered by the device's ARP proxy); those added or changed are pushed onto `changed`. */
async function syncNeighbors(nl: RtNetlinkSocket, ifindex: number, want: WantedPeers, changed: Announced[]): Promise<PeerSyncReport> {
  let added = 0;
  let removed = 0;
  const have = await listNeighbors(nl, ifindex);
  const haveByIp = new Map(have.map((n) => [n.ip, n.mac]));
  for (const [ip, mac] of want.neigh) {
    if (haveByIp.get(ip) === mac) continue;
    await replaceNeighbor(nl, { ifindex, ip, mac });
    changed.push({ ip, mac });
    added++;
  }
  for (const n of have) {
    if (want.neigh.has(n.ip)) continue;
    await deleteNeighbor(nl, { ifindex, ip: n.ip });
    removed++;
  }
  return { added, removed };
}

/** br0's table on the vxlan0 port: exactly the remote MACs, static (nothing learned survives). */
async function syncBridgeFdb(nl: RtNetlinkSocket, ifindex: number, want: WantedPeers): Promise<PeerSyncReport> {
  let added = 0;
  let removed = 0;
  const have = await listBridgeFdb(nl, ifindex);
  const held = new Set(have.flatMap((e) => (e.kind === "static" ? [e.mac] : [])));
  for (const mac of want.fdb.keys()) {
    if (held.has(mac)) continue;
    await replaceBridgeFdbStatic(nl, ifindex, mac);
    added++;
  }
  for (const e of have) {
    if (e.kind === "local" || (e.kind === "static" && want.fdb.has(e.mac))) continue;
    await deleteBridgeFdb(nl, ifindex, e.mac);
    removed++;
  }
  return { added, removed };
}
