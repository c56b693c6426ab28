import type { ClusterSnapshot, EndpointView } from "../driver/cluster/cluster-view.js";
import type { RecordPort } from "../driver/cluster/records.js";
import { table } from "./table.js";
import { parseIpv4 } from "../lib/net.js";

/**
 * `ps`, `networks`, `hosts`, `ports`: each turns one cluster snapshot (GET
 * /tsoverlay/cluster) into rows. The JSON output is the same rows as objects,
 * so a script reads what a person sees.
 */

export interface Output {
  json: unknown;
  text: string;
  /** Problems the command found (peers, doctor, probe): any makes the exit status 1. */
  problems?: number;
  /** What `-q` prints, one per line: the rows' names (ps, networks, hosts). */
  quiet?: string[];
}

/** Docker's notation: `0.0.0.0:8080->80/tcp`, with what carries it ("" = every address, which Docker shows as 0.0.0.0). */
export function portText(p: RecordPort): string {
  return `${hostAddress(p.hostIp)}:${p.hostPort}->${p.containerPort}/${p.proto} (${p.via})`;
}

function hostAddress(ip: string): string {
  if (ip === "") return "0.0.0.0";
  return ip.includes(":") ? `[${ip}]` : ip;
}

/** Endpoints of a network given by name or subnet, or all; an unknown network is an error (Docker's words). */
export function endpointsOf(s: ClusterSnapshot, network: string | undefined): EndpointView[] {
  const all = [...s.endpoints].sort((a, b) => a.network.localeCompare(b.network) || a.hostId.localeCompare(b.hostId) || ipOrder(a.ip, b.ip));
  if (network === undefined) return all;
  const net = s.networks.find((n) => n.names.includes(network) || n.subnet === network);
  if (net === undefined) throw new UsageError(`network ${network} not found`);
  return all.filter((e) => e.subnet === net.subnet);
}

/** A mistake of the caller (exit status 2). */
export class UsageError extends Error {}

export function ps(s: ClusterSnapshot, network: string | undefined): Output {
  const eps = endpointsOf(s, network);
  const rows = eps.map((e) => ({
    name: e.name ?? e.endpointId.slice(0, 12),
    network: e.network,
    host: e.hostId,
    alive: e.alive,
    address: e.ip,
    mac: e.mac,
    aliases: e.names.slice(1),
    ports: e.ports,
    endpointId: e.endpointId,
  }));
  return {
    json: rows,
    quiet: rows.map((r) => r.name),
    text: table(
      ["NAME", "NETWORK", "HOST", "ADDRESS", "MAC", "PORTS"],
      rows.map((r) => [r.name, r.network, r.alive ? r.host : `${r.host} (down)`, r.address, r.mac, r.ports.map(portText).join(", ")]),
    ),
  };
}

export function networks(s: ClusterSnapshot): Output {
  const rows = [...s.networks].sort((a, b) => (a.names[0] ?? a.subnet).localeCompare(b.names[0] ?? b.subnet)).map((n) => ({ name: n.names[0] ?? null, ...n }));
  return {
    json: rows,
    quiet: rows.map((n) => n.name ?? n.subnet),
    text: table(
      ["NAME", "SUBNET", "VNI", "GATEWAY", "HOSTS", "ENDPOINTS", "INTERNAL"],
      rows.map((n) => [n.name ?? "-", n.subnet, String(n.vni), n.gateway, n.hosts.join(","), String(n.endpoints), n.internal ? "yes" : "no"]),
    ),
  };
}

export function hosts(s: ClusterSnapshot): Output {
  const rows = s.hosts.map((h) => ({ ...h, self: h.hostId === s.self, lastSeen: h.alive ? s.at : h.goneSince }));
  return {
    json: rows,
    quiet: rows.map((h) => h.hostId),
    text: table(
      ["HOST", "VTEP", "ALIVE", "LAST SEEN", "PLUGIN", "DOCKER", "ENDPOINTS"],
      rows.map((h) => [
        h.self ? `${h.hostId} *` : h.hostId,
        h.vtep,
        h.alive ? "yes" : "no",
        h.alive ? "now" : (h.goneSince ?? "unknown"),
        h.pluginVersion ?? "-",
        h.dockerVersion ?? "-",
        String(h.endpoints),
      ]),
    ),
  };
}

export function ports(s: ClusterSnapshot, network: string | undefined): Output {
  const rows = endpointsOf(s, network).flatMap((e) =>
    e.ports.map((p) => ({
      host: e.hostId,
      hostIp: p.hostIp,
      hostPort: p.hostPort,
      container: e.name ?? e.endpointId.slice(0, 12),
      network: e.network,
      address: e.ip,
      containerPort: p.containerPort,
      proto: p.proto,
      via: p.via,
    })),
  );
  return {
    json: rows,
    text: table(
      ["HOST", "PUBLISHED", "CONTAINER", "NETWORK", "TARGET", "VIA"],
      rows.map((r) => [r.host, `${hostAddress(r.hostIp)}:${r.hostPort}/${r.proto}`, r.container, r.network, `${r.address}:${r.containerPort}`, r.via]),
    ),
  };
}

function ipOrder(a: string, b: string): number {
  const n = (ip: string): number => {
    const v = parseIpv4(ip);
    return v.ok ? v.value : 0;
  };
  return n(a) - n(b);
}
