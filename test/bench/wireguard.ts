/**
 * `npm run bench -- wireguard`: what wireguard-go can carry on this machine,
 * whatever tsoverlay does around it (issue 18). No lab: two network
 * namespaces joined by a veth pair, and between them, side by side in one
 * run, at MTU 1500 and 9000, one and 8 TCP streams (iperf3, every second):
 *  - `underlay`: the veth itself;
 *  - `vxlan`: a VXLAN device over it (the core of a plain tsoverlay network);
 *  - `wireguard`: a wireguard-go tunnel over it, routed (L3), with the TUN
 *    offloads wireguard-go turns on (TSO/GSO in, GRO out): the best case for
 *    any design that carries containers' packets in userspace WireGuard;
 *  - `wireguard-no-offloads`: the same with TSO, GSO and UDP segmentation
 *    turned off on both TUN devices (ethtool), so the kernel hands
 *    wireguard-go one packet at a time;
 *  - `vxlan-in-wireguard`: a VXLAN device whose endpoints are the tunnel
 *    addresses: tsoverlay's encrypted datapath. VXLAN's GSO packets are UDP
 *    tunnel segments, an offload wireguard-go does not take, so the kernel
 *    segments them before the TUN device.
 * With each run the CPU seconds both wireguard-go processes used.
 * Writes test/bench/results/wireguard.json.
 *
 * Design note. The lab's overlay bench measures the whole product; this one
 * isolates the tunnel, so that the encrypted target (≥ 0.4× of plain at MTU
 * 1500) can be judged against what userspace WireGuard reaches here at all,
 * with and without its offloads, before any datapath is redesigned around it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../e2e/support/lab.js";
import { eventually } from "../support/eventually.js";
import { round } from "./stats.js";
import { machine } from "./machine.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const NS = { a: "tsobench-wg-a", b: "tsobench-wg-b" } as const;
const UNDERLAY = { a: "192.0.2.1", b: "192.0.2.2" };
const TUNNEL = { a: "100.77.0.1", b: "100.77.0.2" };
const VXLAN = { a: "10.77.1.1", b: "10.77.1.2" };
const VXLAN_IN_WG = { a: "10.77.2.1", b: "10.77.2.2" };
/** Issue 18's target on the userspace path: encrypted ≥ 0.4× plain at MTU 1500. */
const TARGET = 0.4;
const WG_OVERHEAD = 60;
const VXLAN_OVERHEAD = 50;

type Side = "a" | "b";
const SIDES: Side[] = ["a", "b"];

