import { eventually } from "../../support/eventually.js";
import { dockerOk, run, type LabHost } from "./lab.js";

export interface StatusPort {
  endpointId: string;
  proto: string;
  hostIp: string;
  hostPort: number;
  containerIp: string;
  containerPort: number;
  kernelDnat: boolean;
}

export type PluginStatus = { ready: true; ports: StatusPort[] } | { ready: false; reason: string };

/** The plugin's status endpoint on a host's legacy socket: how users see published ports. */
export async function pluginStatus(host: LabHost): Promise<PluginStatus | undefined> {
  const r = await run("curl", ["-sS", "--max-time", "5", "--unix-socket", `${host.pluginsDir}/tsoverlay.sock`, "http://plugin/tsoverlay/status"]);
  if (r.code !== 0) return undefined;
  try {
    return JSON.parse(r.stdout) as PluginStatus;
  } catch {
    return undefined;
  }
}

/** The published ports a host's plugin reports (none while it is not ready). */
export async function publishedPorts(host: LabHost): Promise<StatusPort[]> {
  const s = await pluginStatus(host);
  return s?.ready ? s.ports : [];
}

export async function endpointId(host: LabHost, container: string, network: string): Promise<string> {
  return dockerOk(host, ["inspect", "-f", `{{(index .NetworkSettings.Networks "${network}").EndpointID}}`, container]);
}

/**
 * Runs `attempt` until `ok` accepts its result (a freshly started container's server may not listen yet),
 * for up to `timeoutMs`; resolves with the last result either way, for the caller's assertion to show.
 */
export async function retry<T>(attempt: () => Promise<T>, ok: (t: T) => boolean, timeoutMs = 30_000): Promise<T> {
  let last = await attempt();
  if (ok(last)) return last;
  await eventually("an attempt that passes", async () => ok((last = await attempt())), { timeoutMs, everyMs: 250 }).catch(() => undefined);
  return last;
}
