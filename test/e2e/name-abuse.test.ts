/**
 * The name service against containers that misuse it: a container only on
 * an --internal network gets its network's names and nothing from the
 * outside (no query of it reaches the outside resolver), and a container
 * flooding the name service does not stop another's lookups.
 *
 * What reaches the outside resolver (dnsmasq at lab.outside.addr, in the
 * outside namespace) is counted by iptables rules there that match a label
 * unique to this run in the query's bytes (xt_string); a rule that drops
 * such queries stands in for an upstream that never answers.
 */
import { spawn } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { clusterStatus, freshHost } from "./support/cluster.js";
import { collect, docker, dockerOk, inNetns, readLab, waitFor, type LabHost } from "./support/lab.js";
import { IPAM, networkSubnet, removeContainers } from "./support/overlay.js";

const lab = readLab();
const [h1, h2] = [lab.hosts[0]!, lab.hosts[1]!];
const NAME_SERVER = "100.72.0.1";
const RUN = Date.now().toString(36);
const containers: [LabHost, string][] = [];
const networks = new Set<string>();
/** iptables rules added in the outside namespace (as `-D` arguments), removed after. */
const outsideRules: string[][] = [];

interface NameCounts {
  serving: boolean;
  queries: number;
  notForwarded: number;
  refused: number;
  rateLimited: number;
  clientBusy: number;
}

async function nameCounts(h: LabHost): Promise<NameCounts> {
  const st = (await clusterStatus(h)) as unknown as { names?: NameCounts } | undefined;
  if (st?.names === undefined) throw new Error(`${h.name}: no name service status`);
  return st.names;
}

async function createOnce(h: LabHost, name: string, args: string[]): Promise<void> {
  networks.add(name);
  await dockerOk(h, ["network", "create", "-d", "tsoverlay", ...IPAM, ...args, name]);
}

