import { createRtNetlink, type RtNetlinkSocket } from "netlink";
import { AF_INET, bufferToIp, listLinks, type LinkInfo } from "./links.js";
import { failure, success, type Result } from "../../lib/result.js";

export interface Underlay {
  /** This host's VTEP address: also its host id in the cluster. */
  vtep: string;
  ifname: string;
  ifindex: number;
  mtu: number;
}

interface Ipv4OnLink {
  ifindex: number;
  ip: string;
}

async function ipv4Addresses(nl: RtNetlinkSocket): Promise<Ipv4OnLink[]> {
  const msgs = await nl.getAddresses();
  return msgs.flatMap((m) => {
    const raw = m.attrs.local ?? m.attrs.address;
    if (m.data.family !== AF_INET || raw === undefined || m.data.index === undefined) return [];
    return [{ ifindex: m.data.index, ip: bufferToIp(raw) }];
  });
}

async function defaultRouteIfindex(nl: RtNetlinkSocket): Promise<number | undefined> {
  const routes = await nl.getRoutes({ family: AF_INET });
  const def = routes.find((r) => r.data.dstLen === 0 && r.attrs.oif !== undefined && (r.attrs.table ?? r.data.table) === 254);
  return def?.attrs.oif;
}

/**
 * Finds the underlay: ADVERTISE_ADDR (must be on a local interface), else
 * ADVERTISE_IFACE's first IPv4 address, else the default route's interface.
 * Its MTU sizes the overlay (MTU − 50), instead of a hard-wired 1450.
 */
export async function resolveUnderlay(opts: { advertiseAddr: string; advertiseIface: string }): Promise<Result<Underlay>> {
  const nl = createRtNetlink();
  try {
    const links = await listLinks(nl);
    const addrs = await ipv4Addresses(nl);
    const byIndex = (i: number): LinkInfo | undefined => links.find((l) => l.index === i);
    let pick: Ipv4OnLink | undefined;
    if (opts.advertiseAddr !== "") {
      pick = addrs.find((a) => a.ip === opts.advertiseAddr);
      if (pick === undefined) return failure(`ADVERTISE_ADDR ${opts.advertiseAddr} is not an address of this host`);
    } else if (opts.advertiseIface !== "") {
      const link = links.find((l) => l.name === opts.advertiseIface);
      if (link === undefined) return failure(`ADVERTISE_IFACE ${opts.advertiseIface} does not exist`);
      pick = addrs.find((a) => a.ifindex === link.index);
      if (pick === undefined) return failure(`ADVERTISE_IFACE ${opts.advertiseIface} has no IPv4 address`);
    } else {
      const oif = await defaultRouteIfindex(nl);
      pick = oif === undefined ? undefined : addrs.find((a) => a.ifindex === oif);
      if (pick === undefined) return failure("no ADVERTISE_ADDR/ADVERTISE_IFACE set and no IPv4 default route to take the underlay from");
    }
    const link = byIndex(pick.ifindex);
    if (link === undefined) return failure(`underlay interface ${pick.ifindex} vanished`);
    return success({ vtep: pick.ip, ifname: link.name, ifindex: link.index, mtu: link.mtu ?? 1500 });
  } catch (e) {
    return failure(`reading the underlay from the kernel failed: ${(e as Error).message}`);
  } finally {
    nl.socket.close();
  }
}
