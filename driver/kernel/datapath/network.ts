/**
 * A network's namespace and its two devices, `br0` (the gateway address)
 * and `vxlan0` (see vxlan.ts): created, adopted after a restart (existing
 * devices and their tables are kept, only what differs is fixed), and
 * removed. A namespace found holding another subnet is cleared first.
 *
 * Design note. A namespace lives as long as a mount of it does. The managed
 * plugin's run directory is Docker's propagated mount, which Docker unmounts
 * when the plugin is disabled: alone, that takes the namespaces, and with
 * them the running containers' networks. So each namespace is pinned a
 * second time under `keepDir` (the plugin's state folder, mounted `rshared`
 * from the host: the pin propagates to the host and stays there while the
 * plugin is disabled, upgraded or given new settings). A namespace missing
 * from runDir but pinned there is adopted, not made anew: its links, tables
 * and the containers' veths are still in it.
 */
import fs from "node:fs";
import path from "node:path";
import type { RtNetlinkSocket } from "netlink";
import type { NetworkSpec } from "../../contracts/datapath.js";
import { networkOf } from "../../../lib/net.js";
import {
  deleteLink,
  ensureAddress,
  ensureBridge,
  getLinkByName,
  listIpv4Addresses,
  listLinks,
  mustGetLink,
  setBridgePortLearning,
  setMaster,
  setUp,
} from "../links.js";
import { deleteFdbEntry, listFdbEntries } from "../neighbors.js";
import { createNamedNetns, deleteNamedNetns, isNetnsMount, openRtnetlinkIn, pinNetnsAt, sameNetns } from "../netns.js";
import { AF_INET, PLAIN, ipToBuffer, nlCall } from "../rtnetlink.js";
import { BRIDGE_NAME, VXLAN_NAME, ZERO_MAC, ipv4Cidr, networkNetnsPath, type DatapathContext, type NetworkState } from "./context.js";
import { ensureVxlanIn } from "./vxlan.js";

/** Builds or adopts the network `spec` (its subnet normalised), recording it in `networks`. */
export async function ensureNetwork(ctx: DatapathContext, networks: Map<string, NetworkState>, spec: NetworkSpec): Promise<void> {
  const { subnet, vni, mtu } = spec;
  if (!Number.isInteger(vni) || vni < 1 || vni > 0xffffff) throw new TypeError(`invalid VNI ${vni}`);
  const gw = ipv4Cidr(spec.gatewayCidr);
  if (networkOf(gw.ip, gw.prefix) !== subnet) {
    throw new TypeError(`gateway ${spec.gatewayCidr} is not in subnet ${subnet}`);
  }
  for (const [other, st] of networks) {
    if (other !== subnet && st.spec.vni === vni) {
      throw new Error(`datapath: VNI ${vni} of ${subnet} is already used by network ${other}`);
    }
  }

  const nsPath = networkNetnsPath(ctx.runDir, vni);
  let st = networks.get(subnet);
  if (st && st.nsPath === nsPath && !isNetnsMount(nsPath)) {
    // Deleted behind our back: start afresh.
    ctx.log.warn({ subnet, netns: nsPath }, "network namespace vanished; recreating it");
    st.nl.socket.close();
    networks.delete(subnet);
    st = undefined;
  }
  if (st && st.nsPath !== nsPath) {
    // Same network, new VNI: the old namespace is of no further use.
    ctx.log.info({ subnet, oldVni: st.spec.vni, vni }, "network VNI changed; replacing its namespace");
    await teardown(ctx, st);
    networks.delete(subnet);
    st = undefined;
  }

  const keepPath = ctx.keepDir === undefined ? undefined : networkNetnsPath(ctx.keepDir, vni);
  if (keepPath !== undefined && !isNetnsMount(nsPath) && isNetnsMount(keepPath)) {
    // It outlived this plugin's own mounts (a `docker plugin disable`): the same namespace, with its links, is adopted.
    pinNetnsAt(keepPath, nsPath);
    ctx.log.info({ subnet, vni, netns: nsPath, kept: keepPath }, "network namespace adopted from its pinned copy");
  }
  const existed = isNetnsMount(nsPath);
  if (!st) {
    createNamedNetns(nsPath);
    st = { spec, nsPath, nl: openRtnetlinkIn(nsPath), ready: false };
    networks.set(subnet, st);
  }
  if (keepPath !== undefined) {
    // A pin of an older namespace of this VNI (one removed while this copy could not be) is replaced.
    if (isNetnsMount(keepPath) && !sameNetns(keepPath, nsPath)) deleteNamedNetns(keepPath);
    pinNetnsAt(nsPath, keepPath);
  }
  st.spec = spec;
  st.ready = false;
  st.programmed = undefined;
  const log = ctx.log.child({ subnet, vni, netns: nsPath });
  const nl = st.nl;

  if (existed) {
    const foreign = await foreignAddresses(nl, subnet);
    if (foreign.length > 0) {
      log.warn({ foreign }, "namespace held another subnet; clearing it");
      await clearNamespace(nl);
    }
  }

  const brBefore = await getLinkByName(nl, BRIDGE_NAME);
  const br = await ensureBridge(nl, BRIDGE_NAME, mtu);
  await ensureOnlyAddress(nl, br.index, spec.gatewayCidr);

  const vx = await ensureVxlanIn(ctx, st, log);
  if (vx.master !== br.index) await setMaster(nl, vx.index, br.index);
  // Remote MACs are programmed statically on this port; learning them would go stale when they move.
  if ((await mustGetLink(nl, VXLAN_NAME)).bridgePortLearning !== false) await setBridgePortLearning(nl, vx.index, false);
  if (!vx.up) await setUp(nl, vx.index);
  if (!br.up) await setUp(nl, br.index);
  const lo = await getLinkByName(nl, "lo");
  if (lo && !lo.up) await setUp(nl, lo.index);

  // Unknown traffic is never flooded to other hosts.
  for (const e of await listFdbEntries(nl, vx.index)) {
    if (e.mac === ZERO_MAC) await deleteFdbEntry(nl, e);
  }

  st.ready = true;
  log.info({ adopted: existed && brBefore !== undefined, mtu, gateway: spec.gatewayCidr }, "network ready");
}

