/**
 * A living cluster on the real lab: addresses that move between hosts,
 * churn, Consul going away (a leader, then every server), a dockerd restart,
 * a plugin restart during an outage, and a host that dies for good.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keys, parseByHostKey } from "../../driver/cluster/keys.js";
import { LAB_SCRIPT, consulAtPattern, consulGetJson, consulKeys, docker, dockerOk, pluginPid, readLab, run, waitFor, type LabHost } from "./support/lab.js";
import { clusterStatus, consulLeader, consulWritable, forgotten, freshHost, labCtl, timed } from "./support/cluster.js";
import { containerIp, createNetworkOn, networkVni, ping, removeContainers, removeNetworkOn, startContainer } from "./support/overlay.js";

const lab = readLab();
const [h1, h2, h3] = [lab.hosts[0]!, lab.hosts[1]!, lab.hosts[2]!];

const macOf = async (h: LabHost, c: string): Promise<string> => (await dockerOk(h, ["exec", c, "cat", "/sys/class/net/eth0/address"])).toLowerCase();
const endpointOf = (h: LabHost, c: string, net: string): Promise<string> =>
  dockerOk(h, ["inspect", "-f", `{{(index .NetworkSettings.Networks "${net}").EndpointID}}`, c]);
/** One ICMP echo, and the first one only: no retries behind the test's back. */
const firstPing = async (h: LabHost, c: string, ip: string): Promise<boolean> => (await docker(h, ["exec", c, "ping", "-c", "1", "-W", "3", ip])).code === 0;

describe("addresses that move between hosts", () => {
  const NET = "lc-move";
  const SUBNET = "10.60.0.0/24";
  beforeAll(async () => {
    await createNetworkOn([h1, h2, h3], NET, SUBNET);
    for (const [h, name] of [
      [h1, "lc-w1"],
      [h2, "lc-w2"],
      [h3, "lc-w3"],
    ] as const)
      await startContainer(lab, h, name, NET);
  });
  afterAll(async () => {
    await removeContainers(h1, ["lc-w1", "lc-old", "lc-new"]);
    await removeContainers(h2, ["lc-w2", "lc-old", "lc-new"]);
    await removeContainers(h3, ["lc-w3", "lc-old", "lc-new"]);
    await removeNetworkOn([h1, h2, h3], NET);
  });

  it("a container started with --ip X right after X was removed on another host is reached from every host on the first ping, while it sends nothing", async () => {
    const watchers = new Map<LabHost, string>([
      [h1, "lc-w1"],
      [h2, "lc-w2"],
      [h3, "lc-w3"],
    ]);
    const X = "10.60.0.200";
    for (const [from, to] of [
      [h1, h2],
      [h2, h1],
      [h1, h3],
      [h3, h2],
    ] as const) {
      await startContainer(lab, from, "lc-old", NET, ["--ip", X]);
      // The destination's own containers talk to X first, as in real use: its bridge has seen X behind the tunnel.
      expect(await firstPing(to, watchers.get(to)!, X)).toBe(true);
      await removeContainers(from, ["lc-old"]);
      await startContainer(lab, to, "lc-new", NET, ["--ip", X]);
      for (const [h, w] of watchers) {
        expect(await firstPing(h, w, X), `first ping from ${h.name} to ${X} (moved ${from.name} → ${to.name})`).toBe(true);
      }
      await removeContainers(to, ["lc-new"]);
    }
  });

  it("50 churn cycles with addresses moving between hosts: every first ping succeeds, both ways", async () => {
    const failures: string[] = [];
    const [X, Y] = ["10.60.0.210", "10.60.0.211"];
    for (let cycle = 0; cycle < 50; cycle++) {
      // X and Y swap hosts every cycle.
      const [a, b] = cycle % 2 === 0 ? [h1, h2] : [h2, h1];
      await Promise.all([startContainer(lab, a, "lc-ca", NET, ["--ip", X]), startContainer(lab, b, "lc-cb", NET, ["--ip", Y])]);
      const [ab, ba] = await Promise.all([firstPing(a, "lc-ca", Y), firstPing(b, "lc-cb", X)]);
      if (!ab) failures.push(`cycle ${cycle}: ${a.name} → ${b.name}`);
      if (!ba) failures.push(`cycle ${cycle}: ${b.name} → ${a.name}`);
      await Promise.all([removeContainers(a, ["lc-ca"]), removeContainers(b, ["lc-cb"])]);
    }
    expect(failures).toEqual([]);
  });
});

