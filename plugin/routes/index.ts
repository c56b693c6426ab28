import { ok } from "../http/answer.js";
import type { Handler, RouteTable } from "../http/app.js";
import type { ReadinessGate } from "../readiness.js";
import { ipamRoutes } from "./ipam-routes.js";
import { networkRoutes } from "./network-routes.js";

/** Every protocol path the plugin serves. */
export function buildRoutes(gate: ReadinessGate): RouteTable {
  const routes = new Map<string, Handler>();
  routes.set("/Plugin.Activate", () => ok({ Implements: ["NetworkDriver", "IpamDriver"] }));
  for (const [path, h] of networkRoutes(gate)) routes.set(path, h);
  for (const [path, h] of ipamRoutes(gate)) routes.set(path, h);
  return routes;
}

/** GET /tsoverlay/status on the plugin's sockets: readiness, published ports, and the cluster side (store health, queued teardown, hosts, peers). */
export async function statusOf(gate: ReadinessGate): Promise<Record<string, unknown>> {
  const s = gate.current;
  return s.ready ? { ready: true, ports: s.ports(), ...(await s.cluster()) } : { ready: false, reason: s.reason };
}
