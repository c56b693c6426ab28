/**
 * The host side all networks share: the gateway bridge (fixed MAC, the
 * gateway subnet's first address, up) and the host's IPv4 forwarding.
 */
import fs from "node:fs";
import path from "node:path";
import type { RtNetlinkSocket } from "netlink";
import { deleteLink, ensureAddress, ensureBridge, getLinkByName, setUp, type LinkInfo } from "../links.js";
import { readSysctlIn, writeSysctlIn } from "../netns.js";
import { readSysctl } from "../host-checks.js";
import { PLAIN, macToBuffer, nlCall } from "../rtnetlink.js";

/** Ensures the bridge with `mac`, `cidr` and up; returns it as found before the changes. */
export async function ensureGatewayBridge(host: RtNetlinkSocket, name: string, cidr: string, mac: string): Promise<LinkInfo> {
  const b = await ensureBridge(host, name);
  // A bridge without an explicitly set MAC takes its lowest port's, so
  // removing one network's leg could change it under the others, whose
  // ARP caches would then point at a MAC nobody answers to. Fixed MAC.
  if (b.mac !== mac) {
    await nlCall(`set address ${mac}`, `link ${name}`, () => host.setLink({ index: b.index }, { address: macToBuffer(mac) }, PLAIN));
  }
  await ensureAddress(host, b.index, cidr);
  if (!b.up) await setUp(host, b.index);
  return b;
}

export async function removeGatewayBridge(host: RtNetlinkSocket, name: string): Promise<void> {
  const br = await getLinkByName(host, name);
  if (br?.kind === "bridge") await deleteLink(host, br.index);
}

/**
 * Switches the host's net.ipv4.ip_forward on (in `hostNetnsPath` when tests
 * play the host in a namespace); true when it was off. Never switched back.
 */
export function enableHostForwarding(hostNetnsPath: string | undefined, procRoot: string): boolean {
  if (hostNetnsPath !== undefined) {
    if (readSysctlIn(hostNetnsPath, "net/ipv4/ip_forward", procRoot) === "1") return false;
    writeSysctlIn(hostNetnsPath, "net/ipv4/ip_forward", "1", procRoot);
    return true;
  }
  // Our own namespace: /proc/sys/net resolves against the calling thread's.
  if (readSysctl("net/ipv4/ip_forward", procRoot) === "1") return false;
  fs.writeFileSync(path.join(procRoot, "sys", "net", "ipv4", "ip_forward"), "1");
  return true;
}
