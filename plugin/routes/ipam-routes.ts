import { ADDRESS_SPACE } from "../../domain/overlay-driver.js";
import type { Result } from "../../lib/result.js";
import { fail, ok, type Answer } from "../http/answer.js";
import type { Handler } from "../http/app.js";
import { ReleaseAddressRequest, ReleasePoolRequest, RequestAddressRequest, RequestPoolRequest } from "../protocol/ipam-driver.js";
import { validate } from "../protocol/validate.js";
import type { ReadinessGate } from "../readiness.js";

/** What the IPAM routes need from the domain (this host's view of the cluster IPAM). */
export interface ClusterIpamPort {
  requestPool(args: { pool: string; subPool: string; options: Record<string, string>; v6: boolean }): Promise<Result<{ poolId: string; pool: string; data: Record<string, string> }>>;
  releasePool(poolId: string): Promise<Result<void>>;
  requestAddress(args: { poolId: string; address: string; options: Record<string, string>; name?: string }): Promise<Result<{ address: string; data: Record<string, string> }>>;
  releaseAddress(poolId: string, address: string): Promise<Result<void>>;
}

const ENDPOINT_NAME_OPTION = "com.docker.network.endpoint.name";

/** IpamDriver.* (answers carry `Error` as well as `Err`: see answer.ts). Docker prefixes errors with the method ("IpamDriver.RequestPool: …"), so they are sent without one. */
export function ipamRoutes(gate: ReadinessGate): Map<string, Handler> {
  const routes = new Map<string, Handler>();
  const withIpam = async (what: string, call: (ipam: ClusterIpamPort) => Promise<Answer>): Promise<Answer> => {
    const s = gate.current;
    if (!s.ready) return fail(`${what}: tsoverlay is not ready: ${s.reason}`, 503);
    return call(s.ipam);
  };

  routes.set("/IpamDriver.GetCapabilities", () => ok({ RequiresMACAddress: false, RequiresRequestReplay: false }));
  routes.set("/IpamDriver.GetDefaultAddressSpaces", () =>
    ok({ LocalDefaultAddressSpace: ADDRESS_SPACE, GlobalDefaultAddressSpace: ADDRESS_SPACE }),
  );

  routes.set("/IpamDriver.RequestPool", (body) => {
    const v = validate(RequestPoolRequest, body, "RequestPool");
    if (!v.ok) return fail(v.error, 400);
    const req = v.value;
    return withIpam("RequestPool", async (ipam) => {
      const r = await ipam.requestPool({ pool: req.Pool, subPool: req.SubPool, options: req.Options ?? {}, v6: req.V6 });
      return r.ok ? ok({ PoolID: r.value.poolId, Pool: r.value.pool, Data: r.value.data }) : fail(r.error, 400);
    });
  });

  routes.set("/IpamDriver.ReleasePool", (body) => {
    const v = validate(ReleasePoolRequest, body, "ReleasePool");
    if (!v.ok) return fail(v.error, 400);
    return withIpam("ReleasePool", async (ipam) => {
      const r = await ipam.releasePool(v.value.PoolID);
      return r.ok ? ok() : fail(r.error, 400);
    });
  });

  routes.set("/IpamDriver.RequestAddress", (body) => {
    const v = validate(RequestAddressRequest, body, "RequestAddress");
    if (!v.ok) return fail(v.error, 400);
    const req = v.value;
    return withIpam("RequestAddress", async (ipam) => {
      const options = req.Options ?? {};
      // Docker 29 and later name the container the address is for.
      const name = options[ENDPOINT_NAME_OPTION] || undefined;
      const r = await ipam.requestAddress({ poolId: req.PoolID, address: req.Address, options, ...(name === undefined ? {} : { name }) });
      return r.ok ? ok({ Address: r.value.address, Data: r.value.data }) : fail(r.error, 400);
    });
  });

  routes.set("/IpamDriver.ReleaseAddress", (body) => {
    const v = validate(ReleaseAddressRequest, body, "ReleaseAddress");
    if (!v.ok) return fail(v.error, 400);
    return withIpam("ReleaseAddress", async (ipam) => {
      const r = await ipam.releaseAddress(v.value.PoolID, v.value.Address);
      return r.ok ? ok() : fail(r.error, 400);
    });
  });

  return routes;
}
