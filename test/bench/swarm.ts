/**
 * Docker's own overlay for the benches to compare with: a two-node swarm on
 * lab hosts A (manager) and B (worker) with one attachable overlay network,
 * for the length of `work`, then the lab as it was (swarm left, the network
 * and the gateway bridge swarm leaves behind on every node removed).
 */
import { docker, dockerOk, type LabHost } from "../e2e/support/lab.js";

export async function withSwarm<T>(a: LabHost, b: LabHost, net: { network: string; subnet?: string }, work: () => Promise<T>): Promise<T> {
  await dockerOk(a, ["swarm", "init", "--advertise-addr", a.addr]);
  try {
    const token = await dockerOk(a, ["swarm", "join-token", "-q", "worker"]);
    await dockerOk(b, ["swarm", "join", "--token", token, `${a.addr}:2377`]);
    await dockerOk(a, ["network", "create", "-d", "overlay", "--attachable", ...(net.subnet === undefined ? [] : ["--subnet", net.subnet]), net.network]);
    return await work();
  } finally {
    await docker(b, ["swarm", "leave", "--force"]);
    await docker(a, ["network", "rm", net.network]);
    await docker(a, ["swarm", "leave", "--force"]);
    for (const h of [a, b]) await docker(h, ["network", "rm", "docker_gwbridge"]);
  }
}
