/**
 * One cluster network: created once on any host, on every host within 2 s;
 * removed once, everywhere (a host with containers on it keeps it until they
 * go); containers reach each other by name and by network alias across
 * hosts, scoped like Docker scopes names; the name service answers nobody
 * outside; names keep resolving across a plugin restart.
 */
import { afterAll, describe, expect, it } from "vitest";
import { quiet } from "../support/eventually.js";
import { clusterStatus, freshHost, labCtl } from "./support/cluster.js";
import { docker, dockerOk, inNetns, pluginPid, readLab, run, waitFor, type LabHost } from "./support/lab.js";
import { IPAM, networkSubnet, ping, removeContainers, resolve } from "./support/overlay.js";

const lab = readLab();
const [h1, h2, h3] = [lab.hosts[0]!, lab.hosts[1]!, lab.hosts[2]!];
const NAME_SERVER = "100.72.0.1";
const containers: [LabHost, string][] = [];
const networks = new Set<string>();

async function start(h: LabHost, name: string, network: string, extra: string[] = []): Promise<void> {
  containers.push([h, name]);
  await dockerOk(h, ["run", "-d", "--name", name, "--network", network, ...extra, lab.testImage, "sleep", "3600"]);
}

async function createOnce(h: LabHost, name: string, args: string[]): Promise<void> {
  networks.add(name);
  await dockerOk(h, ["network", "create", "-d", "tsoverlay", ...IPAM, ...args, name]);
}

