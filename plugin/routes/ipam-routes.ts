import { ADDRESS_SPACE } from "../../driver/ipam/pool-records.js";
import { POOL_OPTIONS, unknownPoolOption } from "../../driver/ipam/pool-options.js";
import { fail, failed, ok } from "../http/answer.js";
import type { Handler } from "../http/app.js";
import { ReleaseAddressRequest, ReleasePoolRequest, RequestAddressRequest, RequestPoolRequest } from "../protocol/ipam-driver.js";
import type { ReadinessGate } from "../readiness.js";
import { route } from "./route.js";

/** RequestAddress options libnetwork sets: the gateway's request, the endpoint's MAC, and (29+) the container's name. */
const REQUEST_ADDRESS_TYPE = "RequestAddressType";
const GATEWAY_ADDRESS_TYPE = "com.docker.network.gateway";
const MAC_ADDRESS_OPTION = "com.docker.network.endpoint.macaddress";
const ENDPOINT_NAME_OPTION = "com.docker.network.endpoint.name";

/**
 * IpamDriver.* (answers carry `Error` as well as `Err`: see answer.ts). Docker
 * prefixes errors with the method ("IpamDriver.RequestPool: …"), so they are
 * sent without one.
 */
export function ipamRoutes(gate: ReadinessGate): Map<string, Handler> {
  const routes = new Map<string, Handler>();

  routes.set("/IpamDriver.GetCapabilities", () => ok({ RequiresMACAddress: false, RequiresRequestReplay: false }));
  routes.set("/IpamDriver.GetDefaultAddressSpaces", () => ok({ LocalDefaultAddressSpace: ADDRESS_SPACE, GlobalDefaultAddressSpace: ADDRESS_SPACE }));

  routes.set(
    "/IpamDriver.RequestPool",
    route(gate, "RequestPool", RequestPoolRequest, async (req, { ipam }) => {
      const options = req.Options ?? {};
      const unknown = unknownPoolOption(options);
      if (unknown !== undefined) return fail(`unknown --ipam-opt ${unknown} (tsoverlay understands: ${POOL_OPTIONS.join(", ")})`, 400);
      const name = options.name || undefined;
      const r = await ipam.requestPool({ pool: req.Pool, subPool: req.SubPool, v6: req.V6, ...(name === undefined ? {} : { name }) });
      return r.ok ? ok({ PoolID: r.value.poolId, Pool: r.value.pool, Data: r.value.data }) : failed(r.error);
    }),
  );

  routes.set(
    "/IpamDriver.ReleasePool",
    route(gate, "ReleasePool", ReleasePoolRequest, async (req, { ipam }) => {
      const r = await ipam.releasePool(req.PoolID);
      return r.ok ? ok() : failed(r.error);
    }),
  );

  routes.set(
    "/IpamDriver.RequestAddress",
    route(gate, "RequestAddress", RequestAddressRequest, async (req, { ipam }) => {
      const options = req.Options ?? {};
      const mac = options[MAC_ADDRESS_OPTION] || undefined;
      const name = options[ENDPOINT_NAME_OPTION] || undefined;
      const r = await ipam.requestAddress({
        poolId: req.PoolID,
        address: req.Address,
        gateway: options[REQUEST_ADDRESS_TYPE] === GATEWAY_ADDRESS_TYPE,
        ...(mac === undefined ? {} : { mac }),
        ...(name === undefined ? {} : { name }),
      });
      return r.ok ? ok({ Address: r.value.address, Data: r.value.data }) : failed(r.error);
    }),
  );

  routes.set(
    "/IpamDriver.ReleaseAddress",
    route(gate, "ReleaseAddress", ReleaseAddressRequest, async (req, { ipam }) => {
      const r = await ipam.releaseAddress(req.PoolID, req.Address);
      return r.ok ? ok() : failed(r.error);
    }),
  );

  return routes;
}
