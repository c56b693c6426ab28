/**
 * IPv4 routes of the main table over an rtnetlink socket: read back (to
 * decide whether anything needs doing) and the message parts of a static
 * unicast route. Callers send them through `nlCall`, naming what the route is for.
 */
import type { RtNetlinkSocket } from "netlink";
import { ipFromBytes } from "../../lib/net.js";
import { AF_INET, PLAIN, ipToBuffer, nlCall } from "./rtnetlink.js";

const MAIN_TABLE = 254;

export interface Route4 {
  dst: string;
  gateway?: string;
  oif?: number;
}

/** IPv4 routes of the main table with prefix length `dstLen` (0: default routes). */
export async function mainRoutes(nl: RtNetlinkSocket, dstLen: number): Promise<Route4[]> {
  const msgs = await nlCall("list routes", "main table", () => nl.getRoutes({ family: AF_INET }, undefined, PLAIN));
  const out: Route4[] = [];
  for (const m of msgs ?? []) {
    if ((m.attrs.table ?? m.data.table) !== MAIN_TABLE || (m.data.dstLen ?? 0) !== dstLen) continue;
    const r: Route4 = { dst: m.attrs.dst && m.attrs.dst.length === 4 ? ipFromBytes(m.attrs.dst) : "0.0.0.0" };
    if (m.attrs.gateway && m.attrs.gateway.length === 4) r.gateway = ipFromBytes(m.attrs.gateway);
    if (m.attrs.oif !== undefined) r.oif = m.attrs.oif;
    out.push(r);
  }
  return out;
}

/** The rtmsg of a static unicast route in the main table. */
export function routeData(dstLen: number) {
  return {
    family: AF_INET,
    dstLen,
    table: MAIN_TABLE,
    protocol: "STATIC",
    scope: "UNIVERSE",
    type: "UNICAST",
  } as const;
}

/** The attributes of `dst/dstLen via gateway dev #oif` (no RTA_DST for a default route). */
export function routeAttrs(dst: string, dstLen: number, gateway: string, oif: number) {
  return {
    ...(dstLen > 0 ? { dst: ipToBuffer(dst) } : {}),
    gateway: ipToBuffer(gateway),
    oif,
  };
}