describe("the cluster store away", () => {
  const NET = "lc-outage";
  const SUBNET = "10.61.0.0/24";
  let vni = 0;
  beforeAll(async () => {
    await createNetworkOn([h1, h2, h3], NET, SUBNET);
    vni = await networkVni(h1, SUBNET);
  });
  afterAll(async () => {
    await labCtl(["consul", "start", "all"]).catch(() => undefined);
    await consulWritable(h1);
    await removeContainers(h1, ["lc-o1", "lc-o3", "lc-lead", "lc-down"]);
    await removeContainers(h2, ["lc-o2"]);
    await removeNetworkOn([h1, h2, h3], NET);
  });

  it("docker rm -f with every Consul server stopped succeeds at once and leaves nothing behind once they are back, across a plugin restart", async () => {
    const ip = await startContainer(lab, h1, "lc-o1", NET);
    const ip2 = await startContainer(lab, h2, "lc-o2", NET);
    await startContainer(lab, h1, "lc-o3", NET);
    const mac = await macOf(h1, "lc-o1");
    const ep = await endpointOf(h1, "lc-o1", NET);
    expect(await ping(h2, "lc-o2", ip)).toBe(true);

    await labCtl(["consul", "stop", "all"]);
    try {
      const [rm, ms] = await timed(docker(h1, ["rm", "-f", "lc-o1"]));
      expect(rm.code, rm.stderr).toBe(0);
      expect(ms).toBeLessThan(10_000);
      // Gone from this host at once: no veth end left in the host.
      const links = await run("nsenter", [`--net=/run/netns/${h1.netns}`, "ip", "-o", "link", "show"]);
      expect(links.stdout).not.toContain(`tso${ep.slice(0, 9)}`);
      const during = await clusterStatus(h1);
      expect(during?.store?.available).toBe(false);
      expect(during?.store?.error).toMatch(new RegExp(`^tsoverlay: cluster store unavailable: Consul at ${consulAtPattern()} `));
      expect(during?.pendingTeardown?.pending).toBeGreaterThanOrEqual(2);

      // The plugin restarts while Consul is still away: it comes up, and keeps what it owes the cluster.
      const before = await pluginPid(h1);
      process.kill(before!, "SIGKILL");
      await waitFor(
        "h1's plugin to come back ready",
        async () => {
          const pid = await pluginPid(h1);
          const s = pid !== undefined && pid !== before ? await clusterStatus(h1) : undefined;
          return s?.ready === true ? s : undefined;
        },
        60_000,
        200,
      );
      expect((await clusterStatus(h1))?.pendingTeardown?.pending).toBeGreaterThanOrEqual(2);
      // It serves from its own state: the container that stayed still talks across hosts.
      expect(await ping(h1, "lc-o3", ip2)).toBe(true);
    } finally {
      // Whatever failed above: the servers come back, or every later test waits for them in vain.
      await labCtl(["consul", "start", "all"]);
    }
    await waitFor("the queued teardown to land", async () => ((await clusterStatus(h1))?.pendingTeardown?.pending === 0 ? true : undefined), 90_000, 500);
    expect(await consulKeys(h1, keys.hostEndpoint(h1.addr, SUBNET, ep))).toEqual([]);
    expect(await consulKeys(h1, keys.address(SUBNET, ip))).toEqual([]);
    for (const h of [h1, h2, h3]) {
      await waitFor(`${h.name} to forget ${ip}`, async () => ((await forgotten(h, vni, ip, mac)) ? true : undefined), 10_000, 200);
    }
  });

  it("a docker run issued at once after the Consul leader is stopped succeeds, after the election", async () => {
    await consulWritable(h1);
    const leader = await consulLeader(lab, h1);
    await labCtl(["consul", "stop", String(leader)]);
    try {
      const r = await docker(h1, ["run", "-d", "--name", "lc-lead", "--network", NET, lab.testImage, "sleep", "600"]);
      expect(r.code, r.stderr).toBe(0);
    } finally {
      await labCtl(["consul", "start", String(leader)]);
    }
  });

  it("with every server stopped, docker run fails within the retry budget with words that say so, and so does the status endpoint", async () => {
    await consulWritable(h1);
    await waitFor("nothing queued", async () => ((await clusterStatus(h1))?.pendingTeardown?.pending === 0 ? true : undefined), 30_000, 200);
    await labCtl(["consul", "stop", "all"]);
    const [r, ms] = await timed(docker(h1, ["run", "-d", "--name", "lc-down", "--network", NET, lab.testImage, "sleep", "600"]));
    expect(r.code).not.toBe(0);
    // Which words depends on how far the agent got in noticing (no servers, no leader, a broken RPC): always in words.
    expect(r.stderr).toMatch(
      new RegExp(
        `IpamDriver\\.RequestAddress: tsoverlay: cluster store unavailable: Consul at ${consulAtPattern()} (has no leader|has no servers to talk to|did not answer in time|cannot reach its servers \\(.+\\)) \\(retried for 1\\d s\\)`,
      ),
    );
    expect(r.stderr).not.toMatch(/internal error|HTTP 500/);
    expect(ms).toBeLessThan(25_000);
    const s = await clusterStatus(h1);
    expect(s?.store?.error).toMatch(new RegExp(`^tsoverlay: cluster store unavailable: Consul at ${consulAtPattern()} `));
    await removeContainers(h1, ["lc-down"]);
    await labCtl(["consul", "start", "all"]);
    await consulWritable(h1);
    const again = await docker(h1, ["run", "-d", "--name", "lc-down", "--network", NET, lab.testImage, "sleep", "600"]);
    expect(again.code, again.stderr).toBe(0);
  });
});

