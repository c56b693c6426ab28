/**
 * Records are checked, not trusted: what every reader (peers, names, the
 * cluster view, the host registry) requires of another host's record before
 * it programs, answers or shows it. Whoever can write a key can write any
 * value there; what a key's path says is what the store's ACLs vouch for
 * (layout revision 2 gives each host write on `by-host/<itself>/` only), so
 * the key decides and the value must agree with it.
 *
 * Design note.
 *  - Liveness is keyed by the key: `by-host/<h>/alive` says that host <h> is
 *    alive, and its record must say hostId <h> too; a record that names
 *    another host, or a VTEP that no host can have (0/8, 127/8, 169.254/16,
 *    multicast, 240/4 and broadcast), is ignored. The same holds for the
 *    previous layout's `hosts/<h>`.
 *  - An endpoint under `by-host/<h>/endpoints/<s>/<ep>` counts only if <h> is
 *    alive, the record names host <h> and endpoint <ep>, its VTEP is the one
 *    <h>'s own record gives, <s> is a network the cluster has, its address is
 *    a host address of <s> other than the gateway, and its MAC is the one the
 *    address implies or at least a unicast MAC. The previous layout's
 *    `endpoints/<s>/<ep>` does not say whose it is, so the record's hostId is
 *    taken, and must be a host alive at the previous layout only: a host alive
 *    at `by-host/` wrote that copy for older hosts, and its own record counts.
 *  - Pure functions and one logger: each reader applies them to what it
 *    read, so that no reader can forget one, and every rejection is logged
 *    once per key and version with its reason.
 */
import type { Logger } from "../../lib/log.js";
import { macFromIpv4, normalizeMac, parseIpv4, Subnet } from "../../lib/net.js";
import { isWireGuardKey } from "../../lib/wireguard-key.js";
import { parseByHostKey, parsePreviousHostKey } from "./keys.js";
import type { KV } from "../contracts/store.js";
import { EndpointRecord, HostRecord, parseRecord } from "./records.js";

export type RejectCode =
  | "unreadable"
  | "host-mismatch"
  | "bad-vtep"
  | "endpoint-mismatch"
  | "host-not-alive"
  | "superseded"
  | "vtep-mismatch"
  | "unknown-network"
  | "outside-subnet"
  | "reserved-address"
  | "gateway-address"
  | "bad-mac";

export interface Rejected {
  ok: false;
  code: RejectCode;
  /** In words, for the log and the status endpoint. */
  reason: string;
}

export type Checked<T> = { ok: true; value: T } | Rejected;

const reject = (code: RejectCode, reason: string): Rejected => ({ ok: false, code, reason });

/** Where a host's liveness key is: revision 2's `by-host/<h>/alive`, or only revision 1's `hosts/<h>`. */
export type LayoutOf = "by-host" | "previous";

export interface LiveHost {
  record: HostRecord;
  layout: LayoutOf;
}

/** Blocks no host can use as a VTEP: this network, loopback, link-local, multicast, reserved (with broadcast). */
const NO_VTEP = ["0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4"].map((s) => {
  const r = Subnet.parse(s);
  if (!r.ok) throw new Error(r.error);
  return r.value;
});

/** A unicast IPv4 address that can be another host's VTEP (see NO_VTEP). */
export function isUsableVtep(text: string): boolean {
  const ip = parseIpv4(text);
  return ip.ok && !NO_VTEP.some((block) => block.contains(ip.value));
}

/** A host record under a liveness key that names `keyHost`. */
export function checkHostRecord(keyHost: string, value: string): Checked<HostRecord> {
  const rec = parseRecord(HostRecord, value);
  if (rec === undefined) return reject("unreadable", "not a host record");
  if (rec.hostId !== keyHost) return reject("host-mismatch", `the record says host ${rec.hostId}, its key is host ${keyHost}'s`);
  if (!isUsableVtep(rec.vtep)) return reject("bad-vtep", `VTEP ${rec.vtep} is not a unicast IPv4 address a host can have`);
  // A key that is not one is dropped, not the host: the host stays alive for plain networks and is no encrypted peer.
  if (rec.wireguardKey !== undefined && !isWireGuardKey(rec.wireguardKey)) {
    const { wireguardKey: _dropped, ...rest } = rec;
    return { ok: true, value: rest };
  }
  return { ok: true, value: rec };
}

/**
 * The live hosts that the liveness keys name, checked (see the note at the
 * top): `byHost` are the values under `by-host/` (other shapes are skipped),
 * `previous` those under `hosts/`. A host alive at both is at `by-host`.
 */
export function livenessOf(byHost: readonly KV[], previous: readonly KV[], rejections?: RejectionLog): Map<string, LiveHost> {
  const live = new Map<string, LiveHost>();
  const take = (kv: KV, hostId: string, layout: LayoutOf): void => {
    const r = checkHostRecord(hostId, kv.value);
    if (!r.ok) rejections?.note(kv, r);
    else if (layout === "by-host" || !live.has(hostId)) live.set(hostId, { record: r.value, layout });
  };
  for (const kv of byHost) {
    const k = parseByHostKey(kv.key);
    if (k?.kind === "alive") take(kv, k.hostId, "by-host");
  }
  for (const kv of previous) {
    const hostId = parsePreviousHostKey(kv.key);
    if (hostId !== undefined) take(kv, hostId, "previous");
  }
  return live;
}

/** An endpoint record as read, with what its key says. */
export interface EndpointCandidate {
  kv: KV;
  /** The host the key names (`by-host/<h>/…`); undefined for the previous layout's keys, which name none. */
  keyHost: string | undefined;
  subnet: string;
  endpointId: string;
}

