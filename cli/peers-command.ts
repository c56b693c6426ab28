import type { ClusterSnapshot } from "../driver/cluster/cluster-view.js";
import type { PeerReport } from "../driver/peers/peer-sync.js";
import { UsageError, type Output } from "./cluster-commands.js";
import { table } from "./table.js";
import { printLines } from "./printable.js";

/**
 * `tsoverlay peers [NETWORK]`: per host and network, the peer entries its
 * kernel should hold against what it holds (missing, stale, extra), as each
 * live host answered just now. `problems` drives the exit status.
 */
interface Row {
  host: string;
  network: string | null;
  subnet: string | null;
  peers: number;
  checked: boolean;
  missing: string[];
  stale: string[];
  extra: string[];
  error: string | null;
}

export function peers(report: PeerReport, snapshot: ClusterSnapshot, network: string | undefined): Output & { problems: number } {
  const nameOf = (subnet: string): string => snapshot.networks.find((n) => n.subnet === subnet)?.names[0] ?? subnet;
  let wanted: string | undefined;
  if (network !== undefined) {
    const net = snapshot.networks.find((n) => n.names.includes(network) || n.subnet === network);
    if (net === undefined) throw new UsageError(`network ${network} not found`);
    wanted = net.subnet;
  }
  const rows: Row[] = report.hosts.flatMap((h): Row[] =>
    h.networks === null
      ? [{ host: h.hostId, network: null, subnet: null, peers: 0, checked: false, missing: [], stale: [], extra: [], error: h.error }]
      : h.networks.filter((n) => wanted === undefined || n.subnet === wanted).map((n) => ({ host: h.hostId, network: nameOf(n.subnet), ...n, error: null })),
  );
  const problems = report.missing.length + rows.reduce((s, r) => s + r.missing.length + r.stale.length + r.extra.length + (r.error === null ? 0 : 1), 0);
  const lines = table(
    ["HOST", "NETWORK", "PEERS", "MISSING", "STALE", "EXTRA", "STATE"],
    rows.map((r) => [
      r.host,
      r.network ?? "-",
      String(r.peers),
      String(r.missing.length),
      String(r.stale.length),
      String(r.extra.length),
      r.error !== null ? `error: ${r.error}` : !r.checked ? "not synced yet" : r.missing.length + r.stale.length + r.extra.length === 0 ? "ok" : "DRIFT",
    ]),
  );
  const details = rows.flatMap((r) => [
    ...r.missing.map((e) => `${r.host} ${r.network}: missing ${e}`),
    ...r.stale.map((e) => `${r.host} ${r.network}: stale ${e}`),
    ...r.extra.map((e) => `${r.host} ${r.network}: extra ${e}`),
  ]);
  const silent = report.missing.map((h) => `${h}: no answer (the host is alive in the store, but its plugin did not answer in time)`);
  return {
    json: { hosts: rows, missing: report.missing },
    text: lines + printLines([...details, ...silent]),
    problems,
  };
}
