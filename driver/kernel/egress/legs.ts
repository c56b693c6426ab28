/**
 * A network's way out: a veth "leg" from its namespace (`gw0`, address
 * first host + slot of the gateway subnet, default route via the bridge) to
 * the host bridge (`tsog<slot>`, an isolated port), and the host's route
 * back to the network's subnet through that leg. Everything is read back
 * from the kernel first, so a re-ensure fixes only what is missing or stale.
 */
import { ifla, type RtNetlinkSocket } from "netlink";
import type { Logger } from "../../../lib/log.js";
import { formatIpv4, type Subnet } from "../../../lib/net.js";
import { createVethPair, deleteLink, ensureAddress, getLinkByName, listLinks, mustGetLink, setMaster, setUp, type LinkInfo } from "../links.js";
import { openRtnetlinkIn, readSysctlIn, withNetnsFd, writeSysctlIn } from "../netns.js";
import { mainRoutes, routeAttrs, routeData } from "../routes.js";
import { CREATE_EXCL, CREATE_REPLACE, PLAIN, encodeAttrs, nlCall } from "../rtnetlink.js";
import { egressStep } from "./errors.js";

/** Name of a network's leg inside its namespace. */
const NS_LEG_NAME = "gw0";
/** Host-side legs are `tsog<slot>`. */
const HOST_LEG_PREFIX = "tsog";
const HOST_LEG_RE = /^tsog([1-9][0-9]{0,9})$/;

/** Host-side leg name of a slot. */
export function hostLegName(slot: number): string {
  return `${HOST_LEG_PREFIX}${slot}`;
}

/** True for a name of the host-side leg form (which the bridge must not take). */
export function isHostLegName(name: string): boolean {
  return HOST_LEG_RE.test(name);
}

/** The host side every leg attaches to. */
export interface GatewaySide {
  host: RtNetlinkSocket;
  bridge: LinkInfo;
  bridgeName: string;
  bridgeIp: string;
  /** Prefix length of the gateway subnet. */
  prefix: number;
  procRoot: string;
}

export interface LegSpec {
  /** The network's subnet, as errors name it. */
  network: string;
  slot: number;
  nsPath: string;
  /** The leg's address in the gateway subnet. */
  legIp: string;
  /** No default route: the leg's own subnet (the bridge's address) is all the namespace reaches. */
  hostOnly?: boolean;
}

/** The veth pair, its host end on the bridge (isolated, up), its namespace end addressed, forwarding and the default route. */
export async function ensureLeg(gw: GatewaySide, leg: LegSpec, log: Logger): Promise<void> {
  const { network, nsPath, legIp } = leg;
  const { host, bridge: br } = gw;
  const hostLeg = hostLegName(leg.slot);
  const nsl = await egressStep(network, `opening rtnetlink in ${nsPath}`, () => openRtnetlinkIn(nsPath));
  try {
    const { hostEnd, nsEnd } = await egressStep(network, `ensuring veth ${hostLeg} <-> ${NS_LEG_NAME}`, () => ensureVethPair(host, nsl, hostLeg, nsPath, log));

    await egressStep(network, `attaching ${hostLeg} to ${gw.bridgeName}`, async () => {
      if (hostEnd.master !== br.index) await setMaster(host, hostEnd.index, br.index);
      await ensurePortIsolated(host, hostEnd.index, hostLeg);
      if (!hostEnd.up) await setUp(host, hostEnd.index);
    });

    await egressStep(network, `configuring ${NS_LEG_NAME} ${legIp}/${gw.prefix} in ${nsPath}`, async () => {
      await ensureAddress(nsl, nsEnd.index, `${legIp}/${gw.prefix}`);
      if (!nsEnd.up) await setUp(nsl, nsEnd.index);
    });

    await egressStep(network, `enabling net.ipv4.ip_forward in ${nsPath}`, () => {
      if (readSysctlIn(nsPath, "net/ipv4/ip_forward", gw.procRoot) !== "1") {
        writeSysctlIn(nsPath, "net/ipv4/ip_forward", "1", gw.procRoot);
      }
    });

    await egressStep(network, `${leg.hostOnly === true ? "no" : "a"} default route via ${gw.bridgeIp} in ${nsPath}`, async () => {
      const routes = await mainRoutes(nsl, 0);
      if (leg.hostOnly === true) {
        for (const r of routes)
          await nlCall("delete default route", `link ${NS_LEG_NAME}`, () => nsl.delRoute(routeData(0), r.oif === undefined ? {} : { oif: r.oif }, PLAIN), [
            "ESRCH",
            "ENOENT",
          ]);
        return;
      }
      const ours = routes.some((r) => r.gateway === gw.bridgeIp && r.oif === nsEnd.index);
      if (ours && routes.length === 1) return;
      await nlCall("replace default route", `link ${NS_LEG_NAME}`, () =>
        nsl.newRoute(routeData(0), routeAttrs("0.0.0.0", 0, gw.bridgeIp, nsEnd.index), CREATE_REPLACE),
      );
    });
  } finally {
    nsl.socket.close();
  }
}

