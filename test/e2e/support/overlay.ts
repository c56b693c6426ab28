import { keys } from "../../../driver/cluster/keys.js";
import { consulGetJson, docker, dockerOk, waitFor, type Lab, type LabHost } from "./lab.js";

export const IPAM = ["--ipam-driver", "tsoverlay"];

/**
 * `docker network create -d tsoverlay --ipam-driver tsoverlay --subnet S NAME`
 * on the first host; the plugin creates it on the others (create once), and
 * this waits until each given host lists it with that subnet.
 */
export async function createNetworkOn(hosts: LabHost[], name: string, subnet: string, extra: string[] = []): Promise<void> {
  const [first, ...others] = hosts;
  if (first === undefined) return;
  await dockerOk(first, ["network", "create", "-d", "tsoverlay", ...IPAM, "--subnet", subnet, ...extra, name]);
  for (const h of others) {
    await waitFor(`network ${name} on ${h.name}`, async () => ((await networkSubnet(h, name)) === subnet ? true : undefined), 10_000);
  }
}

/** `docker network rm NAME` on the first host that has it (it goes everywhere); waits until no given host lists it. */
export async function removeNetworkOn(hosts: LabHost[], name: string): Promise<void> {
  for (const h of hosts) {
    if ((await docker(h, ["network", "rm", name])).code === 0) break;
  }
  for (const h of hosts) {
    await waitFor(`network ${name} to leave ${h.name}`, async () => ((await networkSubnet(h, name)) === undefined ? true : undefined), 15_000);
  }
}

/** The network's subnet on a host, or undefined if the host has no network of that name. */
export async function networkSubnet(h: LabHost, name: string): Promise<string | undefined> {
  const r = await docker(h, ["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", name]);
  return r.code === 0 ? r.stdout.trim() : undefined;
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

/** The IPv4 addresses a container resolves a name to (busybox nslookup, through Docker's embedded DNS); [] if it does not resolve. */
export async function resolve(h: LabHost, container: string, name: string): Promise<string[]> {
  const r = await docker(h, ["exec", container, "nslookup", "-type=a", name], { timeoutMs: 30_000 });
  if (r.code !== 0) return [];
  const answer = r.stdout.split(/\n\s*\n/).find((block) => /Name:/.test(block)) ?? "";
  return [...answer.matchAll(/Address(?: \d+)?:\s*(\d+\.\d+\.\d+\.\d+)/g)].map((m) => m[1]!).sort();
}

export async function ping(host: LabHost, container: string, ip: string, count = 2): Promise<boolean> {
  const r = await docker(host, ["exec", container, "ping", "-c", String(count), "-W", "2", ip]);
  return r.code === 0;
}

export { subnetKey } from "../../../driver/cluster/keys.js";

export async function networkVni(host: LabHost, subnet: string): Promise<number> {
  const rec = await consulGetJson<{ vni: number }>(host, keys.network(subnet));
  if (rec === undefined) throw new Error(`no cluster record for network ${subnet}`);
  return rec.vni;
}
