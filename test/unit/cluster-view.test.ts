import { afterEach, describe, expect, it, vi } from "vitest";
import { loadConfig } from "../../plugin/compose/config.js";
import { hosts, networks, portText, ports, ps, UsageError } from "../../cli/cluster-commands.js";
import { table } from "../../cli/table.js";
import { peers } from "../../cli/peers-command.js";
import type { ClusterSnapshot } from "../../driver/cluster/cluster-view.js";
import { keys } from "../../driver/cluster/keys.js";
import { peerReportOf } from "../../driver/peers/peer-sync.js";
import { scrape } from "../../lib/metrics.js";
import { FlakyStore } from "../support/flaky-store.js";
import { MemoryStore } from "../support/memory-store.js";
import { simHost, stopSimHost, stopSimHosts, type SimHost } from "../support/sim-host.js";
import { value } from "../support/store-helpers.js";
import { createNetworkOn } from "../support/docker-calls.js";
import { eventually } from "../support/eventually.js";

afterEach(stopSimHosts);

const SUBNET = "10.31.0.0/24";

function network(h: SimHost, networkId: string): Promise<string> {
  return createNetworkOn(h.d, networkId, SUBNET);
}

async function endpoint(h: SimHost, networkId: string, poolId: string, endpointId: string): Promise<string> {
  const ip = value(await h.d.ipam.requestAddress({ poolId, address: "" }));
  value(await h.d.driver.createEndpoint({ networkId, endpointId, addressCidr: ip.address, mac: "" }));
  return ip.address.split("/")[0]!;
}

