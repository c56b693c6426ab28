/**
 * What changes between the Docker versions the lab runs (29, 28, 20.10; the
 * README's table of them is under Requirements): each behaviour is tested on
 * the versions where it exists. Tests that do not apply to the lab's version
 * are not registered at all, so nothing here is ever skipped.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { quiet } from "../support/eventually.js";
import { consulAtPattern, docker, dockerOk, inOverlayNs, readLab, run, waitFor, type LabHost } from "./support/lab.js";
import { clusterStatus, consulWritable, freshHost, labCtl } from "./support/cluster.js";
import { containerIp, createNetworkOn, networkVni, ping, removeContainers, removeNetworkOn, startContainer } from "./support/overlay.js";
import { publishedPorts } from "./support/publish.js";

const lab = readLab();
const version = lab.docker ?? "20.10";
const major = version === "20.10" ? 20 : Number(version);
const [h1, h2, h3] = [lab.hosts[0]!, lab.hosts[1]!, lab.hosts[2]!];
const FULL: Record<string, string> = { "29": "29.8.1", "28": "28.5.2", "20.10": "20.10." };

const outsideGet = (url: string) => run("nsenter", [`--net=/run/netns/${lab.outside.netns}`, "curl", "-s", "-m", "4", url]);
const defaultRoute = async (h: LabHost, c: string, family: "-4" | "-6" = "-4"): Promise<string> =>
  (await dockerOk(h, ["exec", c, "ip", family, "route", "show", "default"])).split("\n")[0] ?? "";

/** The lab's own daemon.json of each host (its `dns` setting), kept under every reconfiguration. */
const labDaemonConfig = new Map<string, Record<string, unknown>>();

/** Rewrites a host's daemon.json (the lab's settings plus `config`) and restarts its dockerd (the plugin and containers come back with it). */
async function reconfigure(h: LabHost, config: Record<string, unknown>): Promise<LabHost> {
  const file = `${h.dataDir}/daemon.json`;
  if (!labDaemonConfig.has(h.name)) labDaemonConfig.set(h.name, JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>);
  writeFileSync(file, JSON.stringify({ ...labDaemonConfig.get(h.name), ...config }));
  await labCtl(["host", "stop", h.name.slice(1)]);
  await labCtl(["host", "start", h.name.slice(1)]);
  const fresh = freshHost(h.name);
  await waitFor(`${h.name}'s plugin to be ready`, async () => ((await clusterStatus(fresh))?.ready ? true : undefined), 60_000, 250);
  return fresh;
}