async function start(h: LabHost, name: string, network: string): Promise<string> {
  containers.push([h, name]);
  await dockerOk(h, ["run", "-d", "--name", name, "--network", network, lab.testImage, "sleep", "3600"]);
  return dockerOk(h, ["inspect", "-f", `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, name]);
}

/** The IPv4 addresses a container resolves a name to (busybox nslookup, through Docker's embedded DNS); [] if it does not resolve. */
async function resolve(h: LabHost, container: string, name: string): Promise<string[]> {
  const r = await docker(h, ["exec", container, "nslookup", "-type=a", name], { timeoutMs: 30_000 });
  if (r.code !== 0) return [];
  const answer = r.stdout.split(/\n\s*\n/).find((block) => /Name:/.test(block)) ?? "";
  return [...answer.matchAll(/Address(?: \d+)?:\s*(\d+\.\d+\.\d+\.\d+)/g)].map((m) => m[1]!).sort();
}

/** A rule in the outside namespace's INPUT chain for DNS queries (UDP and TCP) carrying `label`: counting only, or dropping them. */
async function outsideRule(label: string, action: "count" | "drop"): Promise<void> {
  for (const proto of ["udp", "tcp"]) {
    const rule = ["INPUT", "-p", proto, "--dport", "53", "-m", "string", "--algo", "bm", "--string", label, ...(action === "drop" ? ["-j", "DROP"] : [])];
    const r = await inNetns(lab.outside.netns, ["iptables", "-I", ...rule]);
    if (r.code !== 0) throw new Error(`iptables -I ${rule.join(" ")} in ${lab.outside.netns}: ${r.stderr.trim()}`);
    outsideRules.push(rule);
  }
}

/** Packets the outside namespace's rules for `label` have seen. */
async function outsideSeen(label: string): Promise<number> {
  const r = await inNetns(lab.outside.netns, ["iptables", "-n", "-v", "-x", "-L", "INPUT"]);
  if (r.code !== 0) throw new Error(`iptables -L INPUT in ${lab.outside.netns}: ${r.stderr.trim()}`);
  return r.stdout
    .split("\n")
    .filter((line) => line.includes(`"${label}"`))
    .reduce((sum, line) => sum + Number(line.trim().split(/\s+/)[0]), 0);
}

afterAll(async () => {
  for (const rule of outsideRules.splice(0)) await inNetns(lab.outside.netns, ["iptables", "-D", ...rule]);
  for (const [h, c] of containers.splice(0).reverse()) await removeContainers(freshHost(h.name), [c]);
  for (const n of networks) await docker(freshHost(h1.name), ["network", "rm", n]);
});

describe("--internal: no way out for names", () => {
  it("a container only on an --internal network resolves its network's names across hosts, and no outside name: no query of it reaches the outside resolver", async () => {
    const label = `tsoleak${RUN}`;
    const secret = `${label}.outside.lab`;
    await outsideRule(label, "count");
    await createOnce(h1, "na-int", ["--internal", "--subnet", "10.180.0.0/24"]);
    await createOnce(h1, "na-open", ["--subnet", "10.181.0.0/24"]);
    for (const n of ["na-int", "na-open"]) await waitFor(`${n} on h2`, async () => ((await networkSubnet(h2, n)) !== undefined ? true : undefined), 10_000);
    await start(h1, "na-int-a", "na-int");
    const b = await start(h2, "na-int-b", "na-int");
    await start(h1, "na-open-a", "na-open");

    await waitFor("na-int-b by name from h1", async () => ((await resolve(h1, "na-int-a", "na-int-b")).join() === b ? true : undefined), 10_000, 100);
    const before = await nameCounts(h1);
    expect(await resolve(h1, "na-int-a", secret)).toEqual([]);
    expect(await resolve(h1, "na-int-a", "outside.lab")).toEqual([]);
    expect(await outsideSeen(label)).toBe(0);
    // The name service said no (SERVFAIL without forwarding), rather than the query getting lost on the way.
    expect((await nameCounts(h1)).notForwarded).toBeGreaterThan(before.notForwarded);

    // The rule counts: the same name from a container with a way out is forwarded, and seen.
    expect(await resolve(h1, "na-open-a", secret)).toEqual([lab.outside.addr]);
    expect(await outsideSeen(label)).toBeGreaterThan(0);
  });

  it("a container on an --internal and a non-internal network is forwarded, as Docker does", async () => {
    const label = `tsomixed${RUN}`;
    await outsideRule(label, "count");
    await dockerOk(h1, ["network", "connect", "na-open", "na-int-a"]);
    const name = `${label}.outside.lab`;
    await waitFor(
      "na-int-a, now on na-open too, to resolve an outside name",
      async () => ((await resolve(h1, "na-int-a", name)).length > 0 ? true : undefined),
      10_000,
      200,
    );
    expect(await resolve(h1, "na-int-a", name)).toEqual([lab.outside.addr]);
    expect(await outsideSeen(label)).toBeGreaterThan(0);
  });
});

describe("one container cannot starve the others' names", () => {
  it("while a container floods the name service with queries for a name the upstream never answers, another's lookups keep answering", async () => {
    const blackhole = `tsoblackhole${RUN}`;
    await outsideRule(blackhole, "drop");
    await createOnce(h1, "na-flood", ["--subnet", "10.182.0.0/24"]);
    await waitFor("na-flood on h2", async () => ((await networkSubnet(h2, "na-flood")) !== undefined ? true : undefined), 10_000);
    await start(h1, "na-flooder", "na-flood");
    await start(h1, "na-victim", "na-flood");
    const peer = await start(h2, "na-peer", "na-flood");
    await waitFor("na-peer by name", async () => ((await resolve(h1, "na-victim", "na-peer")).join() === peer ? true : undefined), 10_000, 100);
    const before = await nameCounts(h1);

    // 2,200 queries a second (the review's 1,100 in half a second, kept up) from the flooder's own network namespace, until stopped.
    const pid = await dockerOk(h1, ["inspect", "-f", "{{.State.Pid}}", "na-flooder"]);
    const fixture = new URL("./fixtures/dns-flood.mjs", import.meta.url).pathname;
    const flooder = spawn("nsenter", [`--net=/proc/${pid}/ns/net`, process.execPath, fixture, NAME_SERVER, `${blackhole}.outside.lab`, "2200", "60000"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const flooded = collect(flooder, 180_000);
    try {
      await waitFor(
        "the flood to be limited",
        async () => {
          const now = await nameCounts(h1);
          return now.rateLimited + now.clientBusy > before.rateLimited + before.clientBusy + 1000 ? true : undefined;
        },
        10_000,
        100,
      );
      // Meanwhile: a name across hosts (only the name service knows it; before, it got REFUSED) and an outside name (forwarded).
      for (let i = 0; i < 5; i++) {
        expect(await resolve(h1, "na-victim", "na-peer"), `lookup ${i} of na-peer during the flood`).toEqual([peer]);
        expect(await resolve(h1, "na-victim", "outside.lab"), `lookup ${i} of outside.lab during the flood`).toEqual([lab.outside.addr]);
      }
      // The lookups above ran during the flood: it was still going.
      expect(flooder.exitCode).toBeNull();
    } finally {
      flooder.kill("SIGTERM");
      await flooded;
    }
    const after = await nameCounts(h1);
    // The host's own limit was never reached: the flooder ran out of its share first.
    expect(after.refused).toBe(before.refused);
    expect(after.rateLimited).toBeGreaterThan(before.rateLimited);
  });
});
