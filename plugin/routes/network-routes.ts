import type { PortRequest } from "../../driver/publish/port-publisher.js";
import { fail, failed, ok, type Answer } from "../http/answer.js";
import type { Handler } from "../http/app.js";
import {
  AllocateNetworkRequest,
  CreateEndpointRequest,
  CreateNetworkRequest,
  DiscoveryRequest,
  EndpointIdRequest,
  JoinRequest,
  NO_PROXY_6TO4,
  NetworkIdRequest,
  ProgramExternalConnectivityRequest,
  type PortBinding,
} from "../protocol/network-driver.js";
import { validate } from "../protocol/validate.js";
import type { ReadinessGate } from "../readiness.js";
import { route } from "./route.js";

/** IP protocol numbers in Docker's port map. */
const PROTOCOLS: Record<number, "tcp" | "udp"> = { 6: "tcp", 17: "udp" };

/** Docker's port map in the domain's terms; a protocol other than TCP and UDP is refused by name. */
function portRequests(map: PortBinding[], endpointId: string): { ok: true; value: PortRequest[] } | { ok: false; answer: Answer } {
  const out: PortRequest[] = [];
  for (const p of map) {
    const proto = PROTOCOLS[p.Proto];
    if (proto === undefined) {
      return { ok: false, answer: fail(`endpoint ${endpointId}: publishing port ${p.Port}: protocol ${p.Proto} is not supported (tcp and udp are)`, 400) };
    }
    out.push({ proto, hostIp: p.HostIP ?? "", hostPort: p.HostPort, hostPortEnd: p.HostPortEnd, containerPort: p.Port });
  }
  return { ok: true, value: out };
}

/** `-o` options arrive as `com.docker.network.generic`; Docker only ever sends strings there. */
function stringOptions(generic: Record<string, unknown> | null | undefined): string | Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(generic ?? {})) {
    if (typeof v !== "string") return `option ${k} must be a string`;
    out[k] = v;
  }
  return out;
}

