/**
 * Driving the lab through the events of a living cluster (Consul servers
 * stopping, hosts restarting or dying) and reading what every host programmed.
 */
import { LAB_SCRIPT, consulHttp, inOverlayNs, readLab, run, waitFor, type Lab, type LabHost } from "./lab.js";
import { pluginStatus } from "./publish.js";

/** Runs `lab.sh ARGS` (consul stop|start, host stop|start|kill|revive); fails the test if it fails. */
export async function labCtl(args: string[]): Promise<void> {
  const r = await run("bash", [LAB_SCRIPT, ...args], { timeoutMs: 180_000 });
  if (r.code !== 0) throw new Error(`lab ${args.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
}

/** The lab as it is now (PIDs change when processes restart). */
export function freshHost(name: string): LabHost {
  const h = readLab().hosts.find((x) => x.name === name);
  if (h === undefined) throw new Error(`no lab host ${name}`);
  return h;
}

/** Which Consul server (1..3) leads now, as host h's agent sees it. */
export async function consulLeader(lab: Lab, via: LabHost): Promise<number> {
  const addr = await waitFor(
    "a Consul leader",
    async () => {
      const r = await consulHttp(via, "GET", "/v1/status/leader", undefined, { timeoutMs: 2_000 });
      const m = /"([\d.]+):\d+"/.exec(r.stdout);
      return m?.[1];
    },
    60_000,
    200,
  );
  const i = lab.consul.findIndex((c) => c.addr === addr);
  if (i < 0) throw new Error(`leader ${addr} is not a lab server`);
  return i + 1;
}

/** How long writes must keep succeeding before Consul counts as back (ms). */
const STEADY_MS = 5_000;

/**
 * Waits until writes through `via`'s agent succeed, and keep succeeding for
 * STEADY_MS. Right after every server was started again, an agent took one
 * write and then answered "no servers to talk to" for over 10 s (seen once,
 * in CI on 20.10): a single success does not mean Consul is back. Nor do
 * steady writes alone: the agent must also see every server alive again.
 */
export async function consulWritable(via: LabHost): Promise<void> {
  let since: number | undefined;
  await waitFor(
    "Consul to accept writes, steadily",
    async () => {
      const r = await consulHttp(via, "PUT", "/v1/kv/lab-probe", "x", { timeoutMs: 3_000 });
      if (r.code !== 0) {
        since = undefined;
        return undefined;
      }
      since ??= Date.now();
      if (Date.now() - since < STEADY_MS) return undefined;
      return (await serversAliveFor(via)) ? true : undefined;
    },
    90_000,
    250,
  );
}

/**
 * Whether `via`'s agent counts every lab server alive. A client agent sends
 * its calls only to servers its gossip has seen alive: after every server
 * restarted, writes can succeed while it knows just one of them (the others
 * come back through gossip a little later), and stopping that one leaves it
 * with no server at all — not the cluster a "leader lost" test means.
 */
async function serversAliveFor(via: LabHost): Promise<boolean> {
  const r = await consulHttp(via, "GET", "/v1/agent/members", undefined, { timeoutMs: 3_000 });
  if (r.code !== 0) return false;
  const members = JSON.parse(r.stdout) as { Name: string; Status: number; Tags?: Record<string, string> }[];
  const alive = new Set(members.filter((m) => m.Status === 1 && m.Tags?.role === "consul").map((m) => m.Name));
  return readLab().consul.every((c) => alive.has(c.name));
}

export interface Tables {
  /** Neighbor entries on vxlan0: "ip mac". */
  neighbors: string[];
  /** The VXLAN device's FDB entries: "mac dst". */
  fdb: string[];
  /** br0's own entries on the vxlan0 port (not its local one): "mac static|learned". */
  bridge: string[];
}

/** What host h programmed for a network (VNI) in its kernel; empty where the host has no datapath for it. */
export async function tables(host: LabHost, vni: number): Promise<Tables> {
  const neigh = await inOverlayNs(host, vni, ["ip", "-j", "neigh", "show", "dev", "vxlan0"]);
  if (neigh.code !== 0 && /cannot open .*vni-\d+: No such file/.test(neigh.stderr)) return { neighbors: [], fdb: [], bridge: [] };
  const fdb = await inOverlayNs(host, vni, ["bridge", "-j", "fdb", "show", "br", "br0"]);
  const self = await inOverlayNs(host, vni, ["bridge", "-j", "fdb", "show", "dev", "vxlan0"]);
  if (neigh.code !== 0 || fdb.code !== 0 || self.code !== 0) throw new Error(`tables of ${host.name}: ${neigh.stderr}${fdb.stderr}${self.stderr}`);
  type Fdb = { mac: string; dst?: string; ifname?: string; master?: string; state?: string; flags?: string[] };
  return {
    neighbors: (JSON.parse(neigh.stdout || "[]") as { dst: string; lladdr?: string }[]).map((n) => `${n.dst} ${n.lladdr ?? "-"}`).sort(),
    fdb: (JSON.parse(self.stdout || "[]") as Fdb[])
      .filter((e) => e.dst !== undefined)
      .map((e) => `${e.mac} ${e.dst}`)
      .sort(),
    bridge: (JSON.parse(fdb.stdout || "[]") as Fdb[])
      .filter((e) => e.ifname === "vxlan0" && e.master === "br0" && e.state !== "permanent")
      .map((e) => `${e.mac} ${e.state === "static" ? "static" : "learned"}`)
      .sort(),
  };
}

/** True when none of host h's tables mention the address or the MAC. */
export async function forgotten(host: LabHost, vni: number, ip: string, mac: string): Promise<boolean> {
  const t = await tables(host, vni);
  return ![...t.neighbors, ...t.fdb, ...t.bridge].some((l) => l.startsWith(`${ip} `) || l.startsWith(`${mac} `) || l.includes(` ${mac}`));
}

/** The cluster side of the plugin's status endpoint. */
export interface ClusterStatus {
  ready: boolean;
  reason?: string;
  store?: { available: boolean; condition?: string; error?: string };
  pendingTeardown?: { pending: number; waitingFor?: string };
  hosts?: { ready: boolean; alive: string[] };
}

export async function clusterStatus(host: LabHost): Promise<ClusterStatus | undefined> {
  return await pluginStatus(host);
}

/** Milliseconds a promise took. */
export async function timed<T>(p: Promise<T>): Promise<[T, number]> {
  const t0 = Date.now();
  const v = await p;
  return [v, Date.now() - t0];
}
