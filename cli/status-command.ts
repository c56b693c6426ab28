import type { Finding } from "../driver/api.js";
import type { ClusterSnapshot } from "../driver/cluster/cluster-view.js";
import type { Output } from "./cluster-commands.js";
import { printLines } from "./printable.js";

/**
 * `tsoverlay status`: one screen on this host and the cluster as it sees it,
 * from three views the plugin already serves (status, cluster, doctor). The
 * status view is read loosely: only the fields shown here, each optional, so
 * a plugin one version older or newer still gets a screen.
 */

export interface PluginStatus {
  ready?: boolean;
  version?: string;
  reason?: string;
  hostId?: string;
  store?: { backend?: string; available?: boolean; condition?: string; since?: string };
  pendingTeardown?: { pending?: number };
  names?: { serving?: boolean; address?: string; reason?: string };
}

/** The plugin is up but not serving yet: no cluster to show, one problem. */
export function notReady(s: PluginStatus): Output & { problems: number } {
  const text = printLines([`${"plugin:".padEnd(14)}${s.version ?? "?"}, not ready: ${s.reason ?? "no reason given"}`]);
  return { json: { plugin: { version: s.version ?? null, ready: false, reason: s.reason ?? null } }, text, problems: 1 };
}

/** A view the screen is built from, or why the plugin could not give it (the store away, for the cluster view). */
export type Got<T> = { ok: true; value: T } | { ok: false; error: string };

export function status(s: PluginStatus, cluster: Got<ClusterSnapshot>, doctor: Got<Finding[]>): Output & { problems: number } {
  const c = cluster.ok ? cluster.value : undefined;
  const selfId = c?.self ?? s.hostId ?? "?";
  const self = c?.hosts.find((h) => h.hostId === selfId);
  const hostname = self?.hostname ?? undefined;
  const gone = c?.hosts.filter((h) => !h.alive) ?? [];
  const findings = doctor.ok ? doctor.value : [];
  const notOk = findings.filter((f) => f.status === "problem" || f.status === "warn");
  const problems = findings.filter((f) => f.status === "problem").length;
  const store = s.store ?? {};
  const storeDown = store.available === false;
  const pending = s.pendingTeardown?.pending ?? 0;
  const json = {
    host: { id: selfId, hostname: hostname ?? null, docker: self?.dockerVersion ?? null },
    plugin: { version: s.version ?? null, ready: s.ready === true },
    store: { backend: store.backend ?? null, available: !storeDown, condition: store.condition ?? null, since: store.since ?? null },
    cluster:
      c === undefined
        ? { known: false, error: cluster.ok ? null : cluster.error }
        : {
            known: true,
            hostsAlive: c.hosts.length - gone.length,
            hostsGone: gone.map((h) => h.hostId),
            networks: c.networks.length,
            networksHere: c.networks.filter((n) => n.hosts.includes(selfId)).length,
            endpoints: c.endpoints.length,
            endpointsHere: c.endpoints.filter((e) => e.hostId === selfId).length,
          },
    pendingTeardown: pending,
    names: s.names?.serving === true ? { serving: true, address: s.names.address ?? null } : { serving: false, reason: s.names?.reason ?? null },
    doctor: doctor.ok ? { findings: notOk } : { error: doctor.error },
  };
  const line = (label: string, value: string) => `${`${label}:`.padEnd(14)}${value}`;
  const lines = [
    line("host", `${selfId}${hostname === undefined ? "" : ` (${hostname})`}, Docker ${self?.dockerVersion ?? "?"}`),
    line("plugin", `${s.version ?? "?"}, ready`),
    line(
      "store",
      storeDown
        ? `${store.backend ?? "store"}, UNAVAILABLE since ${store.since ?? "?"}: ${store.condition ?? "no reason given"}`
        : `${store.backend ?? "store"}, available`,
    ),
    ...(json.cluster.known
      ? [
          line("hosts", `${json.cluster.hostsAlive} alive${gone.length === 0 ? "" : `, ${gone.length} gone (${gone.map((h) => h.hostId).join(", ")})`}`),
          line("networks", `${json.cluster.networks} in the cluster, ${json.cluster.networksHere} on this host`),
          line("endpoints", `${json.cluster.endpoints} in the cluster, ${json.cluster.endpointsHere} on this host`),
        ]
      : [line("cluster", `unknown: ${json.cluster.error ?? "?"}`)]),
    line("teardown", pending === 0 ? "nothing pending" : `${pending} pending (queued until the store takes it)`),
    line("names", json.names.serving ? `serving on ${json.names.address ?? "?"}` : `not serving: ${json.names.reason ?? "?"}`),
    line(
      "doctor",
      !doctor.ok
        ? `could not run: ${doctor.error}`
        : notOk.length === 0
          ? "no problem"
          : `${problems} problem(s), ${notOk.length - problems} warning(s) — 'tsoverlay doctor' has their fixes`,
    ),
    ...notOk.map((f) => `  ${f.status === "problem" ? "PROBLEM" : "WARN   "} ${f.check}: ${f.detail}`),
  ];
  // Host ids, hostnames, conditions and details can quote the store: printed, they are made printable.
  return { json, text: printLines(lines), problems: problems + (storeDown ? 1 : 0) + (doctor.ok ? 0 : 1) };
}
