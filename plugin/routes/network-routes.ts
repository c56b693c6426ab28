import type { OverlayDriver } from "../../domain/overlay-driver.js";
import { fail, ok, type Answer } from "../http/answer.js";
import type { Handler } from "../http/app.js";
import {
  AllocateNetworkRequest,
  CreateEndpointRequest,
  CreateNetworkRequest,
  DiscoveryRequest,
  EndpointIdRequest,
  JoinRequest,
  NetworkIdRequest,
  NO_PROXY_6TO4,
  ProgramExternalConnectivityRequest,
} from "../protocol/network-driver.js";
import { validate, type Validated } from "../protocol/validate.js";
import type { ReadinessGate } from "../readiness.js";

/** `-o` options arrive as `com.docker.network.generic`; Docker only ever sends strings there. */
function stringOptions(generic: Record<string, unknown> | null | undefined, networkId: string): Validated<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(generic ?? {})) {
    if (typeof v !== "string") return { ok: false, error: `CreateNetwork ${networkId}: option ${k} must be a string` };
    out[k] = v;
  }
  return { ok: true, value: out };
}

type Call = (driver: OverlayDriver) => Promise<Answer>;

/** NetworkDriver.* : validation here, behaviour in driver/. */
export function networkRoutes(gate: ReadinessGate): Map<string, Handler> {
  const routes = new Map<string, Handler>();
  const withDriver = async (what: string, call: Call): Promise<Answer> => {
    const s = gate.current;
    if (!s.ready) return fail(`${what}: tsoverlay is not ready: ${s.reason}`, 503);
    return call(s.driver);
  };

  // Scope must be "local": "global" makes `docker network create` fail outside swarm.
  routes.set("/NetworkDriver.GetCapabilities", () => ok({ Scope: "local", ConnectivityScope: "global" }));

  routes.set("/NetworkDriver.CreateNetwork", (body) => {
    const v = validate(CreateNetworkRequest, body, "CreateNetwork");
    if (!v.ok) return fail(v.error, 400);
    const req = v.value;
    if ((req.IPv6Data ?? []).length > 0 || req.Options?.["com.docker.network.enable_ipv6"] === true) {
      return fail(`CreateNetwork ${req.NetworkID}: tsoverlay networks are IPv4-only: drop --ipv6`, 400);
    }
    if (req.Options?.["com.docker.network.enable_ipv4"] === false) {
      return fail(`CreateNetwork ${req.NetworkID}: tsoverlay networks are IPv4 networks: drop --ipv4=false`, 400);
    }
    const v4 = req.IPv4Data ?? [];
    if (v4.length !== 1) return fail(`CreateNetwork ${req.NetworkID}: exactly one IPv4 subnet is supported (got ${v4.length}): give one --subnet`, 400);
    const pool = v4[0]!;
    const opts = stringOptions(req.Options?.["com.docker.network.generic"], req.NetworkID);
    if (!opts.ok) return fail(opts.error, 400);
    return withDriver(`CreateNetwork ${req.NetworkID}`, async (driver) => {
      const r = await driver.createNetwork({
        networkId: req.NetworkID,
        addressSpace: pool.AddressSpace,
        pool: pool.Pool,
        gatewayCidr: pool.Gateway,
        options: opts.value,
        internal: req.Options?.["com.docker.network.internal"] === true,
        auxAddresses: pool.AuxAddresses ?? {},
      });
      return r.ok ? ok() : fail(r.error, 400);
    });
  });

  routes.set("/NetworkDriver.DeleteNetwork", (body) => {
    const v = validate(NetworkIdRequest, body, "DeleteNetwork");
    if (!v.ok) return fail(v.error, 400);
    return withDriver("DeleteNetwork", async (driver) => {
      const r = await driver.deleteNetwork(v.value.NetworkID);
      return r.ok ? ok() : fail(r.error, 404);
    });
  });

  // Swarm allocation is only for global-scope drivers; answer correctly anyway
  // (echo the options, or nodes would never see them).
  routes.set("/NetworkDriver.AllocateNetwork", (body) => {
    const v = validate(AllocateNetworkRequest, body, "AllocateNetwork");
    if (!v.ok) return fail(v.error, 400);
    return ok({ Options: v.value.Options ?? {} });
  });
  routes.set("/NetworkDriver.FreeNetwork", (body) => {
    const v = validate(NetworkIdRequest, body, "FreeNetwork");
    return v.ok ? ok() : fail(v.error, 400);
  });

  routes.set("/NetworkDriver.CreateEndpoint", (body) => {
    const v = validate(CreateEndpointRequest, body, "CreateEndpoint");
    if (!v.ok) return fail(v.error, 400);
    const req = v.value;
    const iface = req.Interface ?? { Address: "", AddressIPv6: "", MacAddress: "" };
    if (iface.AddressIPv6 !== "") return fail(`CreateEndpoint ${req.EndpointID}: tsoverlay networks are IPv4-only`, 400);
    return withDriver(`CreateEndpoint ${req.EndpointID}`, async (driver) => {
      const r = await driver.createEndpoint({
        networkId: req.NetworkID,
        endpointId: req.EndpointID,
        addressCidr: iface.Address,
        mac: iface.MacAddress,
      });
      if (!r.ok) return fail(r.error, 400);
      // Only fields that were empty in the request may be returned.
      return ok(r.value.mac === undefined ? {} : { Interface: { MacAddress: r.value.mac } });
    });
  });

  routes.set("/NetworkDriver.EndpointOperInfo", (body) => {
    const v = validate(EndpointIdRequest, body, "EndpointOperInfo");
    if (!v.ok) return fail(v.error, 400);
    return withDriver("EndpointOperInfo", async (driver) => {
      const r = await driver.endpointInfo(v.value.NetworkID, v.value.EndpointID);
      return r.ok ? ok({ Value: r.value }) : fail(r.error, 404);
    });
  });

  routes.set("/NetworkDriver.DeleteEndpoint", (body) => {
    const v = validate(EndpointIdRequest, body, "DeleteEndpoint");
    if (!v.ok) return fail(v.error, 400);
    return withDriver("DeleteEndpoint", async (driver) => {
      const r = await driver.deleteEndpoint(v.value.NetworkID, v.value.EndpointID);
      return r.ok ? ok() : fail(r.error, 404);
    });
  });

  routes.set("/NetworkDriver.Join", (body) => {
    const v = validate(JoinRequest, body, "Join");
    if (!v.ok) return fail(v.error, 400);
    return withDriver(`Join ${v.value.EndpointID}`, async (driver) => {
      const r = await driver.join(v.value.NetworkID, v.value.EndpointID);
      if (!r.ok) return fail(r.error, 404);
      // Gateway must be a plain address; with it Docker routes through this
      // endpoint and asks this driver for external connectivity.
      return ok({
        InterfaceName: { SrcName: r.value.srcName, DstPrefix: r.value.dstPrefix },
        ...(r.value.gateway === undefined ? {} : { Gateway: r.value.gateway }),
      });
    });
  });

  routes.set("/NetworkDriver.Leave", (body) => {
    const v = validate(EndpointIdRequest, body, "Leave");
    if (!v.ok) return fail(v.error, 400);
    return withDriver("Leave", async (driver) => {
      const r = await driver.leave(v.value.NetworkID, v.value.EndpointID);
      return r.ok ? ok() : fail(r.error, 404);
    });
  });

  // Node discovery is only sent to swarm/cluster-store drivers; tsoverlay
  // discovers hosts through its own store, so these are acknowledged.
  for (const path of ["/NetworkDriver.DiscoverNew", "/NetworkDriver.DiscoverDelete"]) {
    routes.set(path, (body) => {
      const v = validate(DiscoveryRequest, body, path.slice(1));
      return v.ok ? ok() : fail(v.error, 400);
    });
  }

  routes.set("/NetworkDriver.ProgramExternalConnectivity", (body) => {
    const v = validate(ProgramExternalConnectivityRequest, body, "ProgramExternalConnectivity");
    if (!v.ok) return fail(v.error, 400);
    const req = v.value;
    const ports = (req.Options?.["com.docker.network.portmap"] ?? []).map((p) => ({
      proto: p.Proto,
      hostIp: p.HostIP ?? "",
      hostPort: p.HostPort,
      hostPortEnd: p.HostPortEnd,
      containerPort: p.Port,
    }));
    return withDriver(`ProgramExternalConnectivity ${req.EndpointID}`, async (driver) => {
      const r = await driver.programExternalConnectivity(req.NetworkID, req.EndpointID, ports, { ipv6Elsewhere: req.Options?.[NO_PROXY_6TO4] === true });
      return r.ok ? ok() : fail(r.error, 400);
    });
  });
  routes.set("/NetworkDriver.RevokeExternalConnectivity", (body) => {
    const v = validate(EndpointIdRequest, body, "RevokeExternalConnectivity");
    if (!v.ok) return fail(v.error, 400);
    return withDriver("RevokeExternalConnectivity", async (driver) => {
      const r = await driver.revokeExternalConnectivity(v.value.NetworkID, v.value.EndpointID);
      return r.ok ? ok() : fail(r.error, 404);
    });
  });

  return routes;
}
