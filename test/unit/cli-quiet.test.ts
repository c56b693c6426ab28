/**
 * What `tsoverlay ps|networks|hosts -q` print (one name per row, in the
 * table's order), and the version the CLI and the plugin report.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { hosts, networks, ps } from "../../cli/cluster-commands.js";
import type { ClusterSnapshot } from "../../driver/cluster/cluster-view.js";
import { VERSION } from "../../lib/version.js";

const host = (hostId: string, alive: boolean) => ({
  hostId,
  vtep: hostId,
  hostname: "h",
  alive,
  startedAt: null,
  goneSince: alive ? null : "2025-01-01T00:00:00Z",
  pluginVersion: "0.1.0",
  dockerVersion: "29.0.0",
  endpoints: 1,
});
const endpoint = (network: string, subnet: string, hostId: string, ip: string, name: string | null) => ({
  network,
  subnet,
  endpointId: `${ip.replace(/\./g, "")}`.padEnd(64, "e"),
  hostId,
  vtep: hostId,
  alive: true,
  ip,
  mac: "02:42:0a:01:00:02",
  name,
  names: name === null ? [] : [name],
  ports: [],
});

const snapshot: ClusterSnapshot = {
  self: "198.18.0.11",
  at: "2025-01-01T00:00:00Z",
  hosts: [host("198.18.0.11", true), host("198.18.0.12", false)],
  networks: [
    { names: ["web"], subnet: "10.1.0.0/24", vni: 5000, gateway: "10.1.0.1/24", internal: false, mtu: null, hosts: ["198.18.0.11"], endpoints: 2 },
    { names: [], subnet: "10.2.0.0/24", vni: 5001, gateway: "10.2.0.1/24", internal: false, mtu: null, hosts: [], endpoints: 0 },
  ],
  endpoints: [endpoint("web", "10.1.0.0/24", "198.18.0.12", "10.1.0.3", "api"), endpoint("web", "10.1.0.0/24", "198.18.0.11", "10.1.0.2", null)],
};

describe("tsoverlay -q", () => {
  it("ps: the containers' names in the table's order, an unnamed endpoint by its short id", () => {
    const out = ps(snapshot, undefined);
    expect(out.quiet).toEqual(["10102eeeeeee", "api"]);
    expect(out.quiet).toEqual((out.json as { name: string }[]).map((r) => r.name));
  });

  it("networks: their names, a network no host has named by its subnet; hosts: their ids, gone ones too", () => {
    expect(networks(snapshot).quiet).toEqual(["10.2.0.0/24", "web"]);
    expect(hosts(snapshot).quiet).toEqual(["198.18.0.11", "198.18.0.12"]);
  });
});

describe("the version", () => {
  it("is package.json's, a semantic version", () => {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    expect(VERSION).toBe(pkg.version);
    expect(VERSION).toMatch(/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/);
  });
});
