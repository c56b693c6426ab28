import { createRtNetlink } from "netlink";
import { listIpv4Addresses, listLinks, type Ipv4Address, type LinkInfo } from "./links.js";
import { mainRoutes } from "./routes.js";
import { failure, success, type Result } from "../../lib/result.js";
import { messageOf } from "../../lib/errors.js";

export interface Underlay {
  /** This host's VTEP address: also its host id in the cluster. */
  vtep: string;
  ifname: string;
  ifindex: number;
  mtu: number;
}

/**
 * Finds the underlay: TSOVERLAY_ADVERTISE_ADDR (must be on a local interface), else
 * TSOVERLAY_ADVERTISE_IFACE's first IPv4 address, else the default route's interface.
 * Its MTU sizes the overlay (MTU − 50), instead of a hard-wired 1450.
 */
export async function resolveUnderlay(opts: { advertiseAddr: string; advertiseIface: string }): Promise<Result<Underlay>> {
  const nl = createRtNetlink();
  try {
    const links = await listLinks(nl);
    const addrs = await listIpv4Addresses(nl);
    const byIndex = (i: number): LinkInfo | undefined => links.find((l) => l.index === i);
    let pick: Ipv4Address | undefined;
    if (opts.advertiseAddr !== "") {
      pick = addrs.find((a) => a.ip === opts.advertiseAddr);
      if (pick === undefined) return failure(`TSOVERLAY_ADVERTISE_ADDR ${opts.advertiseAddr} is not an address of this host`);
    } else if (opts.advertiseIface !== "") {
      const link = links.find((l) => l.name === opts.advertiseIface);
      if (link === undefined) return failure(`TSOVERLAY_ADVERTISE_IFACE ${opts.advertiseIface} does not exist`);
      pick = addrs.find((a) => a.index === link.index);
      if (pick === undefined) return failure(`TSOVERLAY_ADVERTISE_IFACE ${opts.advertiseIface} has no IPv4 address`);
    } else {
      const oif = (await mainRoutes(nl, 0)).find((r) => r.oif !== undefined)?.oif;
      pick = oif === undefined ? undefined : addrs.find((a) => a.index === oif);
      if (pick === undefined) return failure("no TSOVERLAY_ADVERTISE_ADDR/TSOVERLAY_ADVERTISE_IFACE set and no IPv4 default route to take the underlay from");
    }
    const link = byIndex(pick.index);
    if (link === undefined) return failure(`underlay interface ${pick.index} vanished`);
    return success({ vtep: pick.ip, ifname: link.name, ifindex: link.index, mtu: link.mtu ?? 1500 });
  } catch (e) {
    return failure(`reading the underlay from the kernel failed: ${messageOf(e)}`);
  } finally {
    nl.socket.close();
  }
}
