import { linkMtu } from "../../driver/kernel/host-checks.js";
import { MIN_PROBE_SIZE } from "../../driver/kernel/probe/probe-packets.js";
import type { ProbeOutcome, ProbePath } from "../../driver/kernel/probe/vxlan-prober.js";
import { VxlanProber } from "../../driver/kernel/probe/vxlan-prober.js";
import type { ClusterSnapshot } from "../../driver/cluster/cluster-view.js";
import type { ProbeReport } from "../../driver/api.js";
import type { LocalEndpoint, LocalNetwork } from "../../driver/local/local-state.js";
import { VXLAN_OVERHEAD } from "../../driver/network/network-options.js";
import { addressOf } from "../../lib/net.js";

/**
 * `tsoverlay probe HOST|ADDRESS [--network NET]`: is the peer's VTEP
 * reachable over VXLAN with the network's VNI, how fast, and what is the
 * largest packet the path carries. Three questions, in order:
 *
 *  1. Small VXLAN echoes (see probe-packets.ts): any reply → reachable, with
 *     round trips.
 *  2. None: an ICMP error about them names the cause (port unreachable,
 *     prohibited); else a plain ping of the VTEP tells "UDP 4789 blocked on
 *     the way" (the host answers) from "the peer does not answer at all".
 *  3. Reachable: the largest outer packet that gets an answer, from this
 *     host's underlay MTU down (binary search, helped by the MTU a router
 *     quotes in "fragmentation needed"), against what the network needs
 *     (its MTU + 50).
 */

const SMALL_PROBES = 3;
/** How long a probe waits for its answer: reachability is given a second, each step of the MTU search half (it already knows the round trip). */
const TIMEOUT_MS = 1_000;
const SEARCH_TIMEOUT_MS = 500;

export class ProbeRefused extends Error {
  readonly status = 400;
}

export interface ProbeInputs {
  target: string;
  network: string | undefined;
  snapshot: ClusterSnapshot;
  vtep: string;
  vxlanPort: number;
  underlay: { ifindex: number; mtuAtStart: number };
  localEndpoints: LocalEndpoint[];
  localNetworks: LocalNetwork[];
  /** Opens the raw sockets (a test can count on real ones only: the probe is a kernel adapter). */
  open?: (path: ProbePath) => Prober;
}

export interface Prober {
  vxlan(size: number, timeoutMs: number): Promise<ProbeOutcome>;
  ping(timeoutMs: number): Promise<ProbeOutcome>;
  close(): Promise<void>;
}

export async function runProbe(p: ProbeInputs): Promise<ProbeReport> {
  const s = p.snapshot;
  const byEndpoint = s.endpoints.find((e) => e.ip === p.target);
  const host =
    s.hosts.find((h) => h.hostId === p.target || h.vtep === p.target || h.hostname === p.target) ?? s.hosts.find((h) => h.hostId === byEndpoint?.hostId);
  if (host === undefined) throw new ProbeRefused(`no host or container address ${p.target} in the cluster (tsoverlay hosts and tsoverlay ps list them)`);
  if (host.hostId === s.self) throw new ProbeRefused(`${p.target} is this host: probe another one`);
  const mine = new Set(p.localEndpoints.map((e) => e.subnet));
  const theirs = new Set(s.endpoints.filter((e) => e.hostId === host.hostId).map((e) => e.subnet));
  let net = undefined as ClusterSnapshot["networks"][number] | undefined;
  if (p.network !== undefined) {
    net = s.networks.find((n) => n.names.includes(p.network!) || n.subnet === p.network);
    if (net === undefined) throw new ProbeRefused(`network ${p.network} not found`);
  } else {
    const preferred = byEndpoint?.subnet;
    net = s.networks.find((n) => n.subnet === preferred && mine.has(n.subnet)) ?? s.networks.find((n) => mine.has(n.subnet) && theirs.has(n.subnet));
  }
  const label = (n: { names: string[]; subnet: string }): string => n.names[0] ?? n.subnet;
  if (net === undefined || !mine.has(net.subnet) || !theirs.has(net.subnet)) {
    const which = net === undefined ? "no network has" : `network ${label(net)} does not have`;
    throw new ProbeRefused(
      `${which} containers both on this host and on ${host.hostId}: a probe needs a container on each end (the peer has a VTEP for the network only then); start one, or name another network with --network`,
    );
  }
  const inner = p.localEndpoints.find((e) => e.subnet === net.subnet)!;
  const local = p.localNetworks.find((n) => n.subnet === net.subnet);
  const neededMtu = (local?.record?.mtu ?? p.underlay.mtuAtStart - VXLAN_OVERHEAD) + VXLAN_OVERHEAD;
  const path: ProbePath = {
    vtep: p.vtep,
    peer: host.vtep,
    port: p.vxlanPort,
    vni: net.vni,
    inner: { ip: addressOf(inner.addressCidr), mac: inner.mac },
    gateway: addressOf(net.gateway),
  };
  const base = { peer: host.vtep, network: label(net), subnet: net.subnet, vni: net.vni, neededMtu };
  const prober = (p.open ?? ((x: ProbePath) => new VxlanProber(x)))(path);
  const samples: ProbeReport["samples"] = [];
  const vxlan = async (size: number, timeoutMs = TIMEOUT_MS): Promise<ProbeOutcome> => {
    const o = await prober.vxlan(size, timeoutMs);
    samples.push({ probe: "vxlan", size, ...o });
    return o;
  };
  try {
    const small: ProbeOutcome[] = [];
    for (let i = 0; i < SMALL_PROBES; i++) small.push(await vxlan(MIN_PROBE_SIZE));
    const rtts = small.flatMap((o) => (o.kind === "reply" ? [o.rttMs] : []));
    if (rtts.length === 0) return { ...base, ...(await unreachable(small, prober, samples, path)), rttMs: null, pathMtu: null, samples };

    const rttMs = { min: Math.min(...rtts), avg: rtts.reduce((a, b) => a + b, 0) / rtts.length, max: Math.max(...rtts) };
    const { mtu: ifaceMtu, name } = await linkMtu(p.underlay.ifindex);
    const pathMtu = await largest((size) => vxlan(size, SEARCH_TIMEOUT_MS), ifaceMtu);
    const rtt = `${rttMs.avg.toFixed(2)} ms round trip`;
    if (pathMtu >= neededMtu) {
      return {
        ...base,
        verdict: "ok",
        summary: `${host.vtep} answers VXLAN (VNI ${net.vni}), ${rtt}; the path carries ${pathMtu}-byte packets (the network needs ${neededMtu})`,
        rttMs,
        pathMtu,
        samples,
      };
    }
    return {
      ...base,
      verdict: "mtu-too-small",
      summary: `MTU too small: the path to ${host.vtep} carries at most ${pathMtu}-byte packets, the network needs ${neededMtu} (its MTU ${neededMtu - VXLAN_OVERHEAD} + ${VXLAN_OVERHEAD} of VXLAN; ${name} here has ${ifaceMtu}); ${rtt}`,
      rttMs,
      pathMtu,
      samples,
    };
  } finally {
    await prober.close();
  }
}