describe("the cluster view (GET /tsoverlay/cluster) over a shared store", () => {
  it("shows every host's endpoints with their published ports, the networks and the hosts, from any host; a dead host's endpoints are marked", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const [a, b] = [await simHost(cluster, "198.18.0.11"), await simHost(cluster, "198.18.0.12")];
    const [pa, pb] = [await network(a, "net-a"), await network(b, "net-b")];
    const ipA = await endpoint(a, "net-a", pa, "ep-a");
    const ipB = await endpoint(b, "net-b", pb, "ep-b");
    await a.d.driver.setNames("ep-a", ["web", "www"]);
    const published = value(
      await a.d.driver.programExternalConnectivity("net-a", "ep-a", [{ proto: "tcp", hostIp: "127.0.0.1", hostPort: 0, hostPortEnd: 0, containerPort: 80 }]),
    );
    const hostPort = published[0]!.hostPort;

    // Recorded beside the call: seen from the other host once it lands.
    const seen = await eventually("ep-a's port in b's view", async () => {
      const s = await b.d.view.read();
      return s.endpoints.find((e) => e.endpointId === "ep-a")?.ports.length === 1 ? s : undefined;
    });
    expect(seen.self).toBe("198.18.0.12");
    expect(seen.endpoints.map((e) => [e.hostId, e.ip, e.name, e.alive]).sort()).toEqual([
      ["198.18.0.11", ipA, "web", true],
      ["198.18.0.12", ipB, null, true],
    ]);
    expect(seen.endpoints.find((e) => e.endpointId === "ep-a")!.ports).toEqual([
      { proto: "tcp", hostIp: "127.0.0.1", hostPort, containerPort: 80, via: "proxy" },
    ]);
    expect(seen.networks).toEqual([
      expect.objectContaining({ subnet: SUBNET, names: [], hosts: ["198.18.0.11", "198.18.0.12"], endpoints: 2, internal: false }),
    ]);
    expect(seen.hosts.map((h) => [h.hostId, h.alive, h.endpoints])).toEqual([
      ["198.18.0.11", true, 1],
      ["198.18.0.12", true, 1],
    ]);

    // The CLI's rows from that snapshot.
    const rows = ps(seen, undefined).json as { name: string; host: string; aliases: string[] }[];
    expect(rows.map((r) => r.name)).toEqual(["web", "ep-b"]);
    expect(rows[0]!.aliases).toEqual(["www"]);
    expect(ps(seen, undefined).text).toContain(`127.0.0.1:${hostPort}->80/tcp (proxy)`);
    expect(ps(seen, SUBNET).text.split("\n")).toHaveLength(4);
    expect(() => ps(seen, "nope")).toThrow(UsageError);
    expect(ports(seen, undefined).json).toEqual([
      expect.objectContaining({ host: "198.18.0.11", hostPort, container: "web", containerPort: 80, via: "proxy" }),
    ]);
    expect(networks(seen).text).toMatch(/^NAME\s+SUBNET\s+VNI/);

    // Revoked (a disconnect moves the ports elsewhere): the record no longer claims them.
    value(await a.d.driver.revokeExternalConnectivity("net-a", "ep-a"));
    await eventually("ep-a's ports to leave b's view", async () => {
      const s = await b.d.view.read();
      return s.endpoints.find((e) => e.endpointId === "ep-a")?.ports.length === 0 ? s : undefined;
    });
    expect(ports(await b.d.view.read(), undefined).json).toEqual([]);

    // Host a goes away (its liveness key lapses): its endpoint stays listed, marked down.
    await stopSimHost(a);
    await cluster.delete(keys.alive("198.18.0.11"));
    const later = await b.d.view.read();
    expect(later.endpoints.find((e) => e.endpointId === "ep-a")!.alive).toBe(false);
    expect(later.hosts.find((h) => h.hostId === "198.18.0.11")).toMatchObject({ alive: false, endpoints: 1 });
    expect(ps(later, undefined).text).toContain("198.18.0.11 (down)");
    expect(hosts(later).text).toMatch(/198\.18\.0\.12 \*/);
  });

  it("peers: every live host answers with its kernel tables against what it should program; a deleted entry shows as missing", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const [a, b] = [await simHost(cluster, "198.18.0.31"), await simHost(cluster, "198.18.0.32")];
    const [pa, pb] = [await network(a, "net-a"), await network(b, "net-b")];
    await endpoint(a, "net-a", pa, "ep-a");
    const ipB = await endpoint(b, "net-b", pb, "ep-b");
    await eventually("a to program b's endpoint", () => a.datapath.peers(SUBNET).length === 1);
    const clean = await a.d.peerReport();
    expect(clean.missing).toEqual([]);
    expect(clean.hosts.map((h) => [h.hostId, h.networks?.map((n) => [n.subnet, n.peers, n.checked, n.missing, n.stale, n.extra])])).toEqual([
      ["198.18.0.31", [[SUBNET, 1, true, [], [], []]]],
      ["198.18.0.32", [[SUBNET, 1, true, [], [], []]]],
    ]);
    const snap = await a.d.view.read();
    expect(peers(clean, snap, undefined).problems).toBe(0);

    a.kernel.networks.get(SUBNET)!.neighbors.delete(ipB);
    const drifted = await b.d.peerReport();
    const out = peers(drifted, snap, SUBNET);
    expect(out.problems).toBe(1);
    expect(out.text).toContain(`198.18.0.31 ${SUBNET}: missing neighbor ${ipB} → `);
    expect(await cluster.list(keys.asks())).toEqual([]);
    await eventually("every answer to be deleted", async () => !(await cluster.list(keys.byHost())).some((kv) => kv.key.includes("/answers/")));

    // A host whose plugin is gone but whose key lingers is named as not answering: peerReport() itself
    // waits 5 s for it; a shorter wait shows the same, as b cannot answer any more.
    await stopSimHost(b);
    const partial = peerReportOf(await a.d.asks.ask("peers", 1_000));
    expect(partial.missing).toEqual(["198.18.0.32"]);
  }, 15_000);

  it("names recorded while the store is away fail at once (no lock held through the outage), and the collector writes them when it is back", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const a = await simHost(cluster, "198.18.0.41");
    const p = await network(a, "net-n");
    await endpoint(a, "net-n", p, "ep-n");
    cluster.down();
    const t0 = Date.now();
    await expect(a.d.driver.setNames("ep-n", ["api"])).rejects.toThrow();
    expect(Date.now() - t0).toBeLessThan(200);
    await cluster.up();
    const record = async () => JSON.parse((await cluster.get(keys.hostEndpoint("198.18.0.41", SUBNET, "ep-n")))!.value) as { names?: string[] };
    expect((await record()).names).toBeUndefined();
    expect(await a.d.collector.pass()).toMatchObject({ restored: 1 });
    expect((await record()).names).toEqual(["api"]);
    expect(await a.d.collector.pass()).toMatchObject({ restored: 0 });
  });

  it("metrics: the state gauges are read at scrape time from the running host", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const a = await simHost(cluster, "198.18.0.21");
    const p = await network(a, "net-m");
    await endpoint(a, "net-m", p, "ep-m1");
    await endpoint(a, "net-m", p, "ep-m2");
    const text = await scrape();
    expect(text).toContain(`tsoverlay_endpoints{network="${SUBNET}"} 2`);
    expect(text).toContain("tsoverlay_store_up 1");
    expect(text).toMatch(/tsoverlay_store_request_duration_seconds_count\{op="cas"\} [1-9]/);
  });

  it("metrics: peers programmed is the count last handed to the kernel; a scrape derives no peers", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const [a, b] = [await simHost(cluster, "198.18.0.31"), await simHost(cluster, "198.18.0.32")];
    const p = await network(a, "net-p");
    await network(b, "net-p");
    await endpoint(a, "net-p", p, "ep-pa");
    await endpoint(b, "net-p", p, "ep-pb");
    await eventually("each host to program the other's endpoint", () => a.datapath.peers(SUBNET).length === 1 && b.datapath.peers(SUBNET).length === 1);
    const derived = [vi.spyOn(a.d.peers, "desired"), vi.spyOn(b.d.peers, "desired")];
    for (let i = 0; i < 5; i++) expect(await scrape()).toContain(`tsoverlay_peers_programmed{network="${SUBNET}"} 1`);
    expect(derived.map((d) => d.mock.calls.length)).toEqual([0, 0]);
  });
});

