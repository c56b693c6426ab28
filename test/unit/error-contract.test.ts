/**
 * The one error contract, end to end through the HTTP edge: for each cause a
 * domain operation can fail with, the answer Docker gets carries the cause's
 * status and the domain's words in `Err` (and `Error`, for IPAM calls). The
 * domain is the real one (a simulated host: fake kernel, in-memory store).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../lib/log.js";
import { createApp } from "../../plugin/http/app.js";
import { listenUnix, type Listener } from "../../plugin/http/listen.js";
import { ReadinessGate } from "../../plugin/readiness.js";
import { buildRoutes, statusOf } from "../../plugin/routes/index.js";
import { FlakyStore } from "../support/flaky-store.js";
import { MemoryStore } from "../support/memory-store.js";
import { postPlugin } from "../support/plugin-client.js";
import { simHost, stopSimHosts, type SimHost } from "../support/sim-host.js";

let dir: string;
let sock: string;
let listener: Listener;
let cluster: FlakyStore;
let h: SimHost;
const gate = new ReadinessGate();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tso-errors-"));
  sock = join(dir, "plugin.sock");
  listener = await listenUnix(createApp(buildRoutes(gate), createLogger("silent"), { status: () => statusOf(gate) }), sock);
});

afterAll(async () => {
  await listener.close();
  rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  await cluster.up();
  await stopSimHosts();
});

async function up(): Promise<void> {
  cluster = new FlakyStore(new MemoryStore());
  h = await simHost(cluster, "h1", undefined, { storeRetryMs: 100 });
  gate.ready({
    driver: h.d.driver,
    ipam: h.d.ipam,
    ports: () => [],
    cluster: () => h.d.status(),
    view: () => h.d.view.read(),
    peers: () => h.d.peerReport(),
    doctor: async () => [],
    probe: () => Promise.reject(new Error("no probe in a unit test")),
    rotateKey: () => Promise.reject(new Error("no WireGuard in a unit test")),
    support: () => Promise.reject(new Error("no support bundle in a unit test")),
  });
}

const NET = "0123456789ab";
const post = (path: string, body: object) => postPlugin(sock, path, body);

/** A network on the simulated host, made through the protocol as Docker makes it. */
async function network(subnet: string): Promise<string> {
  const pool = (await post("/IpamDriver.RequestPool", { AddressSpace: "tsoverlay", Pool: subnet })).body as { PoolID: string };
  const gw = (await post("/IpamDriver.RequestAddress", { PoolID: pool.PoolID, Options: { RequestAddressType: "com.docker.network.gateway" } })).body as {
    Address: string;
  };
  const r = await post("/NetworkDriver.CreateNetwork", { NetworkID: NET, IPv4Data: [{ AddressSpace: "tsoverlay", Pool: subnet, Gateway: gw.Address }] });
  expect(r.status).toBe(200);
  return pool.PoolID;
}

describe("every cause reaches Docker with its status and the domain's words", () => {
  it("bad-request → 400", async () => {
    await up();
    const r = await post("/NetworkDriver.CreateNetwork", {
      NetworkID: NET,
      Options: { "com.docker.network.generic": { vnii: "1" } },
      IPv4Data: [{ AddressSpace: "tsoverlay", Pool: "10.50.0.0/24", Gateway: "10.50.0.1/24" }],
    });
    expect(r.status).toBe(400);
    expect(r.body).toEqual({ Err: expect.stringMatching(/^network 0123456789ab: unknown option vnii/), Error: expect.any(String) });
  });

  it("not-found → 500 (a 404 would read as 'not implemented')", async () => {
    await up();
    const r = await post("/NetworkDriver.Join", { NetworkID: NET, EndpointID: "e1", SandboxKey: "/var/run/docker/netns/x" });
    expect(r.status).toBe(500);
    expect((r.body as { Err: string }).Err).toBe(`endpoint e1 of network ${NET} not found`);
  });

  it("ProgramExternalConnectivity for an unknown endpoint fails aloud (a 404 would be taken for success); Revoke of one has nothing to undo", async () => {
    await up();
    const Options = { "com.docker.network.portmap": [{ Proto: 6, IP: "", Port: 80, HostIP: "", HostPort: 8080, HostPortEnd: 8080 }] };
    const program = await post("/NetworkDriver.ProgramExternalConnectivity", { NetworkID: NET, EndpointID: "e9", Options });
    expect(program.status).toBe(500);
    expect((program.body as { Err: string }).Err).toBe(`endpoint e9 of network ${NET} not found`);
    const revoke = await post("/NetworkDriver.RevokeExternalConnectivity", { NetworkID: NET, EndpointID: "e9" });
    expect(revoke).toMatchObject({ status: 200, body: {} });
  });

  it("conflict → 409", async () => {
    await up();
    const poolId = await network("10.51.0.0/24");
    expect((await post("/IpamDriver.RequestAddress", { PoolID: poolId, Address: "10.51.0.9" })).status).toBe(200);
    const r = await post("/IpamDriver.RequestAddress", { PoolID: poolId, Address: "10.51.0.9" });
    expect(r.status).toBe(409);
    expect(r.body).toEqual({
      Err: "address 10.51.0.9 is already in use in pool 10.51.0.0/24",
      Error: "address 10.51.0.9 is already in use in pool 10.51.0.0/24",
    });
  });

  it("store-unavailable → 503, in words that stand alone", async () => {
    await up();
    const poolId = await network("10.52.0.0/24");
    cluster.down("Consul at 127.0.0.1:8500 has no leader");
    const r = await post("/IpamDriver.RequestAddress", { PoolID: poolId });
    expect(r.status).toBe(503);
    expect((r.body as { Error: string }).Error).toMatch(
      /^tsoverlay: cluster store unavailable: Consul at 127\.0\.0\.1:8500 has no leader \(retried for 0\.\d s\)$/,
    );
  });

  it("kernel → 500, naming the step that failed", async () => {
    await up();
    const poolId = await network("10.53.0.0/24");
    const ip = (await post("/IpamDriver.RequestAddress", { PoolID: poolId })).body as { Address: string };
    h.datapath.failNext("ensureEndpoint", new Error("RTM_NEWLINK: File exists"));
    const r = await post("/NetworkDriver.CreateEndpoint", { NetworkID: NET, EndpointID: "e1", Interface: { Address: ip.Address } });
    expect(r.status).toBe(500);
    expect((r.body as { Err: string }).Err).toBe(`endpoint e1 of network ${NET}: creating the veth pair: RTM_NEWLINK: File exists`);
  });

  it("internal → 500: a store that refuses (an ACL) is not mistaken for an outage", async () => {
    await up();
    const poolId = await network("10.54.0.0/24");
    cluster.refuse("Consul at 127.0.0.1:8500 refused the request: HTTP 403: Permission denied");
    const r = await post("/IpamDriver.RequestAddress", { PoolID: poolId });
    expect(r.status).toBe(500);
    expect((r.body as { Error: string }).Error).toMatch(/refused the request: HTTP 403: Permission denied/);
  });
});
