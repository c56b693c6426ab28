import { describe, expect, it } from "vitest";
import type { Answer } from "../../plugin/http/answer.js";
import { parseBody } from "../../plugin/http/app.js";
import { ReadinessGate } from "../../plugin/readiness.js";
import { buildRoutes } from "../../plugin/routes/index.js";

// No start wait: a valid call is answered at once with the domain's state (readiness.test.ts covers the wait).
const routes = buildRoutes(new ReadinessGate({ startWaitMs: 0 }));

const NID = "a".repeat(64);
const EID = "b".repeat(64);

/** Every endpoint that takes a body, with one valid body each (used to prove the gate, not the driver). */
const VALID: Record<string, unknown> = {
  "/NetworkDriver.CreateNetwork": {
    NetworkID: NID,
    Options: {},
    IPv4Data: [{ AddressSpace: "tsoverlay", Pool: "10.1.0.0/24", Gateway: "10.1.0.1/24" }],
    IPv6Data: [],
  },
  "/NetworkDriver.DeleteNetwork": { NetworkID: NID },
  "/NetworkDriver.CreateEndpoint": { NetworkID: NID, EndpointID: EID, Interface: { Address: "10.1.0.2/24", AddressIPv6: "", MacAddress: "" }, Options: {} },
  "/NetworkDriver.EndpointOperInfo": { NetworkID: NID, EndpointID: EID },
  "/NetworkDriver.DeleteEndpoint": { NetworkID: NID, EndpointID: EID },
  "/NetworkDriver.Join": { NetworkID: NID, EndpointID: EID, SandboxKey: "/var/run/docker/netns/x", Options: {} },
  "/NetworkDriver.Leave": { NetworkID: NID, EndpointID: EID },
  "/IpamDriver.RequestPool": { AddressSpace: "tsoverlay", Pool: "10.1.0.0/24", SubPool: "", Options: {}, V6: false },
  "/IpamDriver.ReleasePool": { PoolID: "10.1.0.0/24" },
  "/IpamDriver.RequestAddress": { PoolID: "10.1.0.0/24", Address: "", Options: {} },
  "/IpamDriver.ReleaseAddress": { PoolID: "10.1.0.0/24", Address: "10.1.0.2" },
  "/NetworkDriver.ProgramExternalConnectivity": {
    NetworkID: NID,
    EndpointID: EID,
    Options: { "com.docker.network.portmap": [{ Proto: 6, IP: "", Port: 80, HostIP: "", HostPort: 8080, HostPortEnd: 8080 }] },
  },
  "/NetworkDriver.RevokeExternalConnectivity": { NetworkID: NID, EndpointID: EID },
};
const VALIDATED_ONLY: Record<string, unknown> = {
  "/NetworkDriver.AllocateNetwork": { NetworkID: NID, Options: {}, IPv4Data: [], IPv6Data: null },
  "/NetworkDriver.FreeNetwork": { NetworkID: NID },
  "/NetworkDriver.DiscoverNew": { DiscoveryType: 1, DiscoveryData: { Address: "198.18.0.12", BindAddress: "", Self: false } },
  "/NetworkDriver.DiscoverDelete": { DiscoveryType: 1, DiscoveryData: { Address: "198.18.0.12" } },
};

async function call(path: string, body: unknown): Promise<Answer> {
  const h = routes.get(path);
  if (h === undefined) throw new Error(`no route ${path}`);
  return h(body);
}

const BAD_BODIES: [string, unknown][] = [
  ["an empty object", {}],
  ["an array", []],
  ["a string", "x"],
  ["null", null],
  ["wrong field types", { NetworkID: 5, EndpointID: true, PoolID: 7, Address: 1, AddressSpace: 3, DiscoveryType: "1" }],
];

describe("request validation on every endpoint", () => {
  for (const path of [...Object.keys(VALID), ...Object.keys(VALIDATED_ONLY)]) {
    it.each(BAD_BODIES)(`${path} answers %s with a 400 naming the endpoint`, async (_what, body) => {
      const a = await call(path, body);
      expect(a.ok).toBe(false);
      if (!a.ok) {
        expect(a.status).toBe(400);
        expect(a.error).toContain(path.split(".")[1]);
      }
    });
  }

  it.each(Object.entries(VALID))("%s with a valid body says the driver is not ready yet (no half work)", async (path, body) => {
    const a = await call(path, body);
    expect(a).toMatchObject({ ok: false, status: 503 });
    if (!a.ok) expect(a.error).toMatch(/not ready: starting/);
  });

  it.each(Object.entries(VALIDATED_ONLY))("%s with a valid body succeeds", async (path, body) => {
    expect((await call(path, body)).ok).toBe(true);
  });

  it("echoes AllocateNetwork options (swarm would otherwise lose them)", async () => {
    const a = await call("/NetworkDriver.AllocateNetwork", { NetworkID: NID, Options: { vni: "5000" } });
    expect(a).toEqual({ ok: true, body: { Options: { vni: "5000" } } });
  });

  it("refuses IPv6 networks and multi-subnet networks clearly", async () => {
    const v6 = await call("/NetworkDriver.CreateNetwork", {
      ...(VALID["/NetworkDriver.CreateNetwork"] as object),
      IPv6Data: [{ AddressSpace: "tsoverlay", Pool: "fd00::/64" }],
    });
    expect(v6.ok || v6.error).toMatch(/IPv4-only/);
    const two = await call("/NetworkDriver.CreateNetwork", {
      NetworkID: NID,
      IPv4Data: [
        { Pool: "10.1.0.0/24", Gateway: "10.1.0.1/24" },
        { Pool: "10.2.0.0/24", Gateway: "10.2.0.1/24" },
      ],
    });
    expect(two.ok || two.error).toMatch(/exactly one IPv4 subnet/);
  });

  it("parses bodies without a content type, and reports malformed JSON", () => {
    expect(parseBody(Buffer.from('{"a":1}'))).toEqual({ ok: true, value: { a: 1 } });
    expect(parseBody(Buffer.from("  "))).toEqual({ ok: true, value: {} });
    expect(parseBody(Buffer.from("{"))).toMatchObject({ ok: false });
  });
});
