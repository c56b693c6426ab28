/**
 * Endpoints: one veth pair each, the bridge end (`ve…`) on br0 in the
 * network's namespace, the container end (`tso…`) left down in the host
 * namespace for Docker to move into the container.
 *
 * Design note: an endpoint's address and MAC may have belonged to a
 * container on another host until a moment ago, and br0, vxlan0's FDB and
 * its neighbor table may still say so. Those entries go as soon as the
 * endpoint takes the MAC, before any peer sync, so the first frame for the
 * new container is delivered locally instead of being sent back out or
 * dropped (see the design note in kernel-datapath.ts).
 */
import type { RtNetlinkSocket } from "netlink";
import { endpointIfNames, type EndpointLinks, type EndpointSpec } from "../../contracts/datapath.js";
import { createVethPair, deleteLink, getLinkByName, mustGetLink, setMaster, setMtu, setUp } from "../links.js";
import { deleteBridgeFdb, deleteFdbEntry, deleteNeighbor, listFdbEntries } from "../neighbors.js";
import { withNetnsFd } from "../netns.js";
import { NetlinkError, PLAIN, macToBuffer, nlCall } from "../rtnetlink.js";
import { BRIDGE_NAME, VXLAN_NAME, canonicalMac, ipv4Cidr, type DatapathContext, type NetworkState } from "./context.js";

/** Creates the pair if needed (recreating a half-made one) and fixes MTU, MAC, master and up state. */
export async function ensureEndpoint(ctx: DatapathContext, st: NetworkState, ep: EndpointSpec, mtu: number): Promise<EndpointLinks> {
  const names = endpointIfNames(ep.endpointId);
  const { hostIfName, bridgeIfName } = names;
  const mac = canonicalMac(ep.mac);
  const host = ctx.host();
  const nl = st.nl;

  let brEnd = await getLinkByName(nl, bridgeIfName);
  let hostEnd = await getLinkByName(host, hostIfName);
  if (hostEnd && hostEnd.kind !== "veth") {
    throw new NetlinkError("ensure endpoint", `link ${hostIfName}`, "EEXIST", `exists with kind ${hostEnd.kind ?? "(none)"}`);
  }
  if (brEnd && brEnd.kind !== "veth") {
    await deleteLink(nl, brEnd.index);
    brEnd = undefined;
  }
  // Both ends visible but not each other's peer, or the host end without
  // its bridge end: left-overs of an interrupted run. Start over.
  if (hostEnd && (!brEnd || hostEnd.peerIndex !== brEnd.index || brEnd.peerIndex !== hostEnd.index)) {
    ctx.log.warn({ subnet: st.spec.subnet, hostIfName, bridgeIfName }, "stale veth end; recreating the pair");
    await deleteLink(host, hostEnd.index);
    if (brEnd) await deleteLink(nl, brEnd.index);
    hostEnd = brEnd = undefined;
  }

  if (!brEnd) {
    await withNetnsFd(st.nsPath, (fd) => createVethPair(host, hostIfName, bridgeIfName, mtu, fd));
    hostEnd = await getLinkByName(host, hostIfName);
    brEnd = await mustGetLink(nl, bridgeIfName);
    ctx.log.info({ subnet: st.spec.subnet, endpointId: ep.endpointId, hostIfName, bridgeIfName, mac }, "endpoint created");
  }

  await forgetRemote(nl, ep);

  // The bridge end: right MTU, on br0, up.
  const br = await mustGetLink(nl, BRIDGE_NAME);
  if (brEnd.mtu !== mtu) await setMtu(nl, brEnd.index, mtu);
  if (brEnd.master !== br.index) await setMaster(nl, brEnd.index, br.index);
  if (!brEnd.up) await setUp(nl, brEnd.index);

  // The container end, if still here (Docker moves it into the container):
  // right MTU and MAC, otherwise untouched (down, unaddressed).
  if (hostEnd) {
    if (hostEnd.mtu !== mtu) await setMtu(host, hostEnd.index, mtu);
    if (hostEnd.mac !== mac) {
      const index = hostEnd.index;
      await nlCall(`set address ${mac}`, `link ${hostIfName}`, () => host.setLink({ index }, { address: macToBuffer(mac) }, PLAIN));
    }
  }
  return names;
}

/** Deletes the pair through its bridge end (deleting one end of a veth deletes its peer, wherever it is). */
export async function removeEndpoint(ctx: DatapathContext, st: NetworkState, endpointId: string): Promise<void> {
  const { bridgeIfName } = endpointIfNames(endpointId);
  await deleteLink(st.nl, bridgeIfName);
  ctx.log.info({ subnet: st.spec.subnet, endpointId, bridgeIfName }, "endpoint removed");
}

/**
 * The endpoint's address and MAC are local now: whatever the tables still
 * say about them behind vxlan0 (a container that had them on another host)
 * goes, so frames for the new container are not sent back out or dropped.
 */
async function forgetRemote(nl: RtNetlinkSocket, ep: EndpointSpec): Promise<void> {
  const vx = await getLinkByName(nl, VXLAN_NAME);
  if (!vx) return;
  const ip = ipv4Cidr(ep.addressCidr).ip;
  const mac = canonicalMac(ep.mac);
  await deleteBridgeFdb(nl, vx.index, mac);
  for (const e of await listFdbEntries(nl, vx.index)) {
    if (e.mac === mac) await deleteFdbEntry(nl, e);
  }
  await deleteNeighbor(nl, { ifindex: vx.index, ip });
}
