/** `tsoverlay status`: the one screen built from the plugin's status, cluster and doctor views. */
import { describe, expect, it } from "vitest";
import type { Finding } from "../../driver/api.js";
import type { ClusterSnapshot, EndpointView, HostView } from "../../driver/cluster/cluster-view.js";
import { notReady, status, type PluginStatus } from "../../cli/status-command.js";

const host = (hostId: string, alive: boolean, hostname = "node"): HostView => ({
  hostId,
  vtep: hostId,
  hostname,
  alive,
  startedAt: null,
  goneSince: alive ? null : "2026-12-05T10:00:00Z",
  pluginVersion: "0.2.0",
  dockerVersion: "29.8.1",
  endpoints: 1,
});
const endpoint = (hostId: string, ip: string): EndpointView => ({
  network: "web",
  subnet: "10.1.0.0/24",
  endpointId: ip.replace(/\./g, "").padEnd(64, "e"),
  hostId,
  vtep: hostId,
  alive: true,
  ip,
  mac: "02:42:0a:01:00:02",
  name: null,
  names: [],
  ports: [],
});
const cluster: ClusterSnapshot = {
  self: "198.18.0.11",
  at: "2026-12-05T10:00:00Z",
  hosts: [host("198.18.0.11", true, "h1"), host("198.18.0.12", true), host("198.18.0.13", false)],
  networks: [
    {
      names: ["web"],
      subnet: "10.1.0.0/24",
      vni: 5000,
      gateway: "10.1.0.1/24",
      internal: false,
      mtu: null,
      hosts: ["198.18.0.11", "198.18.0.12"],
      endpoints: 3,
    },
    { names: ["db"], subnet: "10.2.0.0/24", vni: 5001, gateway: "10.2.0.1/24", internal: false, mtu: null, hosts: ["198.18.0.12"], endpoints: 0 },
  ],
  endpoints: [endpoint("198.18.0.11", "10.1.0.2"), endpoint("198.18.0.12", "10.1.0.3"), endpoint("198.18.0.12", "10.1.0.4")],
};
const healthy: PluginStatus = {
  ready: true,
  version: "0.2.0",
  hostId: "198.18.0.11",
  store: { backend: "consul", available: true },
  pendingTeardown: { pending: 0 },
  names: { serving: true, address: "198.19.0.1:53" },
};
const ok = <T>(value: T) => ({ ok: true as const, value });
const allOk: Finding[] = [{ check: "ip_forward", status: "ok", detail: "on" }];

describe("tsoverlay status", () => {
  it("shows this host, the store, hosts alive and gone, networks and endpoints here and in all, teardown, names: exit 0 when doctor finds nothing", () => {
    const out = status(healthy, ok(cluster), ok(allOk));
    expect(out.problems).toBe(0);
    expect(out.text.split("\n")).toEqual([
      "host:         198.18.0.11 (h1), Docker 29.8.1",
      "plugin:       0.2.0, ready",
      "store:        consul, available",
      "hosts:        2 alive, 1 gone (198.18.0.13)",
      "networks:     2 in the cluster, 1 on this host",
      "endpoints:    3 in the cluster, 1 on this host",
      "teardown:     nothing pending",
      "names:        serving on 198.19.0.1:53",
      "doctor:       no problem",
      "",
    ]);
    expect(out.json).toMatchObject({ cluster: { known: true, hostsAlive: 2, hostsGone: ["198.18.0.13"], endpointsHere: 1 }, doctor: { findings: [] } });
  });

  it("with the store away: says so with the condition, shows the queued teardown, and the cluster as unknown with the reason (exit 1)", () => {
    const away: PluginStatus = {
      ...healthy,
      store: { backend: "consul", available: false, condition: "Consul at https://127.0.0.1:8501 has no leader", since: "2026-12-05T10:01:00Z" },
      pendingTeardown: { pending: 2 },
    };
    const out = status(away, { ok: false, error: "the plugin answered HTTP 503: cluster: no leader" }, ok(allOk));
    expect(out.problems).toBe(1);
    expect(out.text).toContain("store:        consul, UNAVAILABLE since 2026-12-05T10:01:00Z: Consul at https://127.0.0.1:8501 has no leader\n");
    expect(out.text).toContain("cluster:      unknown: the plugin answered HTTP 503: cluster: no leader\n");
    expect(out.text).toContain("teardown:     2 pending (queued until the store takes it)\n");
    expect(out.text).toContain("host:         198.18.0.11, Docker ?\n");
  });

  it("lists doctor's problems and warnings under it, counts only problems for the exit status, and strips escape sequences a store writer chose", () => {
    const findings: Finding[] = [
      ...allOk,
      { check: "mtu", status: "problem", detail: "underlay 1400 < overlay 1450", fix: "lower the MTU" },
      { check: "docker dns", status: "warn", detail: "daemon.json lists no dns" },
    ];
    const hostile = { ...cluster, hosts: [host("198.18.0.11", true, "h1\u001b]0;owned\u0007\u001b[2J"), ...cluster.hosts.slice(1)] };
    const out = status(healthy, ok(hostile), ok(findings));
    expect(out.problems).toBe(1);
    expect(out.text).toContain(
      "doctor:       1 problem(s), 1 warning(s) — 'tsoverlay doctor' has their fixes\n  PROBLEM mtu: underlay 1400 < overlay 1450\n  WARN    docker dns: daemon.json lists no dns\n",
    );
    expect(out.text).toContain("host:         198.18.0.11 (h1), Docker 29.8.1\n");
    expect(out.text).not.toContain("\u001b");
  });

  it("a doctor that could not run is a problem; a plugin not ready is one screen line with its reason", () => {
    expect(status(healthy, ok(cluster), { ok: false, error: "timed out" }).text).toContain("doctor:       could not run: timed out\n");
    expect(status(healthy, ok(cluster), { ok: false, error: "timed out" }).problems).toBe(1);
    const nr = notReady({ ready: false, version: "0.2.0", reason: "starting: restoring 3 endpoints" });
    expect(nr).toMatchObject({ problems: 1, text: "plugin:       0.2.0, not ready: starting: restoring 3 endpoints\n" });
  });
});