/** Removes the network (subnet normalised): the one in `networks`, or else the namespace holding the subnet. */
export async function removeNetwork(ctx: DatapathContext, networks: Map<string, NetworkState>, subnet: string): Promise<void> {
  const st = networks.get(subnet);
  if (st) {
    await teardown(ctx, st);
    networks.delete(subnet);
    return;
  }
  // Not adopted by this process (e.g. removed before ensure after a restart):
  // find its namespace by the subnet on br0.
  const nsPath = await findNamespaceOf(ctx.runDir, subnet);
  if (!nsPath) return;
  const nl = openRtnetlinkIn(nsPath);
  await teardown(ctx, { spec: { subnet, gatewayCidr: "", vni: 0, mtu: 0 }, nsPath, nl, ready: false });
}

/**
 * Deletes the devices first (so the VNI is free again at once, instead of
 * whenever the kernel gets round to destroying the namespace), then the
 * namespace. Closes the namespace's socket.
 */
async function teardown(ctx: DatapathContext, st: NetworkState): Promise<void> {
  try {
    await clearNamespace(st.nl);
  } finally {
    st.nl.socket.close();
  }
  if (ctx.keepDir !== undefined) deleteNamedNetns(networkNetnsPath(ctx.keepDir, st.spec.vni));
  deleteNamedNetns(st.nsPath);
  ctx.log.info({ subnet: st.spec.subnet, netns: st.nsPath }, "network removed");
}

/** IPv4 addresses on br0 outside `subnet`: the namespace was another network's. */
async function foreignAddresses(nl: RtNetlinkSocket, subnet: string): Promise<string[]> {
  const br = await getLinkByName(nl, BRIDGE_NAME);
  if (!br) return [];
  return (await listIpv4Addresses(nl, br.index)).filter((a) => networkOf(a.ip, a.prefix) !== subnet).map((a) => `${a.ip}/${a.prefix}`);
}

/** Deletes every link in the namespace except loopback. */
async function clearNamespace(nl: RtNetlinkSocket): Promise<void> {
  for (const l of await listLinks(nl)) {
    if (l.name !== "lo") await deleteLink(nl, l.index);
  }
}

/** Ensures `cidr` on the link and removes every other IPv4 address from it. */
async function ensureOnlyAddress(nl: RtNetlinkSocket, index: number, cidr: string): Promise<void> {
  const want = ipv4Cidr(cidr);
  for (const a of await listIpv4Addresses(nl, index)) {
    if (a.ip === want.ip && a.prefix === want.prefix) continue;
    const addr = ipToBuffer(a.ip);
    await nlCall(
      `delete address ${a.ip}/${a.prefix}`,
      `link #${index}`,
      () => nl.delAddress({ family: AF_INET, prefixlen: a.prefix, index }, { local: addr, address: addr }, PLAIN),
      ["EADDRNOTAVAIL"],
    );
  }
  await ensureAddress(nl, index, cidr);
}

/** The namespace under `runDir` whose br0 holds an address in `subnet`. */
async function findNamespaceOf(runDir: string, subnet: string): Promise<string | undefined> {
  const dir = path.join(runDir, "netns");
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  for (const name of names) {
    const p = path.join(dir, name);
    if (!name.startsWith("vni-") || !isNetnsMount(p)) continue;
    const nl = openRtnetlinkIn(p);
    try {
      const br = await getLinkByName(nl, BRIDGE_NAME);
      if (!br) continue;
      if ((await listIpv4Addresses(nl, br.index)).some((a) => networkOf(a.ip, a.prefix) === subnet)) return p;
    } finally {
      nl.socket.close();
    }
  }
  return undefined;
}