/** NetworkDriver.*: validation and Docker's shapes here, behaviour in driver/. */
export function networkRoutes(gate: ReadinessGate): Map<string, Handler> {
  const routes = new Map<string, Handler>();

  // Scope must be "local": "global" makes `docker network create` fail outside swarm.
  routes.set("/NetworkDriver.GetCapabilities", () => ok({ Scope: "local", ConnectivityScope: "global" }));

  routes.set(
    "/NetworkDriver.CreateNetwork",
    route(
      gate,
      "CreateNetwork",
      CreateNetworkRequest,
      async (req, { driver }) => {
        const what = `CreateNetwork ${req.NetworkID}`;
        const pool = req.IPv4Data![0]!;
        const options = stringOptions(req.Options?.["com.docker.network.generic"]);
        if (typeof options === "string") return fail(`${what}: ${options}`, 400);
        const r = await driver.createNetwork({
          networkId: req.NetworkID,
          addressSpace: pool.AddressSpace,
          pool: pool.Pool,
          gatewayCidr: pool.Gateway,
          options,
          internal: req.Options?.["com.docker.network.internal"] === true,
          auxAddresses: pool.AuxAddresses ?? {},
        });
        return r.ok ? ok() : failed(r.error);
      },
      (req) => {
        const what = `CreateNetwork ${req.NetworkID}`;
        if ((req.IPv6Data ?? []).length > 0 || req.Options?.["com.docker.network.enable_ipv6"] === true) {
          return `${what}: tsoverlay networks are IPv4-only: drop --ipv6`;
        }
        if (req.Options?.["com.docker.network.enable_ipv4"] === false) return `${what}: tsoverlay networks are IPv4 networks: drop --ipv4=false`;
        const v4 = req.IPv4Data ?? [];
        if (v4.length !== 1) return `${what}: exactly one IPv4 subnet is supported (got ${v4.length}): give one --subnet`;
        return undefined;
      },
    ),
  );

  routes.set(
    "/NetworkDriver.DeleteNetwork",
    route(gate, "DeleteNetwork", NetworkIdRequest, async (req, { driver }) => {
      const r = await driver.deleteNetwork(req.NetworkID);
      return r.ok ? ok() : failed(r.error);
    }),
  );

  // Swarm allocation is only for global-scope drivers; answer correctly anyway
  // (echo the options, or nodes would never see them).
  routes.set("/NetworkDriver.AllocateNetwork", (body) => {
    const v = validate(AllocateNetworkRequest, body, "AllocateNetwork");
    return v.ok ? ok({ Options: v.value.Options ?? {} }) : fail(v.error, 400);
  });
  routes.set("/NetworkDriver.FreeNetwork", (body) => {
    const v = validate(NetworkIdRequest, body, "FreeNetwork");
    return v.ok ? ok() : fail(v.error, 400);
  });

  routes.set(
    "/NetworkDriver.CreateEndpoint",
    route(gate, "CreateEndpoint", CreateEndpointRequest, async (req, { driver }) => {
      const iface = req.Interface ?? { Address: "", AddressIPv6: "", MacAddress: "" };
      if (iface.AddressIPv6 !== "") return fail(`CreateEndpoint ${req.EndpointID}: tsoverlay networks are IPv4-only`, 400);
      const r = await driver.createEndpoint({ networkId: req.NetworkID, endpointId: req.EndpointID, addressCidr: iface.Address, mac: iface.MacAddress });
      if (!r.ok) return failed(r.error);
      // Only fields that were empty in the request may be returned.
      return ok(r.value.mac === undefined ? {} : { Interface: { MacAddress: r.value.mac } });
    }),
  );

  routes.set(
    "/NetworkDriver.EndpointOperInfo",
    route(gate, "EndpointOperInfo", EndpointIdRequest, async (req, { driver }) => {
      const r = await driver.endpointInfo(req.NetworkID, req.EndpointID);
      return r.ok ? ok({ Value: r.value }) : failed(r.error);
    }),
  );

  routes.set(
    "/NetworkDriver.DeleteEndpoint",
    route(gate, "DeleteEndpoint", EndpointIdRequest, async (req, { driver }) => {
      const r = await driver.deleteEndpoint(req.NetworkID, req.EndpointID);
      return r.ok ? ok() : failed(r.error);
    }),
  );

  routes.set(
    "/NetworkDriver.Join",
    route(gate, "Join", JoinRequest, async (req, { driver }) => {
      const r = await driver.join(req.NetworkID, req.EndpointID, req.SandboxKey);
      if (!r.ok) return failed(r.error);
      // Gateway must be a plain address; with it Docker routes through this
      // endpoint and asks this driver for external connectivity.
      return ok({
        InterfaceName: { SrcName: r.value.srcName, DstPrefix: r.value.dstPrefix },
        ...(r.value.gateway === undefined ? {} : { Gateway: r.value.gateway }),
        // RouteType 0: through NextHop (1 would be a directly connected route).
        ...(r.value.routes === undefined
          ? {}
          : { StaticRoutes: r.value.routes.map((x) => ({ Destination: x.destination, RouteType: 0, NextHop: x.nextHop })) }),
      });
    }),
  );

  routes.set(
    "/NetworkDriver.Leave",
    route(gate, "Leave", EndpointIdRequest, async (req, { driver }) => {
      const r = await driver.leave(req.NetworkID, req.EndpointID);
      return r.ok ? ok() : failed(r.error);
    }),
  );

  // Node discovery is only sent to swarm/cluster-store drivers; tsoverlay
  // discovers hosts through its own store, so these are acknowledged.
  for (const path of ["/NetworkDriver.DiscoverNew", "/NetworkDriver.DiscoverDelete"]) {
    routes.set(path, (body) => {
      const v = validate(DiscoveryRequest, body, path.slice(1));
      return v.ok ? ok() : fail(v.error, 400);
    });
  }

  routes.set(
    "/NetworkDriver.ProgramExternalConnectivity",
    route(gate, "ProgramExternalConnectivity", ProgramExternalConnectivityRequest, async (req, { driver }) => {
      const ports = portRequests(req.Options?.["com.docker.network.portmap"] ?? [], req.EndpointID);
      if (!ports.ok) return ports.answer;
      const r = await driver.programExternalConnectivity(req.NetworkID, req.EndpointID, ports.value, {
        ipv6Elsewhere: req.Options?.[NO_PROXY_6TO4] === true,
      });
      return r.ok ? ok() : failed(r.error);
    }),
  );

  routes.set(
    "/NetworkDriver.RevokeExternalConnectivity",
    route(gate, "RevokeExternalConnectivity", EndpointIdRequest, async (req, { driver }) => {
      const r = await driver.revokeExternalConnectivity(req.NetworkID, req.EndpointID);
      return r.ok ? ok() : failed(r.error);
    }),
  );

  return routes;
}