export interface EndpointContext {
  /** A live host, as livenessOf has it; undefined when it is not alive. */
  host(hostId: string): LiveHost | undefined;
  /** The network record of a subnet the cluster has (its gateway); undefined for none. */
  network(subnet: string): { gatewayCidr: string } | undefined;
  /** False: an endpoint of a host that is not alive is kept (the cluster view lists those, marked down). Default true. */
  requireAlive?: boolean;
}

/** An endpoint record checked against its key, its host's record and its network (see the note at the top). */
export function checkEndpoint(c: EndpointCandidate, ctx: EndpointContext): Checked<EndpointRecord> {
  const rec = parseRecord(EndpointRecord, c.kv.value);
  if (rec === undefined) return reject("unreadable", "not an endpoint record");
  const layout: LayoutOf = c.keyHost === undefined ? "previous" : "by-host";
  if (c.keyHost !== undefined && rec.hostId !== c.keyHost) {
    return reject("host-mismatch", `the record says host ${rec.hostId}, its key is under host ${c.keyHost}'s prefix`);
  }
  if (rec.endpointId !== c.endpointId) return reject("endpoint-mismatch", `the record says endpoint ${rec.endpointId}, its key ${c.endpointId}`);

  const live = ctx.host(rec.hostId);
  if (live !== undefined && live.layout !== layout) {
    // A host of the current layout copies its records to the previous one for older hosts; its own record counts.
    if (layout === "previous") return reject("superseded", `host ${rec.hostId} writes the current layout; this is its copy for older hosts`);
    return reject("host-not-alive", `host ${rec.hostId} is alive at the previous layout only, where its records are`);
  }
  if (live === undefined && ctx.requireAlive !== false) return reject("host-not-alive", `host ${rec.hostId} is not alive`);
  if (live !== undefined && rec.vtep !== live.record.vtep) {
    return reject("vtep-mismatch", `VTEP ${rec.vtep} is not host ${rec.hostId}'s (its record says ${live.record.vtep})`);
  }
  if (live === undefined && !isUsableVtep(rec.vtep)) return reject("bad-vtep", `VTEP ${rec.vtep} is not a unicast IPv4 address a host can have`);

  const net = ctx.network(c.subnet);
  const subnet = Subnet.parse(c.subnet);
  if (net === undefined || !subnet.ok) return reject("unknown-network", `the cluster has no network ${c.subnet}`);
  const ip = parseIpv4(rec.ip);
  if (!ip.ok || !subnet.value.contains(ip.value)) return reject("outside-subnet", `address ${rec.ip} is not in ${c.subnet}`);
  if (subnet.value.isReserved(ip.value)) return reject("reserved-address", `address ${rec.ip} is ${c.subnet}'s network or broadcast address`);
  const gateway = parseIpv4(net.gatewayCidr.split("/")[0] ?? "");
  if (gateway.ok && gateway.value === ip.value) return reject("gateway-address", `address ${rec.ip} is ${c.subnet}'s gateway`);
  if (!isUsableMac(rec.mac, rec.ip)) return reject("bad-mac", `MAC ${rec.mac} is not a unicast MAC address`);
  return { ok: true, value: rec };
}

/** The MAC the address implies (macFromIpv4), or else any unicast MAC but all zeros. */
function isUsableMac(text: string, ip: string): boolean {
  const mac = normalizeMac(text);
  if (mac === undefined) return false;
  if (mac === macFromIpv4(ip)) return true;
  const first = parseInt(mac.slice(0, 2), 16);
  return (first & 1) === 0 && mac !== "00:00:00:00:00:00";
}

/** The endpoint candidates among `by-host/` values (other shapes are skipped). */
export function byHostEndpoints(kvs: readonly KV[]): EndpointCandidate[] {
  return kvs.flatMap((kv) => {
    const k = parseByHostKey(kv.key);
    return k?.kind === "endpoint" ? [{ kv, keyHost: k.hostId, subnet: k.subnet, endpointId: k.endpointId }] : [];
  });
}

/** How many rejections the status endpoint shows. */
const RECENT_KEPT = 20;
/** How many key versions are remembered as logged (the oldest is forgotten first). */
const LOGGED_KEPT = 2_000;

/**
 * Logs each rejected record once per key and version (a watch delivers the
 * same records again and again) and keeps the latest few for the status
 * endpoint. "superseded" (a copy for older hosts) and "host-not-alive" (a
 * host that died, or a moment before the host list is read) are no fault and
 * are only logged at debug.
 */
export class RejectionLog {
  private readonly logged = new Set<string>();
  private readonly latest: { key: string; code: RejectCode; reason: string; at: string }[] = [];

  constructor(private readonly log: Logger) {}

  note(kv: KV, r: Rejected): void {
    const id = `${kv.key}@${kv.modifyIndex}`;
    if (this.logged.has(id)) return;
    this.logged.add(id);
    if (this.logged.size > LOGGED_KEPT) this.logged.delete(this.logged.values().next().value!);
    if (r.code === "superseded" || r.code === "host-not-alive") {
      this.log.debug({ key: kv.key, reason: r.reason }, "record ignored");
      return;
    }
    this.log.warn({ key: kv.key, index: kv.modifyIndex, rejected: r.code, reason: r.reason }, "cluster record rejected: it is not programmed or answered");
    this.latest.push({ key: kv.key, code: r.code, reason: r.reason, at: new Date().toISOString() });
    if (this.latest.length > RECENT_KEPT) this.latest.shift();
  }

  /** The latest rejections that are faults, oldest first. */
  recent(): { key: string; code: RejectCode; reason: string; at: string }[] {
    return [...this.latest];
  }
}