async function must(cmd: string, args: string[], what: string): Promise<string> {
  const r = await run(cmd, args, { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`${what}: ${cmd} ${args.join(" ")} exited ${r.code}: ${r.stderr.trim().slice(-500)}`);
  return r.stdout;
}

const inNs = (side: Side, args: string[], what: string): Promise<string> => must("ip", ["netns", "exec", NS[side], ...args], what);

/** CPU seconds (user + system) a process has used so far; 0 once it is gone. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

interface Pair {
  wireguardGo: Record<Side, ChildProcess>;
  dir: string;
}

async function teardown(pair: Pair | undefined): Promise<void> {
  if (pair !== undefined) {
    for (const s of SIDES) pair.wireguardGo[s].kill();
    rmSync(pair.dir, { recursive: true, force: true });
  }
  for (const s of SIDES) await run("ip", ["netns", "del", NS[s]]);
}

/** The two namespaces, their veth at `mtu`, the VXLAN device, wireguard-go with its peer, and VXLAN over the tunnel. */
async function setUp(wireguardGo: string, mtu: number): Promise<Pair> {
  await teardown(undefined);
  for (const s of SIDES) await must("ip", ["netns", "add", NS[s]], "namespace");
  await must("ip", ["link", "add", "ula", "netns", NS.a, "mtu", String(mtu), "type", "veth", "peer", "name", "ulb", "netns", NS.b, "mtu", String(mtu)], "veth");
  const dir = mkdtempSync(join(tmpdir(), "tso-bench-wg-"));
  const keys = {} as Record<Side, { file: string; pub: string }>;
  for (const s of SIDES) {
    const ul = s === "a" ? "ula" : "ulb";
    await inNs(s, ["ip", "link", "set", "lo", "up"], "lo");
    await inNs(s, ["ip", "addr", "add", `${UNDERLAY[s]}/24`, "dev", ul], "underlay address");
    await inNs(s, ["ip", "link", "set", ul, "up"], "underlay up");
    const priv = (await must("wg", ["genkey"], "key")).trim();
    const file = join(dir, `${s}.key`);
    writeFileSync(file, priv + "\n", { mode: 0o600 });
    keys[s] = { file, pub: (await run("wg", ["pubkey"], { input: priv + "\n" })).stdout.trim() };
  }
  const procs = {} as Record<Side, ChildProcess>;
  for (const s of SIDES) {
    procs[s] = spawn("ip", ["netns", "exec", NS[s], wireguardGo, "-f", `tsobwg${s}`], { stdio: "ignore", env: { ...process.env, LOG_LEVEL: "error" } });
  }
  await eventually("wireguard-go's UAPI sockets", () => SIDES.every((s) => existsSync(`/var/run/wireguard/tsobwg${s}.sock`)), {
    timeoutMs: 10_000,
    everyMs: 100,
  });
  for (const s of SIDES) {
    const o: Side = s === "a" ? "b" : "a";
    const dev = `tsobwg${s}`;
    const ul = s === "a" ? "ula" : "ulb";
    await inNs(
      s,
      [
        "wg",
        "set",
        dev,
        "private-key",
        keys[s].file,
        "listen-port",
        "51820",
        "peer",
        keys[o].pub,
        "endpoint",
        `${UNDERLAY[o]}:51820`,
        "allowed-ips",
        `${TUNNEL[o]}/32`,
      ],
      "wg set",
    );
    await inNs(s, ["ip", "addr", "add", `${TUNNEL[s]}/24`, "dev", dev], "tunnel address");
    await inNs(s, ["ip", "link", "set", dev, "mtu", String(mtu - WG_OVERHEAD), "up"], "tunnel up");
    await inNs(
      s,
      ["ip", "link", "add", "vxp", "type", "vxlan", "id", "77", "local", UNDERLAY[s], "remote", UNDERLAY[o], "dstport", "4789", "dev", ul],
      "vxlan",
    );
    await inNs(s, ["ip", "addr", "add", `${VXLAN[s]}/24`, "dev", "vxp"], "vxlan address");
    await inNs(s, ["ip", "link", "set", "vxp", "mtu", String(mtu - VXLAN_OVERHEAD), "up"], "vxlan up");
    await inNs(s, ["ip", "link", "add", "vxw", "type", "vxlan", "id", "78", "local", TUNNEL[s], "remote", TUNNEL[o], "dstport", "4789"], "vxlan in wireguard");
    await inNs(s, ["ip", "addr", "add", `${VXLAN_IN_WG[s]}/24`, "dev", "vxw"], "vxlan-in-wireguard address");
    await inNs(s, ["ip", "link", "set", "vxw", "mtu", String(mtu - WG_OVERHEAD - VXLAN_OVERHEAD), "up"], "vxlan-in-wireguard up");
  }
  return { wireguardGo: procs, dir };
}

/** The TUN offloads wireguard-go negotiated, as ethtool names them, on side a. */
async function offloads(): Promise<Record<string, string>> {
  const text = await inNs("a", ["ethtool", "-k", "tsobwga"], "ethtool -k");
  const out: Record<string, string> = {};
  for (const name of ["tx-tcp-segmentation", "tx-tcp6-segmentation", "tx-udp-segmentation", "generic-segmentation-offload", "tx-udp_tnl-segmentation"]) {
    const m = new RegExp(`^\\s*${name}: (.*)$`, "m").exec(text);
    if (m !== null) out[name] = m[1]!;
  }
  return out;
}

async function setOffloads(on: boolean): Promise<void> {
  const v = on ? "on" : "off";
  for (const s of SIDES) await inNs(s, ["ethtool", "-K", `tsobwg${s}`, "tso", v, "gso", v, "tx-udp-segmentation", v], "ethtool -K");
}

interface Measured {
  datapath: string;
  streams: number;
  gbits: number;
  samplesGbits: number[];
  wireguardGoCpuSeconds: number;
}

async function iperf(pair: Pair, datapath: string, server: string, streams: number): Promise<Measured> {
  const srv = spawn("ip", ["netns", "exec", NS.b, "iperf3", "-s", "-1", "-B", server], { stdio: "ignore" });
  try {
    await eventually("iperf3 listening", async () => /:1451 [0-9A-F:]+ 0A /.test((await run("ip", ["netns", "exec", NS.b, "cat", "/proc/net/tcp"])).stdout), {
      timeoutMs: 10_000,
      everyMs: 50,
    });
    const wgCpu = (): number => cpuSeconds(pair.wireguardGo.a.pid) + cpuSeconds(pair.wireguardGo.b.pid);
    const before = wgCpu();
    const out = await inNs("a", ["iperf3", "-c", server, "-t", String(SECONDS), "-P", String(streams), "-J"], `iperf3 over ${datapath}`);
    const cpu = wgCpu() - before;
    const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } }; intervals: { sum: { bits_per_second: number } }[] };
    return {
      datapath,
      streams,
      gbits: round(j.end.sum_received.bits_per_second / 1e9, 3),
      samplesGbits: j.intervals.map((i) => round(i.sum.bits_per_second / 1e9, 3)),
      wireguardGoCpuSeconds: datapath.startsWith("underlay") || datapath === "vxlan" ? 0 : round(cpu, 2),
    };
  } finally {
    srv.kill();
  }
}

