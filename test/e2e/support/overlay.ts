import { keys } from "../../../domain/cluster/keys.js";
import { consulGetJson, docker, dockerOk, type Lab, type LabHost } from "./lab.js";

export const IPAM = ["--ipam-driver", "tsoverlay"];

/** `docker network create -d tsoverlay --ipam-driver tsoverlay --subnet S NAME` on each given host. */
export async function createNetworkOn(hosts: LabHost[], name: string, subnet: string, extra: string[] = []): Promise<void> {
  for (const h of hosts) {
    await dockerOk(h, ["network", "create", "-d", "tsoverlay", ...IPAM, "--subnet", subnet, ...extra, name]);
  }
}

export async function removeNetworkOn(hosts: LabHost[], name: string): Promise<void> {
  for (const h of hosts) await docker(h, ["network", "rm", name]);
}

/** Starts a long-running test container attached to a network; returns its address there. */
export async function startContainer(lab: Lab, host: LabHost, name: string, network: string, extra: string[] = []): Promise<string> {
  await dockerOk(host, ["run", "-d", "--name", name, "--network", network, ...extra, lab.testImage, "sleep", "3600"]);
  return containerIp(host, name, network);
}

export async function containerIp(host: LabHost, name: string, network: string): Promise<string> {
  return dockerOk(host, ["inspect", "-f", `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, name]);
}

export async function removeContainers(host: LabHost, names: string[]): Promise<void> {
  if (names.length > 0) await docker(host, ["rm", "-f", ...names], { timeoutMs: 120_000 });
}

export async function ping(host: LabHost, container: string, ip: string, count = 2): Promise<boolean> {
  const r = await docker(host, ["exec", container, "ping", "-c", String(count), "-W", "2", ip]);
  return r.code === 0;
}

export { subnetKey } from "../../../domain/cluster/keys.js";

export async function networkVni(host: LabHost, subnet: string): Promise<number> {
  const rec = await consulGetJson<{ vni: number }>(host, keys.network(subnet));
  if (rec === undefined) throw new Error(`no cluster record for network ${subnet}`);
  return rec.vni;
}