/** tsog<slot> on the host, gw0 in the network namespace, each other's peer; anything else is recreated. */
async function ensureVethPair(
  host: RtNetlinkSocket,
  nsl: RtNetlinkSocket,
  hostLeg: string,
  nsPath: string,
  log: Logger,
): Promise<{ hostEnd: LinkInfo; nsEnd: LinkInfo }> {
  let h = await getLinkByName(host, hostLeg);
  let n = await getLinkByName(nsl, NS_LEG_NAME);
  if (h && h.kind !== "veth") throw new Error(`${hostLeg} exists with kind ${h.kind ?? "(none)"}, not ours`);
  if (n && n.kind !== "veth") {
    await deleteLink(nsl, n.index);
    n = undefined;
  }
  // A leg without its partner, or two legs that are not each other's
  // peer: left-overs of an interrupted run or a reused slot. Start over.
  if ((h || n) && !(h && n && h.peerIndex === n.index && n.peerIndex === h.index)) {
    log.warn({ hostLeg, hostEnd: h?.index, nsEnd: n?.index }, "stale egress leg; recreating the pair");
    if (h) await deleteLink(host, h.index);
    if (n) await deleteLink(nsl, n.index);
    h = undefined;
  }
  if (!h) {
    await withNetnsFd(nsPath, (fd) => createVethPair(host, hostLeg, NS_LEG_NAME, undefined, fd));
    log.info({ hostLeg, nsLeg: NS_LEG_NAME }, "egress leg created");
  }
  return { hostEnd: await mustGetLink(host, hostLeg), nsEnd: await mustGetLink(nsl, NS_LEG_NAME) };
}

/**
 * Marks a bridge port "isolated": isolated ports forward only to
 * non-isolated ones (the bridge itself), so network legs cannot reach each
 * other at layer 2, where the FORWARD DROP would never see the traffic.
 */
async function ensurePortIsolated(nl: RtNetlinkSocket, index: number, name: string): Promise<void> {
  const msgs = await nlCall("get", `link ${name}`, () => nl.getLink({ index }, {}, PLAIN));
  const li = msgs?.[0]?.attrs.linkinfo;
  const slave = li ? ifla.parseInfo(li) : undefined;
  if (slave?.slaveKind === "bridge" && slave.slaveData) {
    const port = ifla.parseBridgePort(slave.slaveData);
    if (port.isolated?.[0] === 1) return;
  }
  const linkinfo = encodeAttrs(
    ifla.formatInfo({
      slaveKind: "bridge",
      slaveData: encodeAttrs(ifla.formatBridgePort({ isolated: Buffer.from([1]) })),
    }),
  );
  // RTM_NEWLINK on an existing index without CREATE changes it (like `ip link set … type bridge_slave`).
  await nlCall("set bridge port isolated", `link ${name}`, () => nl.newLink({ index }, { linkinfo }, PLAIN));
}

/** The host routes the network's subnet via its leg; a route of someone else's for it is an error. */
export async function ensureHostRoute(gw: GatewaySide, network: string, cidr: Subnet, legIp: string): Promise<void> {
  const { host, bridge: br } = gw;
  await egressStep(network, `host route ${network} via ${legIp} dev ${gw.bridgeName}`, async () => {
    const have = (await mainRoutes(host, cidr.prefix)).filter((r) => r.dst === formatIpv4(cidr.network));
    if (have.some((r) => r.gateway === legIp && r.oif === br.index)) return;
    const foreign = have.find((r) => r.oif !== br.index);
    if (foreign) {
      throw new Error(`the host already routes ${network} via ${foreign.gateway ?? "(direct)"} on link #${foreign.oif ?? "?"}, not through ${gw.bridgeName}`);
    }
    // Ours with another leg (slot changed behind our back): replaced in place.
    await nlCall("add route", `link ${gw.bridgeName}`, () =>
      host.newRoute(routeData(cidr.prefix), routeAttrs(formatIpv4(cidr.network), cidr.prefix, legIp, br.index), have.length ? CREATE_REPLACE : CREATE_EXCL),
    );
  });
}

/** Deletes the host's route to the network via its leg, if the bridge and the route are there. */
export async function deleteHostRoute(host: RtNetlinkSocket, bridgeName: string, network: string, cidr: Subnet, legIp: string): Promise<void> {
  await egressStep(network, `deleting host route ${network} via ${legIp}`, async () => {
    const br = await getLinkByName(host, bridgeName);
    if (br?.kind !== "bridge") return;
    const have = (await mainRoutes(host, cidr.prefix)).filter((r) => r.dst === formatIpv4(cidr.network) && r.gateway === legIp && r.oif === br.index);
    if (have.length === 0) return;
    await nlCall(
      "delete route",
      `link ${bridgeName}`,
      () => host.delRoute(routeData(cidr.prefix), routeAttrs(formatIpv4(cidr.network), cidr.prefix, legIp, br.index), PLAIN),
      ["ESRCH", "ENOENT"],
    );
  });
}

/** Deletes the host-side leg of a slot (its namespace end goes with it). */
export async function removeLeg(host: RtNetlinkSocket, network: string, slot: number): Promise<void> {
  const name = hostLegName(slot);
  await egressStep(network, `deleting ${name}`, async () => {
    const l = await getLinkByName(host, name);
    if (l?.kind === "veth") await deleteLink(host, l.index);
  });
}

/** How many host-side legs exist (found in the kernel, not in memory). */
export async function countHostLegs(host: RtNetlinkSocket): Promise<number> {
  return (await listLinks(host)).filter((l) => isHostLegName(l.name) && l.kind === "veth").length;
}
