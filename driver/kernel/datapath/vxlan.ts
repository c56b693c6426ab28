/**
 * A network's `vxlan0`: adopted when the namespace already holds a matching
 * one, otherwise created in the host namespace (so its UDP socket is bound
 * there, where the underlay is) under a temporary name, then moved in.
 *
 * Design note: the kernel lets only one device per VNI and port exist among
 * those created in a namespace, wherever they live now. After an overlay
 * namespace disappears the kernel destroys its devices asynchronously, so
 * the VNI can stay taken for a moment: creation is retried for a while. A
 * device of ours left behind in the host namespace (temporary-name prefix)
 * is deleted; anyone else's is reported and left alone.
 */
import type { RtNetlinkSocket } from "netlink";
import type { Logger } from "../../../lib/log.js";
import {
  deleteLink,
  ensureVxlan,
  getLinkByName,
  listLinks,
  moveLinkToNetns,
  mustGetLink,
  setMtu,
  vxlanMismatch,
  type LinkInfo,
  type VxlanSpec,
} from "../links.js";
import { withNetnsFd } from "../netns.js";
import { NetlinkError } from "../rtnetlink.js";
import { TEMP_VXLAN_PREFIX, VXLAN_NAME, tempVxlanName, type DatapathContext, type NetworkState } from "./context.js";

/** Waits between attempts while the VNI is busy (a device being destroyed). */
const VNI_BUSY_RETRY_MS = [50, 100, 200, 400, 800, 1_000, 1_500];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Adopts a matching `vxlan0` in the namespace, or creates one in the host namespace and moves it in. */
export async function ensureVxlanIn(ctx: DatapathContext, st: NetworkState, log: Logger): Promise<LinkInfo> {
  const { nl, spec } = st;
  const tmpName = tempVxlanName(spec.vni);
  const want: VxlanSpec = {
    name: tmpName,
    vni: spec.vni,
    dstPort: ctx.vxlanPort,
    local: spec.tunnelSource ?? ctx.vtepAddr,
    learning: false,
    proxy: true,
    mtu: spec.mtu,
    // Not bound to the underlay device when it sends into the tunnel: its route is WireGuard's.
    ...(ctx.underlayIfindex !== undefined && spec.tunnelSource === undefined ? { underlay: ctx.underlayIfindex } : {}),
  };
  const existing = await getLinkByName(nl, VXLAN_NAME);
  const mismatch = existing && vxlanMismatch(existing, want);
  if (existing && mismatch === undefined) {
    if (existing.mtu !== spec.mtu) await setMtu(nl, existing.index, spec.mtu);
    return mustGetLink(nl, VXLAN_NAME);
  }
  if (existing) {
    log.warn({ mismatch }, "vxlan0 differs from the spec; recreating it");
    await deleteLink(nl, existing.index);
  }
  // Any other VXLAN device in our namespace (e.g. a half-finished rename) goes too.
  for (const l of await listLinks(nl)) {
    if (l.kind === "vxlan") await deleteLink(nl, l.index);
  }

  const host = ctx.host();
  for (let attempt = 0; ; attempt++) {
    try {
      // Adopts (or replaces) a device left under the temporary name by a crash.
      await ensureVxlan(host, want);
      break;
    } catch (err) {
      if (!isVniBusy(err)) throw err;
      const removed = await removeStaleHostVxlan(ctx, host, spec.vni, tmpName, log);
      if (removed) continue;
      const delay = VNI_BUSY_RETRY_MS[attempt];
      if (delay === undefined) {
        throw new NetlinkError(
          "create vxlan",
          `link ${tmpName}`,
          "EEXIST",
          `VNI ${spec.vni} port ${ctx.vxlanPort} is taken by a device created in the host namespace ` +
            `that lives in another namespace (a stale overlay namespace outside ${ctx.runDir}?)`,
        );
      }
      log.debug({ attempt, delay }, "VNI busy (device being destroyed?); retrying");
      await sleep(delay);
    }
  }
  await withNetnsFd(st.nsPath, (fd) => moveLinkToNetns(host, tmpName, fd, VXLAN_NAME));
  log.info({ vtep: want.local, port: ctx.vxlanPort }, "vxlan0 created in the host namespace and moved in");
  return mustGetLink(nl, VXLAN_NAME);
}

/**
 * The kernel refused the VNI/port: find the conflicting device in the host
 * namespace. Ours (temporary-name prefix) is deleted; anyone else's is
 * reported, not touched. Returns true if something was removed.
 */
async function removeStaleHostVxlan(ctx: DatapathContext, host: RtNetlinkSocket, vni: number, tmpName: string, log: Logger): Promise<boolean> {
  const conflicts = (await listLinks(host)).filter(
    (l) => l.kind === "vxlan" && l.vxlan?.vni === vni && l.vxlan.dstPort === ctx.vxlanPort && l.name !== tmpName,
  );
  let removed = false;
  for (const l of conflicts) {
    if (!l.name.startsWith(TEMP_VXLAN_PREFIX)) {
      throw new NetlinkError(
        "create vxlan",
        `link ${tmpName}`,
        "EEXIST",
        `VNI ${vni} port ${ctx.vxlanPort} is already used by host device ${l.name}, which is not ours`,
      );
    }
    log.warn({ stale: l.name }, "deleting stale host-side VXLAN device holding the VNI");
    await deleteLink(host, l.index);
    removed = true;
  }
  return removed;
}

/**
 * The kernel refused to create a VXLAN device because another one (possibly
 * in another namespace) was created here with the same VNI and port. Not
 * ensureVxlan's own "name exists with another kind" EEXIST (op "ensure vxlan").
 */
function isVniBusy(err: unknown): boolean {
  return err instanceof NetlinkError && err.code === "EEXIST" && err.op === "create vxlan";
}
