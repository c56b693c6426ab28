import type { NetworkCatalog } from "../driver/network/network-catalog.js";
import { fail, ok } from "./http/answer.js";
import type { Handler, RouteTable } from "./http/app.js";
import { CreateNetworkRequest, NetworkIdRequest } from "./protocol/network-driver.js";
import { validate, type Validated } from "./protocol/validate.js";

export interface RouteDeps {
  networks: NetworkCatalog;
}

/** `-o` options arrive as `com.docker.network.generic`; Docker only ever sends strings there. */
function stringOptions(generic: Record<string, unknown> | null | undefined, networkId: string): Validated<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(generic ?? {})) {
    if (typeof v !== "string") return { ok: false, error: `CreateNetwork ${networkId}: option ${k} must be a string` };
    out[k] = v;
  }
  return { ok: true, value: out };
}

/** Maps each protocol path to its handler: validation here, behaviour in driver/. */
export function buildRoutes(deps: RouteDeps): RouteTable {
  const routes = new Map<string, Handler>();

  routes.set("/Plugin.Activate", () => ok({ Implements: ["NetworkDriver", "IpamDriver"] }));

  // Scope must be "local": "global" makes `docker network create` fail outside swarm.
  routes.set("/NetworkDriver.GetCapabilities", () => ok({ Scope: "local", ConnectivityScope: "global" }));

  routes.set("/NetworkDriver.CreateNetwork", (body) => {
    const v = validate(CreateNetworkRequest, body, "CreateNetwork");
    if (!v.ok) return fail(v.error, 400);
    const req = v.value;
    const v4 = req.IPv4Data?.[0];
    if (v4 === undefined) return fail(`CreateNetwork ${req.NetworkID}: no IPv4 pool given`, 400);
    const opts = stringOptions(req.Options?.["com.docker.network.generic"], req.NetworkID);
    if (!opts.ok) return fail(opts.error, 400);
    const r = deps.networks.create({
      networkId: req.NetworkID,
      pool: v4.Pool,
      gateway: v4.Gateway ?? "",
      options: opts.value,
    });
    return r.ok ? ok() : fail(`CreateNetwork: ${r.error}`, 409);
  });

  routes.set("/NetworkDriver.DeleteNetwork", (body) => {
    const v = validate(NetworkIdRequest, body, "DeleteNetwork");
    if (!v.ok) return fail(v.error, 400);
    const r = deps.networks.delete(v.value.NetworkID);
    return r.ok ? ok() : fail(`DeleteNetwork: ${r.error}`, 404);
  });

  routes.set("/IpamDriver.GetCapabilities", () => ok({ RequiresMACAddress: false, RequiresRequestReplay: false }));
  routes.set("/IpamDriver.GetDefaultAddressSpaces", () =>
    ok({ LocalDefaultAddressSpace: "tsoverlay-local", GlobalDefaultAddressSpace: "tsoverlay-global" }),
  );

  return routes;
}
