import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { createRtNetlink } from "netlink";
import { mustGetLink } from "./links.js";

/**
 * Read-only looks at the host: sysctls of the plugin's own namespace, kernel
 * modules, an interface's MTU (for `tsoverlay doctor`, and egress's check of
 * ip_forward). The plugin runs in the host's network namespace, so its own
 * /proc/sys/net is the host's. Other namespaces: `readSysctlIn` in netns.ts.
 */

/** A sysctl of this process's own namespace ("net/ipv4/ip_forward"); undefined when the key does not exist. */
export function readSysctl(key: string, procRoot = "/proc"): string | undefined {
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

/**
 * wireguard-go's TUN device. The managed plugin has it only if config.json
 * declared it when the plugin was installed: `docker plugin upgrade` keeps
 * the devices of the release first installed, and `docker plugin set`
 * cannot add one.
 */
export const TUN_DEVICE = "/dev/net/tun";
export const NO_TUN_FIX =
  "reinstall the plugin (docker plugin rm, then docker plugin install; README: Upgrading and changing settings): `docker plugin upgrade` from a release that did not declare /dev/net/tun keeps that release's devices";

export function hasTunDevice(device = TUN_DEVICE): boolean {
  return existsSync(device);
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