async function measure(wireguardGo: string, mtu: number): Promise<Record<string, unknown>> {
  const pair = await setUp(wireguardGo, mtu);
  try {
    const negotiated = await offloads();
    const runs: Measured[] = [];
    for (const streams of [1, 8]) {
      runs.push(await iperf(pair, "underlay", UNDERLAY.b, streams));
      runs.push(await iperf(pair, "vxlan", VXLAN.b, streams));
      runs.push(await iperf(pair, "wireguard", TUNNEL.b, streams));
      runs.push(await iperf(pair, "vxlan-in-wireguard", VXLAN_IN_WG.b, streams));
      await setOffloads(false);
      runs.push(await iperf(pair, "wireguard-no-offloads", TUNNEL.b, streams));
      await setOffloads(true);
    }
    const of = (d: string, streams: number): number => runs.find((r) => r.datapath === d && r.streams === streams)?.gbits ?? NaN;
    const ratios = Object.fromEntries(
      [1, 8].map((n) => [
        `${n === 1 ? "one" : "eight"}Stream${n === 1 ? "" : "s"}`,
        {
          wireguardToVxlan: round(of("wireguard", n) / of("vxlan", n), 3),
          wireguardNoOffloadsToVxlan: round(of("wireguard-no-offloads", n) / of("vxlan", n), 3),
          vxlanInWireguardToVxlan: round(of("vxlan-in-wireguard", n) / of("vxlan", n), 3),
          offloadGain: round(of("wireguard", n) / of("wireguard-no-offloads", n), 2),
        },
      ]),
    );
    return { underlayMtu: mtu, tunOffloads: negotiated, runs, ratios };
  } finally {
    await teardown(pair);
  }
}

async function main(): Promise<void> {
  for (const tool of ["wg", "iperf3", "ethtool"]) {
    if ((await run("sh", ["-c", `command -v ${tool}`])).code !== 0)
      throw new Error(`${tool} is missing: the lab installs it (bash test/lab/lab.sh packages), or apt-get install wireguard-tools iperf3 ethtool`);
  }
  const built = await run("bash", ["scripts/wireguard-go-build.sh"], { timeoutMs: 600_000 });
  if (built.code !== 0) throw new Error(`wireguard-go build failed: ${built.stderr.slice(-1000)}`);
  const wireguardGo = built.stdout.trim().split("\n").pop()!;
  process.on("SIGINT", () => void teardown(undefined).finally(() => process.exit(130)));
  const runs = [];
  for (const mtu of [1500, 9000]) {
    process.stderr.write(`[bench] MTU ${mtu}\n`);
    runs.push(await measure(wireguardGo, mtu));
  }
  const at1500 = (runs[0]!.ratios as Record<string, { wireguardToVxlan: number; vxlanInWireguardToVxlan: number }>).oneStream!;
  const result = {
    benchmark: "wireguard",
    date: new Date().toISOString(),
    machine: machine(),
    wireguardGo: wireguardGo.split("/").pop(),
    settings: { iperfSeconds: SECONDS },
    runs,
    target: {
      encryptedToPlainAtMtu1500: TARGET,
      bestUserspaceCase: at1500.wireguardToVxlan,
      tsoverlayDatapath: at1500.vxlanInWireguardToVxlan,
      met: at1500.vxlanInWireguardToVxlan >= TARGET,
      reachableByAnyUserspaceDesignHere: at1500.wireguardToVxlan >= TARGET,
    },
  };
  mkdirSync("test/bench/results", { recursive: true });
  writeFileSync("test/bench/results/wireguard.json", JSON.stringify(result, null, 2) + "\n");
  for (const r of runs as { underlayMtu: number; runs: Measured[]; ratios: object }[]) {
    console.log(`MTU ${r.underlayMtu}`);
    for (const m of r.runs) console.log(`  ${m.datapath.padEnd(22)} P${m.streams}  ${m.gbits} Gbit/s  wireguard-go ${m.wireguardGoCpuSeconds} CPU-s`);
    console.log(`  ratios ${JSON.stringify(r.ratios)}`);
  }
  console.log(`target ${JSON.stringify(result.target)}`);
  console.log("wrote test/bench/results/wireguard.json");
}

main().catch((e: unknown) => {
  console.error(e);
  void teardown(undefined).finally(() => process.exit(1));
});