async function unreachable(
  small: ProbeOutcome[],
  prober: Prober,
  samples: ProbeReport["samples"],
  path: ProbePath,
): Promise<Pick<ProbeReport, "verdict" | "summary">> {
  const err = small.find((o): o is Extract<ProbeOutcome, { kind: "unreachable" }> => o.kind === "unreachable");
  if (err !== undefined) {
    const why =
      err.code === 3
        ? "port unreachable: nothing listens there (is the plugin's network up on that host?)"
        : err.code === 9 || err.code === 10 || err.code === 13
          ? "administratively prohibited (a firewall rejects it)"
          : `ICMP unreachable code ${err.code}`;
    return { verdict: "udp-blocked", summary: `UDP ${path.port} to ${path.peer} blocked: ${err.from} answers ${why}` };
  }
  let answered = false;
  for (let i = 0; i < 2 && !answered; i++) {
    const o = await prober.ping(TIMEOUT_MS);
    samples.push({ probe: "ping", size: 84, ...o });
    answered = o.kind === "reply";
  }
  return answered
    ? {
        verdict: "udp-blocked",
        summary: `UDP ${path.port} blocked: ${path.peer} answers ping, but VXLAN to port ${path.port} gets no answer (a firewall on the way or on the peer drops it)`,
      }
    : { verdict: "peer-not-answering", summary: `peer not answering: ${path.peer} answers neither VXLAN on port ${path.port} nor ping` };
}

/** The largest outer size in [MIN_PROBE_SIZE, max] that gets a reply (MIN_PROBE_SIZE is known to). */
async function largest(vxlan: (size: number) => Promise<ProbeOutcome>, max: number): Promise<number> {
  const works = async (size: number): Promise<{ ok: boolean; mtu?: number }> => {
    for (let attempt = 0; attempt < 2; attempt++) {
      const o = await vxlan(size);
      if (o.kind === "reply") return { ok: true };
      if (o.kind === "frag-needed") return { ok: false, mtu: o.mtu };
      if (o.kind !== "timeout") return { ok: false };
    }
    return { ok: false };
  };
  let lo = MIN_PROBE_SIZE;
  let hi = max;
  const top = await works(hi);
  if (top.ok) return hi;
  if (top.mtu !== undefined && top.mtu >= lo && top.mtu < hi && (await works(top.mtu)).ok) return top.mtu;
  hi -= 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    const r = await works(mid);
    if (r.ok) lo = mid;
    else hi = r.mtu !== undefined && r.mtu < mid ? Math.max(lo, r.mtu) : mid - 1;
  }
  return lo;
}