async function ipOf(h: LabHost, container: string, network: string): Promise<string> {
  return dockerOk(h, ["inspect", "-f", `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, container]);
}

afterAll(async () => {
  for (const [h, c] of containers.splice(0).reverse()) await removeContainers(freshHost(h.name), [c]);
  for (const n of networks) await docker(freshHost(h1.name), ["network", "rm", n]);
});

describe("a network created once", () => {
  it("is on every host within 2 s, with the same subnet, options and labels; containers on each host join it and reach each other by name", async () => {
    const t0 = Date.now();
    await createOnce(h1, "cn-one", ["--subnet", "10.160.0.0/24", "-o", "mtu=1400", "--label", "team=blue"]);
    const created = Date.now();
    const delays: number[] = [];
    for (const h of [h2, h3]) {
      await waitFor(`cn-one on ${h.name}`, async () => ((await networkSubnet(h, "cn-one")) === "10.160.0.0/24" ? true : undefined), 10_000, 20);
      delays.push(Date.now() - created);
      const inspected = await dockerOk(h, ["network", "inspect", "-f", "{{json .Options}} {{json .Labels}} {{.Driver}}", "cn-one"]);
      expect(inspected).toBe('{"mtu":"1400"} {"team":"blue"} tsoverlay');
    }
    expect(Math.max(...delays), `propagation delays ${delays.join(", ")} ms (create took ${created - t0} ms)`).toBeLessThanOrEqual(2_000);

    await start(h1, "cn-a", "cn-one");
    await start(h2, "cn-b", "cn-one");
    await start(h3, "cn-c", "cn-one");
    const ipA = await ipOf(h1, "cn-a", "cn-one");
    await waitFor("cn-b to resolve cn-a", async () => ((await resolve(h2, "cn-b", "cn-a")).join() === ipA ? true : undefined), 5_000, 100);
    expect(await ping(h2, "cn-b", "cn-a")).toBe(true);
    expect(await ping(h3, "cn-c", "cn-b")).toBe(true);
    expect(await ping(h1, "cn-a", "cn-c")).toBe(true);
  });

  it("a host whose dockerd and plugin start after the network was made gets it too", async () => {
    await labCtl(["host", "stop", "3"]);
    try {
      await createOnce(h1, "cn-late", ["--subnet", "10.161.0.0/24"]);
      await waitFor("cn-late on h2", async () => ((await networkSubnet(h2, "cn-late")) !== undefined ? true : undefined), 10_000);
    } finally {
      await labCtl(["host", "start", "3"]);
    }
    const h3now = freshHost("h3");
    await waitFor("cn-late on h3 after its start", async () => ((await networkSubnet(h3now, "cn-late")) === "10.161.0.0/24" ? true : undefined), 60_000, 200);
  });

  it("a dockerd restart with --restart=always containers on a propagated network does not hang (no Docker API call inside a driver call)", async () => {
    await createOnce(h1, "cn-boot", ["--subnet", "10.159.0.0/24"]);
    await waitFor("cn-boot on h2", async () => ((await networkSubnet(h2, "cn-boot")) !== undefined ? true : undefined), 10_000);
    await start(h2, "cn-boot-a", "cn-boot", ["--restart", "always"]);
    const t0 = Date.now();
    await labCtl(["host", "stop", "2"]);
    await labCtl(["host", "start", "2"]);
    const h2now = freshHost("h2");
    await waitFor(
      "cn-boot-a to run again",
      async () => ((await docker(h2now, ["inspect", "-f", "{{.State.Running}}", "cn-boot-a"])).stdout.trim() === "true" ? true : undefined),
      60_000,
      200,
    );
    expect(Date.now() - t0).toBeLessThan(120_000);
    expect((await dockerOk(h2now, ["network", "ls", "--format", "{{.Name}}"])).split("\n")).toContain("cn-boot");
  });

  it("docker network rm on any host removes it everywhere; a host with a container on it keeps it until the container goes", async () => {
    await createOnce(h1, "cn-rm", ["--subnet", "10.162.0.0/24"]);
    for (const h of [h2, h3]) await waitFor(`cn-rm on ${h.name}`, async () => ((await networkSubnet(h, "cn-rm")) !== undefined ? true : undefined), 10_000);
    await start(h3, "cn-stay", "cn-rm");
    await dockerOk(h2, ["network", "rm", "cn-rm"]);
    await waitFor("cn-rm to leave h1", async () => ((await networkSubnet(h1, "cn-rm")) === undefined ? true : undefined), 10_000);
    // h3 keeps it, usable, and says it is being removed.
    await quiet(1_000, "h3 must keep a network its container is on: a wrong removal would come within this");
    expect(await networkSubnet(h3, "cn-rm")).toBe("10.162.0.0/24");
    const status = (await clusterStatus(h3)) as unknown as { propagation?: { draining: string[] } } | undefined;
    expect(status?.propagation?.draining).toContain("cn-rm");
    await removeContainers(h3, ["cn-stay"]);
    await waitFor("cn-rm to leave h3", async () => ((await networkSubnet(h3, "cn-rm")) === undefined ? true : undefined), 10_000);
    networks.delete("cn-rm");
  });

  it("two hosts creating one name with different subnets at once: one network wins everywhere, the other host is told why", async () => {
    const [a, b] = await Promise.all([
      docker(h1, ["network", "create", "-d", "tsoverlay", ...IPAM, "--subnet", "10.165.0.0/24", "cn-twin"]),
      docker(h2, ["network", "create", "-d", "tsoverlay", ...IPAM, "--subnet", "10.166.0.0/24", "cn-twin"]),
    ]);
    networks.add("cn-twin");
    expect(a.code === 0 || b.code === 0).toBe(true);
    // Whatever each daemon said at first, the cluster ends with one cn-twin: the same subnet everywhere.
    const settled = await waitFor(
      "one cn-twin everywhere",
      async () => {
        const subnets = await Promise.all([h1, h2, h3].map((h) => networkSubnet(h, "cn-twin")));
        return subnets.every((x) => x !== undefined && x === subnets[0]) ? subnets[0] : undefined;
      },
      15_000,
      100,
    );
    if (a.code !== 0 || b.code !== 0) return; // one daemon refused it itself ("already exists"): nothing was undone
    const loser = settled === "10.165.0.0/24" ? h2 : h1;
    const status = (await clusterStatus(loser)) as unknown as { propagation?: { refused: { problem: string }[] } } | undefined;
    expect(status?.propagation?.refused.map((r) => r.problem)).toContainEqual(
      expect.stringMatching(/network cn-twin: this host's is 10\.16[56]\.0\.0\/24, the cluster's cn-twin is 10\.16[56]\.0\.0\/24 .*pick another name/),
    );
  });
});

describe("names across hosts", () => {
  it("resolve by name and by network alias; a shared alias answers with every address; a stopped container's name goes within 1 s; other networks' containers do not see them; other names go to the host's resolver", async () => {
    await createOnce(h1, "cn-names", ["--subnet", "10.167.0.0/24"]);
    await createOnce(h1, "cn-other", ["--subnet", "10.168.0.0/24"]);
    for (const n of ["cn-names", "cn-other"]) await waitFor(`${n} on h2`, async () => ((await networkSubnet(h2, n)) !== undefined ? true : undefined), 10_000);
    await start(h1, "cn-asker", "cn-names");
    await start(h2, "cn-web", "cn-names", ["--network-alias", "web", "--network-alias", "front"]);
    await start(h3, "cn-web2", "cn-names", ["--network-alias", "front"]);
    await start(h1, "cn-stranger", "cn-other");
    const web = await ipOf(h2, "cn-web", "cn-names");
    const web2 = await ipOf(h3, "cn-web2", "cn-names");

    await waitFor("cn-web by name", async () => ((await resolve(h1, "cn-asker", "cn-web")).join() === web ? true : undefined), 5_000, 100);
    expect(await resolve(h1, "cn-asker", "web")).toEqual([web]);
    expect(await resolve(h1, "cn-asker", "front")).toEqual([web, web2].sort());
    // Scoped like Docker: a container on another tsoverlay network does not resolve them.
    expect(await resolve(h1, "cn-stranger", "cn-web")).toEqual([]);
    expect(await resolve(h1, "cn-stranger", "front")).toEqual([]);
    // Not an overlay name: the host's own resolver answers it.
    expect(await resolve(h1, "cn-asker", "outside.lab")).toEqual([lab.outside.addr]);

    // The status endpoint shows the whole network (every host's endpoints) and the one setting names need.
    const st = (await clusterStatus(h1)) as unknown as {
      names: { serving: boolean; setting?: string };
      networks: { subnet: string; names: string[]; endpoints: { host: string; ip: string; name: string | null }[] }[];
    };
    expect(st.names.serving).toBe(true);
    expect(st.names.setting).toContain(NAME_SERVER);
    const net = st.networks.find((n) => n.subnet === "10.167.0.0/24");
    expect(net?.names).toEqual(["cn-names"]);
    expect(net?.endpoints.map((e) => `${e.name}@${e.host}=${e.ip}`).sort()).toEqual(
      [`cn-asker@${h1.addr}=${await ipOf(h1, "cn-asker", "cn-names")}`, `cn-web@${h2.addr}=${web}`, `cn-web2@${h3.addr}=${web2}`].sort(),
    );

    await dockerOk(h3, ["stop", "-t", "0", "cn-web2"]);
    const stopped = Date.now();
    await waitFor("front to lose cn-web2", async () => ((await resolve(h1, "cn-asker", "front")).join() === web ? true : undefined), 5_000, 50);
    expect(Date.now() - stopped).toBeLessThanOrEqual(1_500); // 1 s, plus one nslookup round
  });

  it("resolve on an --internal network too", async () => {
    await createOnce(h1, "cn-int", ["--internal", "--subnet", "10.169.0.0/24"]);
    await waitFor("cn-int on h2", async () => ((await networkSubnet(h2, "cn-int")) !== undefined ? true : undefined), 10_000);
    await start(h1, "cn-int-a", "cn-int");
    await start(h2, "cn-int-b", "cn-int");
    const b = await ipOf(h2, "cn-int-b", "cn-int");
    await waitFor("cn-int-b by name", async () => ((await resolve(h1, "cn-int-a", "cn-int-b")).join() === b ? true : undefined), 5_000, 100);
    // Still no way out.
    const out = await docker(h1, ["exec", "cn-int-a", "sh", "-c", `timeout 5 nc ${lab.outside.addr} 80 </dev/null`]);
    expect(out.code).not.toBe(0);
  });

  it("the name service answers nobody outside: not the outside network, not another address on the underlay", async () => {
    const router = `/run/netns/${lab.underlayRouter}`;
    // Route the name service's address to h1 from the underlay router (and so from the outside, which routes through it), then ask.
    await dockerOk(h1, ["network", "ls"]); // h1's name service is up (its plugin answers)
    await run("nsenter", [`--net=${router}`, "ip", "route", "replace", `${NAME_SERVER}/32`, "via", h1.addr]);
    try {
      for (const ns of [router, `/run/netns/${lab.outside.netns}`]) {
        // A name the host's resolver knows: an open resolver would answer it.
        const r = await run("nsenter", [`--net=${ns}`, "/bin/busybox", "timeout", "4", "nslookup", "-type=a", "outside.lab", NAME_SERVER]);
        expect(r.code, `${ns}: ${r.stdout}`).not.toBe(0);
        expect(r.stdout).not.toMatch(/Name:/);
      }
      // The same query from a container is answered (the route and the listener are there; only the source differs).
      expect(await resolve(h1, "cn-asker", "cn-web")).toHaveLength(1);
    } finally {
      await run("nsenter", [`--net=${router}`, "ip", "route", "del", `${NAME_SERVER}/32`]);
    }
  });

  it("a Docker bridge with a name of its own asks the name service too; its rule goes with its network", async () => {
    const iface = "tsocustom0";
    const guard = async (): Promise<string> => (await inNetns(h1.netns, ["iptables", "-S", "TSOVERLAY-INPUT"])).stdout;
    networks.add("cn-bridge");
    await dockerOk(h1, ["network", "create", "-o", `com.docker.network.bridge.name=${iface}`, "cn-bridge"]);
    await waitFor(`the guard to let ${iface} ask`, async () => ((await guard()).includes(`-i ${iface} `) ? true : undefined), 5_000, 100);
    // The name service as its only resolver: an answer means its queries were not dropped.
    const r = await docker(h1, ["run", "--rm", "--network", "cn-bridge", "--dns", NAME_SERVER, lab.testImage, "nslookup", "-type=a", "outside.lab"], {
      timeoutMs: 30_000,
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(lab.outside.addr);
    await dockerOk(h1, ["network", "rm", "cn-bridge"]);
    networks.delete("cn-bridge");
    await waitFor(`${iface}'s rule to go`, async () => (!(await guard()).includes(`-i ${iface} `) ? true : undefined), 5_000, 100);
  });

  it("keep resolving across a plugin restart: no failed lookup longer than the restart", async () => {
    const before = await pluginPid(h1);
    expect(before).toBeDefined();
    const failures: { at: number; ms: number }[] = [];
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        const t = Date.now();
        const ok = (await resolve(h1, "cn-asker", "cn-web")).length === 1;
        if (!ok) failures.push({ at: t, ms: Date.now() - t });
        await quiet(100, "a lookup every 100 ms or so, throughout the restart");
      }
    })();
    const killed = Date.now();
    process.kill(before!, "SIGKILL");
    await waitFor(
      "the plugin to be back",
      async () => {
        const pid = await pluginPid(h1);
        return pid !== undefined && pid !== before ? pid : undefined;
      },
      60_000,
      100,
    );
    await waitFor("names to resolve again", async () => ((await resolve(h1, "cn-asker", "cn-web")).length === 1 ? true : undefined), 30_000, 100);
    const restartMs = Date.now() - killed;
    await quiet(2_000, "lookups go on after the restart: none may fail any more");
    stop = true;
    await loop;
    const lastFailureEnd = Math.max(0, ...failures.map((f) => f.at + f.ms - killed));
    expect(lastFailureEnd, `failures ${JSON.stringify(failures.map((f) => [f.at - killed, f.ms]))}`).toBeLessThanOrEqual(restartMs);
  });
});