describe("restarts", () => {
  const NET = "lc-restart";
  const SUBNET = "10.62.0.0/24";
  afterAll(async () => {
    await removeContainers(h1, ["lc-r1"]);
    await removeContainers(freshHost("h2"), ["lc-r2"]);
    await removeNetworkOn([h1, freshHost("h2")], NET);
  });

  it("a dockerd restart: --restart=always containers come back and talk to other hosts both ways; the old endpoints leave no trace", async () => {
    await createNetworkOn([h1, h2], NET, SUBNET);
    const ip1 = await startContainer(lab, h1, "lc-r1", NET);
    await startContainer(lab, h2, "lc-r2", NET, ["--restart=always"]);
    const oldEp = await endpointOf(h2, "lc-r2", NET);
    await labCtl(["host", "stop", "2"]);
    await labCtl(["host", "start", "2"]);
    const h2b = freshHost("h2");
    const ip2 = await waitFor(
      "lc-r2 to be running again",
      async () => {
        const ip = await containerIp(h2b, "lc-r2", NET).catch(() => "");
        return ip !== "" ? ip : undefined;
      },
      60_000,
      250,
    );
    await waitFor("h2's plugin to be ready", async () => ((await clusterStatus(h2b))?.ready ? true : undefined), 30_000, 200);
    expect(await ping(h2b, "lc-r2", ip1)).toBe(true);
    expect(await ping(h1, "lc-r1", ip2)).toBe(true);
    await waitFor(
      "the old endpoint's record to go",
      async () => ((await consulKeys(h1, keys.hostEndpoint(h2.addr, SUBNET, oldEp))).length === 0 ? true : undefined),
      20_000,
      250,
    );
    const endpointKeys = (await consulKeys(h1, keys.byHost())).filter((k) => {
      const parsed = parseByHostKey(k);
      return parsed?.kind === "endpoint" && parsed.subnet === SUBNET;
    });
    expect(endpointKeys).toHaveLength(2);
  });

  it("a host gone for good: its peers are dropped once its liveness lapses, its records are collected after the grace, and it can come back", async () => {
    const net = "lc-dead";
    const subnet = "10.63.0.0/24";
    await createNetworkOn([h1, h2, h3], net, subnet);
    const vni = await networkVni(h1, subnet);
    await startContainer(lab, h1, "lc-d1", net);
    const ip3 = await startContainer(lab, h3, "lc-d3", net);
    const mac3 = await macOf(h3, "lc-d3");
    expect(await ping(h1, "lc-d1", ip3)).toBe(true);
    const t0 = Date.now();
    await labCtl(["host", "kill", "3"]);
    try {
      for (const h of [h1, h2]) {
        await waitFor(`${h.name} to drop h3's endpoint`, async () => ((await forgotten(h, vni, ip3, mac3)) ? true : undefined), 45_000, 500);
      }
      const dropped = Date.now() - t0;
      // Collected: lab grace 30 s after a live host first saw it gone. The lab's per-host ACLs keep
      // h1 and h2 from deleting what h3 wrote under its own prefix: those records stay (no reader takes
      // a record of a host that is not alive), and the gone marker says so, with the command that
      // removes them; h3 deletes them itself when it comes back.
      const own = keys.hostPrefix(h3.addr);
      await waitFor(
        "h3's records to be collected",
        async () => {
          const all = await run("bash", [LAB_SCRIPT, "consul", "kv", "get", "-recurse", "tsoverlay/v1/"]);
          // The catalog of network names and the layout marker are the cluster's, not h3's: they may say h3 wrote them.
          const h3s = all.stdout
            .split("\n")
            .filter((line) => line.includes(h3.addr) && !line.startsWith(keys.catalog()) && !line.startsWith(keys.layout()))
            .filter((line) => !line.startsWith(own) && !line.startsWith(keys.goneHost(h3.addr)));
          return all.code === 0 && h3s.length === 0 ? true : undefined;
        },
        120_000,
        1_000,
      );
      const collected = Date.now() - t0;
      expect(collected - dropped).toBeGreaterThanOrEqual(25_000);
      process.stdout.write(`h3 killed: peers dropped after ${dropped} ms, records collected after ${collected} ms\n`);
      const marker = await waitFor(
        "the gone marker to name what is left",
        async () => {
          const m = await consulGetJson<{ leftover?: string }>(h1, keys.goneHost(h3.addr));
          return m?.leftover !== undefined ? m : undefined;
        },
        30_000,
        500,
      );
      expect(marker.leftover).toContain(`consul kv delete -recurse ${own}`);
      expect((await consulKeys(h1, own)).some((k) => parseByHostKey(k)?.kind === "endpoint")).toBe(true);
    } finally {
      await labCtl(["host", "revive", "3"]);
    }
    const h3b = freshHost("h3");
    await waitFor("h3's plugin to be ready", async () => ((await clusterStatus(h3b))?.ready ? true : undefined), 60_000, 250);
    // Back: it removes its own leftovers and its gone marker.
    await waitFor(
      "h3 to clear its leftovers",
      async () =>
        (await consulKeys(h1, keys.goneHost(h3.addr))).length === 0 &&
        !(await consulKeys(h1, keys.hostPrefix(h3.addr))).some((k) => parseByHostKey(k)?.kind === "endpoint")
          ? true
          : undefined,
      60_000,
      500,
    );
    const ipNew = await startContainer(lab, h3b, "lc-d3b", net);
    expect(await ping(h1, "lc-d1", ipNew)).toBe(true);
    await removeContainers(h3b, ["lc-d3", "lc-d3b"]);
    await removeContainers(h1, ["lc-d1"]);
    await removeNetworkOn([h1, h2, h3b], net);
  });
});
