/**
 * `npm run bench -- churn`: containers come and go by the dozen on every lab
 * host while their addresses move from host to host, the way services are
 * rescheduled in a living cluster. Each cycle starts K containers on each of
 * the H hosts at once, with fixed addresses that sit on the next host along
 * from where they were the cycle before; then every host's first container
 * pings the first container of its neighbours on both sides, once, as soon
 * as `docker run` has returned there; then everything is removed at once.
 *
 * Records per cycle: whether each first ping succeeded, how long after the
 * target's `docker run` returned the first reply came back (an upper bound:
 * it includes `docker exec`'s own ~0.1 s; a failed first ping is retried
 * until a reply, to time it), and the cycle's duration. Before and after all
 * cycles: each plugin's RSS and open files, each overlay namespace's links and
 * neighbor/FDB/bridge entries, iptables rule counts and Consul key counts.
 * Targets: every first ping succeeds; nothing grows beyond noise (links, entries, rules, keys,
 * open files not at all; the plugins' RSS not in the second half of the run, see rssSeries).
 *
 * Uses the running lab if there is one (and leaves it up), otherwise brings
 * up three hosts and takes them down at the end. BENCH_CYCLES (100),
 * BENCH_PER_HOST (3). Writes test/bench/results/churn.json (BENCH_OUT overrides).
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { tables } from "../e2e/support/cluster.js";
import { consulKeys, docker, dockerOk, LAB_JSON, pluginPid, readLab, run, type Lab, type LabHost } from "../e2e/support/lab.js";
import { createNetworkOn, networkVni, removeNetworkOn } from "../e2e/support/overlay.js";
import { lab } from "./bench-lab.js";
import { rssKb } from "./process-stats.js";
import { percentile, round } from "./stats.js";
import { machine } from "./machine.js";

const CYCLES = Number(process.env.BENCH_CYCLES ?? 100);
const PER_HOST = Number(process.env.BENCH_PER_HOST ?? 3);
const OUT = process.env.BENCH_OUT ?? "test/bench/results/churn.json";
const NET = "churn";
const SUBNET = "10.97.0.0/24";

interface HostSnapshot {
  host: string;
  pluginRssKb: number;
  pluginOpenFiles: number;
  overlayLinks: number;
  neighbors: number;
  fdb: number;
  bridge: number;
  iptablesFilterRules: number;
  iptablesNatRules: number;
}

async function snapshot(l: Lab, vni: number): Promise<{ hosts: HostSnapshot[]; consulKeys: number }> {
  const hosts: HostSnapshot[] = [];
  for (const h of l.hosts) {
    const pid = await pluginPid(h);
    if (pid === undefined) throw new Error(`no plugin process on ${h.name}`);
    const rss = rssKb(pid);
    const t = await tables(h, vni);
    const links = await run("nsenter", [
      `--mount=${h.mntns}`,
      "sh",
      "-c",
      `nsenter --net=$(ls -d ${h.dataDir}/docker/plugins/*/propagated-mount/netns/vni-${vni}) ip -o link show | wc -l`,
    ]);
    const ipt = async (table: string): Promise<number> => {
      const r = await run("nsenter", [`--net=/run/netns/${h.netns}`, "iptables-save", "-t", table]);
      return r.stdout.split("\n").filter((line) => line.startsWith("-A ")).length;
    };
    hosts.push({
      host: h.name,
      pluginRssKb: rss,
      pluginOpenFiles: readdirSync(`/proc/${pid}/fd`).length,
      overlayLinks: Number(links.stdout.trim()),
      neighbors: t.neighbors.length,
      fdb: t.fdb.length,
      bridge: t.bridge.length,
      iptablesFilterRules: await ipt("filter"),
      iptablesNatRules: await ipt("nat"),
    });
  }
  return { hosts, consulKeys: (await consulKeys(l.hosts[0]!, "tsoverlay/v1/")).length };
}

/** The address of slot k of the block that host i holds in cycle c: blocks move one host along each cycle. */
function addressOf(i: number, k: number, c: number, hosts: number): string {
  const block = (i + c) % hosts;
  return `10.97.0.${20 + block * PER_HOST + k}`;
}

interface Ping {
  from: string;
  to: string;
  ip: string;
  firstOk: boolean;
  firstReplyMs: number | null;
  /** What the first ping itself reported (ARP resolution included): ~1000 ms means its first ARP request went unanswered. */
  firstRttMs: number | null;
}

/** One ping right away; if it fails, more until a reply (≤ 10 s) so the delay is still measured. */
async function pingAfter(from: LabHost, container: string, ip: string, returnedAt: number): Promise<Omit<Ping, "from" | "to" | "ip">> {
  const first = await docker(from, ["exec", container, "ping", "-c", "1", "-W", "2", ip]);
  const rtt = /time=([\d.]+) ms/.exec(first.stdout);
  const firstRttMs = rtt ? Number(rtt[1]) : null;
  if (first.code === 0) return { firstOk: true, firstReplyMs: Date.now() - returnedAt, firstRttMs };
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if ((await docker(from, ["exec", container, "ping", "-c", "1", "-W", "1", ip])).code === 0)
      return { firstOk: false, firstReplyMs: Date.now() - returnedAt, firstRttMs };
  }
  return { firstOk: false, firstReplyMs: null, firstRttMs };
}

async function cycle(l: Lab, c: number): Promise<{ seconds: number; pings: Ping[] }> {
  const t0 = Date.now();
  const H = l.hosts.length;
  const returned = new Map<string, number>();
  const names: [LabHost, string][] = [];
  await Promise.all(
    l.hosts.flatMap((h, i) =>
      Array.from({ length: PER_HOST }, async (_, k) => {
        const name = `churn-${i}-${k}`;
        names.push([h, name]);
        await dockerOk(h, ["run", "-d", "--name", name, "--network", NET, "--ip", addressOf(i, k, c, H), l.testImage, "sleep", "600"]);
        returned.set(name, Date.now());
      }),
    ),
  );
  const pings = await Promise.all(
    l.hosts.flatMap((h, i) =>
      [1, H - 1]
        .filter((d, j, all) => all.indexOf(d) === j)
        .map(async (d) => {
          const j = (i + d) % H;
          const ip = addressOf(j, 0, c, H);
          const r = await pingAfter(h, `churn-${i}-0`, ip, returned.get(`churn-${j}-0`)!);
          return { from: h.name, to: l.hosts[j]!.name, ip, ...r };
        }),
    ),
  );
  await Promise.all(l.hosts.map((h) => docker(h, ["rm", "-f", ...names.filter(([x]) => x === h).map(([, n]) => n)], { timeoutMs: 120_000 })));
  return { seconds: round((Date.now() - t0) / 1000, 2), pings };
}

function growth(before: Awaited<ReturnType<typeof snapshot>>, after: Awaited<ReturnType<typeof snapshot>>): Record<string, unknown> {
  const out: Record<string, unknown> = { consulKeys: after.consulKeys - before.consulKeys };
  for (const b of before.hosts) {
    const a = after.hosts.find((x) => x.host === b.host)!;
    out[b.host] = Object.fromEntries(
      Object.keys(b)
        .filter((k) => k !== "host")
        .map((k) => [k, (a[k as keyof HostSnapshot] as number) - (b[k as keyof HostSnapshot] as number)]),
    );
  }
  return out;
}

async function pluginRss(l: Lab): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const h of l.hosts) {
    const pid = await pluginPid(h);
    out[h.name] = rssKb(pid);
  }
  return out;
}

async function main(): Promise<void> {
  const reuse = existsSync(LAB_JSON);
  if (!reuse) await lab(["up", "--hosts", "3"]);
  const l = readLab();
  try {
    await createNetworkOn(l.hosts, NET, SUBNET); // once; the plugin creates it on the other hosts
    // One long-lived container per host keeps each host's overlay namespace (and its tables) in place between cycles.
    for (const [i, h] of l.hosts.entries())
      await dockerOk(h, ["run", "-d", "--name", `churn-anchor-${i}`, "--network", NET, "--ip", `10.97.0.${10 + i}`, l.testImage, "sleep", "3600"]);
    const vni = await networkVni(l.hosts[0]!, SUBNET);
    await cycle(l, 0); // warm-up, not recorded
    // A quiet period, not a wait for something: one reconcile pass (2 s on the lab) after the warm-up, so that "before" is a settled state.
    await new Promise((r) => setTimeout(r, 3_000));
    const before = await snapshot(l, vni);
    const cycles = [];
    // Each plugin's RSS every tenth cycle: a leak keeps climbing, a heap settling into its working size flattens out.
    const rssSeries: { cycle: number; rssKb: Record<string, number> }[] = [{ cycle: 0, rssKb: await pluginRss(l) }];
    for (let c = 1; c <= CYCLES; c++) {
      cycles.push(await cycle(l, c));
      if (c % 10 === 0) {
        rssSeries.push({ cycle: c, rssKb: await pluginRss(l) });
        process.stderr.write(`[bench] churn: ${c}/${CYCLES} cycles\n`);
      }
    }
    // Let periodic work (reconcile every 2 s, collector every 5 s on the lab) catch up before looking.
    await new Promise((r) => setTimeout(r, 8_000));
    const after = await snapshot(l, vni);
    const pings = cycles.flatMap((c) => c.pings);
    const ok = pings.filter((p) => p.firstOk).length;
    const delays = pings.flatMap((p) => (p.firstReplyMs === null ? [] : [p.firstReplyMs]));
    const secs = cycles.map((c) => c.seconds);
    const rtts = pings.flatMap((p) => (p.firstRttMs === null ? [] : [p.firstRttMs]));
    const grew = growth(before, after);
    const structural =
      after.hosts.every((a) => {
        const b = before.hosts.find((x) => x.host === a.host)!;
        return (
          a.overlayLinks === b.overlayLinks &&
          a.neighbors === b.neighbors &&
          a.fdb === b.fdb &&
          a.bridge === b.bridge &&
          a.iptablesFilterRules === b.iptablesFilterRules &&
          a.iptablesNatRules === b.iptablesNatRules &&
          Math.abs(a.pluginOpenFiles - b.pluginOpenFiles) <= 4
        );
      }) && after.consulKeys === before.consulKeys;
    // RSS of a Node process moves by a few MB with garbage collection, and its heap grows to a
    // working size early on. So growth is judged on the second half of the run: from its
    // middle to its end, a plugin's RSS may move by under 15 % or 10 MB.
    const mid = rssSeries[Math.floor(rssSeries.length / 2)]!;
    const end = rssSeries[rssSeries.length - 1]!;
    const rssNoise = Object.keys(end.rssKb).every((h) => end.rssKb[h]! - mid.rssKb[h]! < Math.max(10_240, mid.rssKb[h]! * 0.15));
    const result = {
      benchmark: "churn",
      date: new Date().toISOString(),
      machine: machine(),
      lab: { hosts: l.hosts.length, docker: l.hosts.map((h) => h.dockerVersion) },
      settings: { cycles: CYCLES, containersPerHostPerCycle: PER_HOST, subnet: SUBNET },
      summary: {
        pings: pings.length,
        firstPingSuccess: round(ok / pings.length, 4),
        firstReplyMs: { p50: percentile(delays, 50), p95: percentile(delays, 95), max: Math.max(...delays) },
        firstPingRttMs: { p50: percentile(rtts, 50), p95: percentile(rtts, 95), max: Math.max(...rtts), overHalfSecond: rtts.filter((r) => r > 500).length },
        secondsPerCycle: { p50: percentile(secs, 50), mean: round(secs.reduce((a, b) => a + b, 0) / secs.length, 2) },
      },
      targets: {
        firstPingSuccess100: ok === pings.length ? "met" : "not met",
        noGrowth: structural && rssNoise ? "met" : "not met",
      },
      before,
      after,
      growth: grew,
      rssSeries,
      rssSecondHalfKb: Object.fromEntries(Object.keys(end.rssKb).map((h) => [h, end.rssKb[h]! - mid.rssKb[h]!])),
      cycles,
    };
    mkdirSync(dirname(OUT), { recursive: true });
    writeFileSync(OUT, JSON.stringify(result, null, 2) + "\n");
    console.log(JSON.stringify({ summary: result.summary, targets: result.targets, growth: grew, rssSeries }, null, 2));
    console.log(`wrote ${OUT}`);
  } finally {
    for (const [i, h] of l.hosts.entries()) await docker(h, ["rm", "-f", `churn-anchor-${i}`]);
    await removeNetworkOn(l.hosts, NET);
    if (!reuse) await lab(["down"]);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
