import { ok } from "../http/answer.js";
import type { Handler, RouteTable } from "../http/app.js";
import type { ReadinessGate } from "../readiness.js";
import { ipamRoutes } from "./ipam-routes.js";
import { networkRoutes } from "./network-routes.js";
import { VERSION } from "../../lib/version.js";

/** Every protocol path the plugin serves. */
export function buildRoutes(gate: ReadinessGate): RouteTable {
  const routes = new Map<string, Handler>();
  routes.set("/Plugin.Activate", () => ok({ Implements: ["NetworkDriver", "IpamDriver"] }));
  for (const [path, h] of networkRoutes(gate)) routes.set(path, h);
  for (const [path, h] of ipamRoutes(gate)) routes.set(path, h);
  return routes;
}

/** GET /tsoverlay/cluster: every host, network and endpoint of the cluster (what `tsoverlay ps|networks|hosts|ports` show). */
export async function clusterOf(gate: ReadinessGate): Promise<unknown> {
  const s = gate.current;
  if (!s.ready) throw new NotReady(s.reason);
  return s.view();
}

/** GET /tsoverlay/peers: every live host's kernel peer tables against what it should program. */
export async function peersOf(gate: ReadinessGate): Promise<unknown> {
  const s = gate.current;
  if (!s.ready) throw new NotReady(s.reason);
  return s.peers();
}

/** GET /tsoverlay/doctor: this host checked for what has bitten users. */
export async function doctorOf(gate: ReadinessGate): Promise<unknown> {
  const s = gate.current;
  if (!s.ready) throw new NotReady(s.reason);
  return s.doctor();
}

/** POST /tsoverlay/rotate-key: a new WireGuard key for this host, published at once. */
export async function rotateKeyOf(gate: ReadinessGate): Promise<unknown> {
  const s = gate.current;
  if (!s.ready) throw new NotReady(s.reason);
  return s.rotateKey();
}

/** GET /tsoverlay/probe?target=HOST|ADDRESS[&network=NET]: VXLAN probes to a peer's VTEP. */
export async function probeOf(gate: ReadinessGate, query: Readonly<Record<string, string>>): Promise<unknown> {
  const s = gate.current;
  if (!s.ready) throw new NotReady(s.reason);
  const target = query.target;
  if (target === undefined || target === "")
    throw Object.assign(new Error("target is required: a host (its address or name) or a container address"), { status: 400 });
  return s.probe(target, query.network === "" ? undefined : query.network);
}

/**
 * GET /tsoverlay/support: what `tsoverlay support-bundle` gets beside the
 * other views: the plugin's recent log lines, always (they say why a plugin
 * is not ready), and, once the domain is up, this host's kernel tables and
 * the store's records; before that those two parts say why not.
 */
export async function supportOf(gate: ReadinessGate, logLines: () => string[]): Promise<unknown> {
  const s = gate.current;
  if (!s.ready) {
    const why = { ok: false, error: `tsoverlay is not ready: ${s.reason}` };
    return { log: logLines(), kernel: why, store: why };
  }
  const parts = await s.support();
  return { log: logLines(), ...parts };
}

/** The plugin has not started its domain yet (the reason says why): answered 503. */
export class NotReady extends Error {
  readonly status = 503;
}

/** GET /tsoverlay/status on the plugin's sockets: readiness, the plugin's version, published ports, and the cluster side (store health, queued teardown, hosts, peers). */
export async function statusOf(gate: ReadinessGate): Promise<Record<string, unknown>> {
  const s = gate.current;
  return s.ready ? { ready: true, version: VERSION, ports: s.ports(), ...(await s.cluster()) } : { ready: false, version: VERSION, reason: s.reason };
}