describe("CLI pieces", () => {
  it("prints Docker-style tables and Docker's port notation", () => {
    expect(
      table(
        ["A", "LONGER"],
        [
          ["xx", "y"],
          ["x", ""],
        ],
      ),
    ).toBe("A    LONGER\nxx   y\nx\n");
    expect(portText({ proto: "udp", hostIp: "::", hostPort: 53, containerPort: 5353, via: "proxy" })).toBe("[::]:53->5353/udp (proxy)");
  });

  it("an empty cluster is an empty table, not an error", () => {
    const empty: ClusterSnapshot = { self: "h", at: "t", hosts: [], networks: [], endpoints: [] };
    expect(ps(empty, undefined).text).toBe("NAME   NETWORK   HOST   ADDRESS   MAC   PORTS\n");
  });
});

describe("TSOVERLAY_METRICS_ADDR", () => {
  it("takes HOST:PORT, [V6]:PORT and :PORT (the underlay address, not every one), and refuses anything else with the setting's name", () => {
    const addr = (v: string) => {
      const c = loadConfig({ TSOVERLAY_METRICS_ADDR: v });
      return c.ok ? c.value.metricsAddr : c.error;
    };
    expect(addr("198.18.0.11:9473")).toEqual({ host: "198.18.0.11", port: 9473 });
    expect(addr("[::1]:9473")).toEqual({ host: "::1", port: 9473 });
    // A bare port is this host's underlay (VTEP) address, resolved when the driver starts; every address only when asked for.
    expect(addr(":9473")).toStrictEqual({ host: undefined, port: 9473 });
    expect(addr("0.0.0.0:9473")).toEqual({ host: "0.0.0.0", port: 9473 });
    expect(addr("[::]:9473")).toEqual({ host: "::", port: 9473 });
    expect(addr("9473")).toMatch(/TSOVERLAY_METRICS_ADDR: 9473 is not HOST:PORT/);
    expect(addr("h:70000")).toMatch(/TSOVERLAY_METRICS_ADDR/);
    const off = loadConfig({});
    expect(off.ok && off.value.metricsAddr).toBeUndefined();
  });
});