describe(`Docker ${version}`, () => {
  it("every lab host runs the version the lab was asked for", async () => {
    for (const h of lab.hosts) expect(await dockerOk(h, ["version", "-f", "{{.Server.Version}}"])).toContain(FULL[version]);
  });

  it(
    major >= 29 ? "names the container to the IPAM: the plugin keeps the name with the endpoint" : "gives the IPAM no container name: none is invented",
    async () => {
      await createNetworkOn([h1], "dv-names", "10.91.0.0/24");
      try {
        await startContainer(lab, h1, "dv-named", "dv-names");
        const ip = await containerIp(h1, "dv-named", "dv-names");
        const s = (await clusterStatus(h1)) as { endpoints?: { ip: string; name: string | null }[] } | undefined;
        expect(s?.endpoints?.find((e) => e.ip === ip)?.name).toBe(major >= 29 ? "dv-named" : null);
      } finally {
        await removeContainers(h1, ["dv-named"]);
        await removeNetworkOn([h1], "dv-names");
      }
    },
  );

  describe("a container on a tsoverlay network and a dual-stack bridge, publishing -p", () => {
    afterAll(async () => {
      await removeContainers(h1, ["dv-pf"]);
      await docker(h1, ["network", "rm", "dv-tso", "dv-b6"]);
    });

    it("starts without a port clash, and each family is published by its gateway's network", async () => {
      await createNetworkOn([h1], "dv-tso", "10.92.0.0/24");
      await dockerOk(h1, ["network", "create", "--ipv6", "--subnet", "172.31.92.0/24", "--subnet", "fd00:92::/64", "dv-b6"]);
      // 28+ can make tsoverlay the IPv4 gateway with --gw-priority; 20.10 has no such knob.
      const net = major >= 28 ? "name=dv-tso,gw-priority=10" : "dv-tso";
      await dockerOk(h1, ["create", "--name", "dv-pf", "--network", net, "-p", "18092:80", lab.testImage, "httpd", "-f", "-p", "80", "-h", "/var/www"]);
      await dockerOk(h1, ["network", "connect", "dv-b6", "dv-pf"]);
      const start = await docker(h1, ["start", "dv-pf"]);
      expect(start.code, start.stderr).toBe(0);
      const tsoIp = await containerIp(h1, "dv-pf", "dv-tso");
      const v4gw = await defaultRoute(h1, "dv-pf");
      expect(await defaultRoute(h1, "dv-pf", "-6")).toMatch(/^default via fd00:92::1 /);
      const ours = (await publishedPorts(h1)).filter((p) => p.containerIp === tsoIp);
      if (major >= 29) {
        // Per-family gateways (29.4.1+): IPv4 through tsoverlay (the plugin publishes it), IPv6 through the bridge.
        expect(v4gw).toMatch(/^default via 10\.92\.0\.1 /);
        expect(ours.map((p) => p.hostPort)).toEqual([18092]);
        await quiet(3_000, "past the plugin's 2 s deferral of the [::] half: it would have taken [::]:18092 by now if it were free");
        const listening = await run("nsenter", [`--net=/run/netns/${h1.netns}`, "ss", "-Hltnp", "sport = :18092"]);
        expect(listening.stdout).toMatch(/0\.0\.0\.0:18092 .*node/);
        expect(listening.stdout).toMatch(/\[::\]:18092 .*docker-proxy/);
      } else {
        // 28 and 20.10: a dual-stack network takes the gateway for both families; the plugin publishes nothing.
        expect(v4gw).toMatch(/^default via 172\.31\.92\.1 /);
        expect(ours).toEqual([]);
      }
      expect((await outsideGet(`http://${h1.addr}:18092/`)).stdout).toContain("tsoverlay test image");
      // IPv6 is the bridge's to serve (20.10's own IPv6 proxying into a bridge needs host settings the lab does not make).
      if (major >= 28) {
        expect((await run("nsenter", [`--net=/run/netns/${h1.netns}`, "curl", "-s", "-m", "4", "http://[::1]:18092/"])).stdout).toContain(
          "tsoverlay test image",
        );
      }
    });
  });

  // --gw-priority and docker run with several --network exist from 28 on.
  if (major >= 28)
    describe("--gw-priority and containers on several networks", () => {
      afterAll(async () => {
        await removeContainers(h1, ["dv-gw1", "dv-gw2", "dv-gw3"]);
        await docker(h1, ["network", "rm", "dv-ga", "dv-gb", "dv-br"]);
      });

      it("tsoverlay + bridge: the gateway goes where --gw-priority says, and egress and publishing follow it", async () => {
        await createNetworkOn([h1], "dv-ga", "10.93.0.0/24");
        await dockerOk(h1, ["network", "create", "--subnet", "172.31.93.0/24", "dv-br"]);
        // Priority on tsoverlay: its gateway, its published port, egress through its uplink.
        await dockerOk(h1, [
          "run",
          "-d",
          "--name",
          "dv-gw1",
          "--network",
          "name=dv-ga,gw-priority=10",
          "--network",
          "dv-br",
          "-p",
          "18093:80",
          lab.testImage,
          "httpd",
          "-f",
          "-p",
          "80",
          "-h",
          "/var/www",
        ]);
        expect(await defaultRoute(h1, "dv-gw1")).toMatch(/^default via 10\.93\.0\.1 /);
        expect((await publishedPorts(h1)).map((p) => p.hostPort)).toContain(18093);
        expect((await outsideGet(`http://${h1.addr}:18093/`)).stdout).toContain("tsoverlay test image");
        expect((await docker(h1, ["exec", "dv-gw1", "sh", "-c", `echo | timeout 5 nc ${lab.outside.addr} 80`])).code).toBe(0);
        // Priority on the bridge: its gateway; the plugin publishes nothing for this one.
        await dockerOk(h1, [
          "run",
          "-d",
          "--name",
          "dv-gw2",
          "--network",
          "dv-ga",
          "--network",
          "name=dv-br,gw-priority=10",
          "-p",
          "18094:80",
          lab.testImage,
          "httpd",
          "-f",
          "-p",
          "80",
          "-h",
          "/var/www",
        ]);
        expect(await defaultRoute(h1, "dv-gw2")).toMatch(/^default via 172\.31\.93\.1 /);
        expect((await publishedPorts(h1)).map((p) => p.hostPort)).not.toContain(18094);
        expect((await outsideGet(`http://${h1.addr}:18094/`)).stdout).toContain("tsoverlay test image");
      });

      it("two tsoverlay networks: the one with priority is the gateway and publishes; both reach their peers", async () => {
        await createNetworkOn([h1], "dv-gb", "10.94.0.0/24");
        await dockerOk(h1, [
          "run",
          "-d",
          "--name",
          "dv-gw3",
          "--network",
          "dv-ga",
          "--network",
          "name=dv-gb,gw-priority=5",
          "-p",
          "18095:80",
          lab.testImage,
          "httpd",
          "-f",
          "-p",
          "80",
          "-h",
          "/var/www",
        ]);
        expect(await defaultRoute(h1, "dv-gw3")).toMatch(/^default via 10\.94\.0\.1 /);
        const gbIp = await containerIp(h1, "dv-gw3", "dv-gb");
        expect((await publishedPorts(h1)).filter((p) => p.hostPort === 18095).map((p) => p.containerIp)).toEqual([gbIp]);
        expect((await outsideGet(`http://${h1.addr}:18095/`)).stdout).toContain("tsoverlay test image");
        expect(await ping(h1, "dv-gw3", await containerIp(h1, "dv-gw1", "dv-ga"))).toBe(true);
      });
    });

  it("a dockerd restart with the plugin enabled and every Consul server stopped: no startup panic, the plugin answers at once, and says why a container cannot start", async () => {
    await createNetworkOn([h2, h3], "dv-rs", "10.95.0.0/24");
    const peer = await startContainer(lab, h3, "dv-rs3", "dv-rs");
    await startContainer(lab, h2, "dv-rs2", "dv-rs", ["--restart=always"]);
    await labCtl(["consul", "stop", "all"]);
    let h2b = h2;
    try {
      await labCtl(["host", "stop", "2"]);
      const t0 = Date.now();
      await labCtl(["host", "start", "2"]);
      h2b = freshHost("h2");
      const s = await waitFor(
        "h2's plugin to answer",
        async () => {
          const st = await clusterStatus(h2b);
          return st?.ready ? st : undefined;
        },
        30_000,
        200,
      );
      expect(Date.now() - t0).toBeLessThan(30_000);
      expect(s.store?.available).toBe(false);
      expect(await dockerOk(h2b, ["plugin", "inspect", "-f", "{{.Enabled}}", lab.pluginName])).toBe("true");
      const log = (await run("tail", ["-n", "400", `${h2b.dataDir}/dockerd.log`])).stdout;
      expect(log).not.toMatch(/panic:|nil pointer dereference/);
      // Docker tried the --restart=always container at boot; it could not get an address, and says why.
      // (Docker does not retry a start that failed at boot: it is started again by hand below.)
      const state = await waitFor(
        "Docker's attempt to start dv-rs2",
        async () => {
          const e = await dockerOk(h2b, ["inspect", "-f", "{{.State.Error}}", "dv-rs2"]);
          return e !== "" ? e : undefined;
        },
        60_000,
        500,
      );
      expect(state).toMatch(new RegExp(`tsoverlay: cluster store unavailable: Consul at ${consulAtPattern()} `));
    } finally {
      await labCtl(["consul", "start", "all"]);
    }
    try {
      await consulWritable(h2b);
      await dockerOk(h2b, ["start", "dv-rs2"]);
      // Both hosts' watches were backing off through the outage; they ask again within 2 s of Consul's return.
      await waitFor(
        "dv-rs2 on h2 to reach dv-rs3 on h3 after Consul's return",
        async () => ((await ping(h2b, "dv-rs2", peer, 1)) ? true : undefined),
        10_000,
        200,
      );
    } finally {
      await removeContainers(h2b, ["dv-rs2"]);
      await removeContainers(h3, ["dv-rs3"]);
      await removeNetworkOn([h2b, h3], "dv-rs");
    }
  });

  it(
    major >= 29
      ? "live-restore: after a dockerd restart, docker network connect fails (a Docker 29 bug) and Revoke never comes, yet removing the container frees its ports"
      : "live-restore: after a dockerd restart, a container keeps its published ports and its removal frees them",
    async () => {
      let h = await reconfigure(h2, { "live-restore": true });
      try {
        await createNetworkOn([h], "dv-lr", "10.96.0.0/24");
        // Its name sorts before dv-lr: connecting it moves the gateway, which is what 29 gets wrong after a live-restore.
        await dockerOk(h, ["network", "create", "--subnet", "172.31.96.0/24", "dv-alr"]);
        await dockerOk(h, ["run", "-d", "--name", "dv-lr", "--network", "dv-lr", "-p", "18096:80", lab.testImage, "httpd", "-f", "-p", "80", "-h", "/var/www"]);
        expect((await outsideGet(`http://${h.addr}:18096/`)).stdout).toContain("tsoverlay test image");
        await labCtl(["host", "stop", "2"]);
        await labCtl(["host", "start", "2"]);
        h = freshHost("h2");
        await waitFor("h2's plugin to be ready", async () => ((await clusterStatus(h))?.ready ? true : undefined), 60_000, 250);
        // The container lived through it, and so did its published port (served again once the plugin is back, if it was restarted).
        await waitFor(
          "the published port to answer after the restart",
          async () => ((await outsideGet(`http://${h.addr}:18096/`)).stdout.includes("tsoverlay test image") ? true : undefined),
          15_000,
          250,
        );
        const connect = await docker(h, ["network", "connect", "dv-alr", "dv-lr"]);
        if (major >= 29) expect(connect.stderr).toMatch(/remote network driver: endpoint .* not found/);
        else expect(connect.code, connect.stderr).toBe(0);
        await removeContainers(h, ["dv-lr"]);
        // Nothing leaks: the port is free again for the next container.
        await waitFor("the port to be released", async () => ((await publishedPorts(h)).some((p) => p.hostPort === 18096) ? undefined : true), 10_000, 200);
        await dockerOk(h, [
          "run",
          "-d",
          "--name",
          "dv-lr2",
          "--network",
          "dv-lr",
          "-p",
          "18096:80",
          lab.testImage,
          "httpd",
          "-f",
          "-p",
          "80",
          "-h",
          "/var/www",
        ]);
        expect((await outsideGet(`http://${h.addr}:18096/`)).stdout).toContain("tsoverlay test image");
      } finally {
        await removeContainers(h, ["dv-lr", "dv-lr2"]);
        await docker(h, ["network", "rm", "dv-alr"]);
        await removeNetworkOn([h], "dv-lr");
        await reconfigure(h, {});
      }
    },
  );

  // An opt-in firewall backend of Docker 29.
  if (major >= 29)
    describe('firewall-backend "nftables"', () => {
      it("egress, isolation between networks and the DNAT fast path still work", async () => {
        let h = await reconfigure(h3, { "firewall-backend": "nftables" });
        try {
          await createNetworkOn([h], "dv-nfa", "10.97.0.0/24");
          await createNetworkOn([h], "dv-nfb", "10.98.0.0/24");
          await dockerOk(h, [
            "run",
            "-d",
            "--name",
            "dv-nf1",
            "--network",
            "dv-nfa",
            "-p",
            "18097:80",
            lab.testImage,
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/var/www",
          ]);
          const other = await startContainer(lab, h, "dv-nf2", "dv-nfb");
          // Egress: the outside server sees the host's address.
          const who = await docker(h, [
            "exec",
            "dv-nf1",
            "sh",
            "-c",
            `printf 'GET /cgi-bin/whoami HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc ${lab.outside.addr} 80`,
          ]);
          expect(who.stdout).toContain(h.addr);
          // Isolation: nothing of network B through the gateway.
          expect(await ping(h, "dv-nf1", other)).toBe(false);
          // The DNAT fast path: the container sees the outside client's own address.
          const vni = await networkVni(h, "10.97.0.0/24");
          const dnatPackets = async (): Promise<number> => {
            const r = await run("nsenter", [`--net=/run/netns/${h.netns}`, "iptables", "-t", "nat", "-L", "TSOVERLAY-DNAT", "-n", "-v", "-x"]);
            return r.stdout
              .split("\n")
              .filter((l) => l.includes("dpt:18097"))
              .reduce((n, l) => n + Number(l.trim().split(/\s+/)[0]), 0);
          };
          const before = await dnatPackets();
          expect((await outsideGet(`http://${h.addr}:18097/`)).stdout).toContain("tsoverlay test image");
          expect((await publishedPorts(h)).find((p) => p.hostPort === 18097)?.kernelDnat).toBe(true);
          expect(await dnatPackets()).toBeGreaterThan(before);
          const nft = await run("nsenter", [`--net=/run/netns/${h.netns}`, "nft", "list", "tables"]);
          expect(nft.stdout).toMatch(/docker-bridges/);
          expect((await inOverlayNs(h, vni, ["ip", "-o", "link", "show", "gw0"])).code).toBe(0);
        } finally {
          await removeContainers(h, ["dv-nf1", "dv-nf2"]);
          await removeNetworkOn([h], "dv-nfa");
          await removeNetworkOn([h], "dv-nfb");
          h = await reconfigure(h, {});
        }
      });
    });
});
