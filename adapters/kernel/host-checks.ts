import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { createRtNetlink } from "netlink";
import { mustGetLink } from "./links.js";

/**
 * Read-only looks at the host for `tsoverlay doctor`: sysctls, kernel
 * modules, an interface's MTU. The plugin runs in the host's network
 * namespace, so /proc/sys/net under the host's /proc (TSOVERLAY_PROC) is the
 * host's own.
 */

/** A sysctl under net/… ("net/ipv4/ip_forward"), or undefined when the key does not exist. */
export function hostSysctl(procRoot: string, key: string): string | undefined {
  try {
    return readFileSync(path.join(procRoot, "sys", ...key.split("/")), "utf8").trim();
  } catch {
    return undefined;
  }
}

/** "loaded" (a module), "builtin" (compiled in: /sys/module only), or "absent" (it loads on first use, if it exists at all). */
export function moduleState(procRoot: string, name: string): "loaded" | "builtin" | "absent" {
  let modules = "";
  try {
    modules = readFileSync(path.join(procRoot, "modules"), "utf8");
  } catch {
    // no /proc/modules (a kernel without modules): everything is built in or absent
  }
  if (modules.split("\n").some((l) => l.startsWith(`${name} `))) return "loaded";
  return existsSync(path.join("/sys/module", name)) ? "builtin" : "absent";
}

/** The interface's MTU now, and its name. */
export async function linkMtu(ifindex: number): Promise<{ name: string; mtu: number }> {
  const nl = createRtNetlink();
  try {
    const link = await mustGetLink(nl, ifindex, "read the MTU of");
    return { name: link.name, mtu: link.mtu ?? 1500 };
  } finally {
    nl.socket.close();
  }
}
