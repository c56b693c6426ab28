/**
 * What an operator sees of the cluster: the `tsoverlay` CLI (ps, networks,
 * hosts, ports) run against each host's real plugin, and the Prometheus
 * endpoint each lab host serves on its underlay address (port 9473), whose
 * values must move with the lab: an endpoint started, a repair made.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { keys } from "../../driver/cluster/keys.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { consulWritable, freshHost, labCtl } from "./support/cluster.js";
import { pluginStatus } from "./support/publish.js";
import { docker, dockerOk, inNetns, inOverlayNs, readLab, run, waitFor, type LabHost, type Run } from "./support/lab.js";
import { IPAM, networkVni, removeContainers } from "./support/overlay.js";
import { metricsOf, sample } from "./support/metrics.js";
import { endpointId, publishedPorts } from "./support/publish.js";

const lab = readLab();
const [h1, h2, h3] = [lab.hosts[0]!, lab.hosts[1]!, lab.hosts[2]!];
const CLI = new URL("../../dist/cli/main.js", import.meta.url).pathname;
const NETS = { a: ["ot-a", "10.170.0.0/24"], b: ["ot-b", "10.171.0.0/24"] } as const;
const containers: [LabHost, string][] = [];

/** Where each container goes: two networks, three hosts; one port published with an ephemeral host port, one with a fixed one. */
const PLAN: { host: LabHost; name: string; net: string; publish?: string }[] = [
  { host: h1, name: "ot-web", net: "ot-a", publish: "80" },
  { host: h2, name: "ot-api", net: "ot-a" },
  { host: h3, name: "ot-db", net: "ot-b", publish: "18089:80" },
  { host: h1, name: "ot-cache", net: "ot-b" },
];

function cli(host: LabHost, args: string[]): Promise<Run> {
  return run("node", [CLI, "--socket", `${host.pluginsDir}/tsoverlay.sock`, ...args], { timeoutMs: 20_000 });
}

async function cliJson<T>(host: LabHost, args: string[]): Promise<T> {
  const r = await cli(host, [...args, "--json"]);
  expect(r.code, `tsoverlay ${args.join(" ")} on ${host.name}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as T;
}

interface PsRow {
  name: string;
  network: string;
  host: string;
  alive: boolean;
  address: string;
  mac: string;
  ports: { proto: string; hostIp: string; hostPort: number; containerPort: number; via: string }[];
}

beforeAll(async () => {
  for (const [name, subnet] of Object.values(NETS)) await dockerOk(h1, ["network", "create", "-d", "tsoverlay", ...IPAM, "--subnet", subnet, name]);
  for (const [name] of Object.values(NETS)) {
    for (const h of [h2, h3])
      await waitFor(`${name} on ${h.name}`, async () => ((await docker(h, ["network", "inspect", name])).code === 0 ? true : undefined), 10_000);
  }
  for (const c of PLAN) {
    containers.push([c.host, c.name]);
    await dockerOk(c.host, [
      "run",
      "-d",
      "--name",
      c.name,
      "--network",
      c.net,
      ...(c.publish === undefined ? [] : ["-p", c.publish]),
      lab.testImage,
      "sleep",
      "3600",
    ]);
  }
}, 120_000);

afterAll(async () => {
  for (const [h, c] of containers.splice(0).reverse()) await removeContainers(freshHost(h.name), [c]);
  for (const [name] of Object.values(NETS)) await docker(freshHost(h1.name), ["network", "rm", name]);
});

describe("tsoverlay CLI", () => {
  it("ps on every host lists every container of both networks with its host, address and MAC, and its published ports (the ephemeral one too)", async () => {
    const expected = await Promise.all(
      PLAN.map(async (c) => ({
        ...c,
        ip: await dockerOk(c.host, ["inspect", "-f", `{{(index .NetworkSettings.Networks "${c.net}").IPAddress}}`, c.name]),
        mac: await dockerOk(c.host, ["inspect", "-f", `{{(index .NetworkSettings.Networks "${c.net}").MacAddress}}`, c.name]),
        endpoint: await endpointId(c.host, c.name, c.net),
      })),
    );
    // The host port Docker's `-p 80` got, as h1's own plugin reports it.
    const web = expected[0]!;
    const ephemeral = (await publishedPorts(h1)).find((p) => p.endpointId === web.endpoint && p.containerPort === 80 && p.hostIp === "");
    expect(ephemeral, "h1's plugin publishes ot-web's port 80").toBeDefined();
    expect(ephemeral!.hostPort).toBeGreaterThan(1023);

    for (const viewer of [h1, h2, h3]) {
      // Ports reach the cluster record beside Docker's call: wait until every host shows them.
      const rows = await waitFor(
        `ps on ${viewer.name} shows every container with its ports`,
        async () => {
          const r = await cliJson<PsRow[]>(viewer, ["ps"]);
          const mine = r.filter((row) => row.name.startsWith("ot-"));
          const withPorts = mine.filter((row) => row.ports.some((p) => p.containerPort === 80));
          return mine.length === PLAN.length && withPorts.length === 2 ? mine : undefined;
        },
        10_000,
        200,
      );
      for (const e of expected) {
        const row = rows.find((r) => r.name === e.name);
        expect(row, `${e.name} in ps on ${viewer.name}`).toMatchObject({ network: e.net, host: e.host.addr, alive: true, address: e.ip, mac: e.mac });
      }
      const webRow = rows.find((r) => r.name === "ot-web")!;
      // "" is every address, as Docker gave it (the table shows it as 0.0.0.0, as docker ps does).
      expect(webRow.ports).toContainEqual({ proto: "tcp", hostIp: "", hostPort: ephemeral!.hostPort, containerPort: 80, via: "dnat" });
      const dbRow = rows.find((r) => r.name === "ot-db")!;
      expect(dbRow.ports).toContainEqual({ proto: "tcp", hostIp: "", hostPort: 18089, containerPort: 80, via: "dnat" });
    }

    // The table a person reads says the same.
    const text = await cli(h2, ["ps", "ot-a"]);
    expect(text.code).toBe(0);
    expect(text.stdout.split("\n")[0]).toMatch(/^NAME\s+NETWORK\s+HOST\s+ADDRESS\s+MAC\s+PORTS$/);
    expect(text.stdout).toMatch(
      new RegExp(
        `ot-web\\s+ot-a\\s+${h1.addr.replace(/\./g, "\\.")}\\s+${expected[0]!.ip.replace(/\./g, "\\.")}\\s+\\S+\\s+0\\.0\\.0\\.0:${ephemeral!.hostPort}->80/tcp \\(dnat\\)`,
      ),
    );
    expect(text.stdout).not.toContain("ot-db");
  });

  it("networks, hosts and ports describe the cluster the same way from any host", async () => {
    const nets = await cliJson<{ name: string; subnet: string; vni: number; hosts: string[]; endpoints: number }[]>(h3, ["networks"]);
    const a = nets.find((n) => n.name === "ot-a");
    expect(a).toMatchObject({ subnet: "10.170.0.0/24", endpoints: 2 });
    expect(a!.hosts).toEqual(expect.arrayContaining([h1.addr, h2.addr]));
    expect(a!.vni).toBe(await networkVni(h1, "10.170.0.0/24"));

    const hosts = await cliJson<
      { hostId: string; vtep: string; alive: boolean; pluginVersion: string; dockerVersion: string | null; endpoints: number; self: boolean }[]
    >(h2, ["hosts"]);
    for (const h of [h1, h2, h3]) {
      const row = hosts.find((r) => r.hostId === h.addr);
      expect(row, `${h.name} in hosts`).toMatchObject({ vtep: h.addr, alive: true, pluginVersion: "0.1.0", dockerVersion: h.dockerVersion, self: h === h2 });
    }
    expect(hosts.find((r) => r.hostId === h1.addr)!.endpoints).toBeGreaterThanOrEqual(2);

    const ports = await cliJson<{ host: string; hostPort: number; container: string; containerPort: number; via: string }[]>(h2, ["ports", "ot-b"]);
    expect(ports).toContainEqual(expect.objectContaining({ host: h3.addr, hostPort: 18089, container: "ot-db", containerPort: 80, via: "dnat" }));
    expect(ports.every((p) => p.container !== "ot-web")).toBe(true);
  });

  it("--version, -q and the plugin's version on its status endpoint: what scripts use", async () => {
    const version = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
    const v = await cli(h1, ["--version"]);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toBe(`tsoverlay version ${version}\n`);
    expect(((await pluginStatus(h1)) as { version?: string } | undefined)?.version).toBe(version);
    const quiet = async (args: string[]): Promise<string[]> => {
      const r = await cli(h2, [...args, "-q"]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.split("\n").filter((l) => l !== "");
    };
    expect(await quiet(["ps", "ot-a"])).toEqual((await cliJson<PsRow[]>(h2, ["ps", "ot-a"])).map((r) => r.name));
    expect(await quiet(["ps", "ot-a"])).toEqual(["ot-web", "ot-api"]);
    expect(await quiet(["hosts"])).toEqual((await cliJson<{ hostId: string }[]>(h2, ["hosts"])).map((h) => h.hostId));
    expect(await quiet(["hosts"])).toEqual(expect.arrayContaining([h1.addr, h2.addr, h3.addr]));
    expect(await quiet(["networks"])).toEqual(expect.arrayContaining(["ot-a", "ot-b"]));
  });

  it("status: one screen of this host and the cluster, the same as its JSON, exit 0 on a healthy lab", async () => {
    const r = await cli(h1, ["status"]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(new RegExp(`^host:\\s+${h1.addr.replace(/\./g, "\\.")} \\(.+\\), Docker \\d+\\.\\d+`));
    expect(lines).toContain("store:        consul, available");
    // Warnings (none expected on the lab, but not what this test is about) would not change the exit status.
    expect(lines.some((l) => /^doctor:\s+(no problem|0 problem\(s\), \d+ warning\(s\))/.test(l))).toBe(true);
    const j = await cliJson<{
      host: { id: string };
      store: { available: boolean };
      cluster: { known: boolean; hostsAlive: number; hostsGone: string[]; networks: number; endpointsHere: number };
      pendingTeardown: number;
      names: { serving: boolean };
    }>(h1, ["status"]);
    expect(j.host.id).toBe(h1.addr);
    expect(j.store.available).toBe(true);
    expect(j.cluster.known).toBe(true);
    expect(j.cluster.hostsAlive).toBeGreaterThanOrEqual(3);
    expect(j.cluster.networks).toBeGreaterThanOrEqual(2);
    // ot-web and ot-cache run on h1.
    expect(j.cluster.endpointsHere).toBeGreaterThanOrEqual(2);
    expect(j.pendingTeardown).toBe(0);
    expect(j.names.serving).toBe(true);
    expect(lines).toContain(
      `hosts:        ${j.cluster.hostsAlive} alive${j.cluster.hostsGone.length === 0 ? "" : `, ${j.cluster.hostsGone.length} gone (${j.cluster.hostsGone.join(", ")})`}`,
    );
  });

  it("runs without Node on the host: the tsoverlay/cli image, given the plugins folder, prints what the installed CLI prints", async () => {
    const inImage = await docker(
      h1,
      ["run", "--rm", "--network", "none", "-v", `${h1.pluginsDir}:/run/docker/plugins:ro`, "tsoverlay/cli", "networks", "--json"],
      {
        timeoutMs: 60_000,
      },
    );
    expect(inImage.code, inImage.stderr).toBe(0);
    const fromImage = JSON.parse(inImage.stdout) as { name: string; subnet: string }[];
    const fromHost = await cliJson<{ name: string; subnet: string }[]>(h1, ["networks"]);
    expect(fromImage.map((n) => [n.name, n.subnet])).toEqual(fromHost.map((n) => [n.name, n.subnet]));
    expect(fromImage.map((n) => n.name)).toEqual(expect.arrayContaining(["ot-a", "ot-b"]));
  });

  it("exits 2 with Docker's words for an unknown network or command, 3 when the plugin cannot be reached, and has --help on every command", async () => {
    const unknown = await cli(h1, ["ps", "no-such-net"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("network no-such-net not found");
    expect((await cli(h1, ["frobnicate"])).code).toBe(2);
    const away = await run("node", [CLI, "--socket", "/nonexistent/tsoverlay.sock", "hosts"]);
    expect(away.code).toBe(3);
    expect(away.stderr).toContain("cannot reach the tsoverlay plugin at /nonexistent/tsoverlay.sock");
    for (const c of ["ps", "networks", "hosts", "ports"]) {
      const help = await run("node", [CLI, c, "--help"]);
      expect(help.code, c).toBe(0);
      expect(help.stdout).toContain(`Usage: tsoverlay ${c}`);
    }
  });
});

describe("tsoverlay support-bundle", () => {
  it("writes one archive with every view, the log, h1's kernel tables and the store's records, and neither h1's Consul token nor its WireGuard private key", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tso-bundle-"));
    try {
      const file = join(dir, "bundle.tar.gz");
      const r = await cli(h1, ["support-bundle", "-o", file]);
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^wrote ${file.replace(/[./]/g, "\\$&")}: \\d+ files`));
      expect(statSync(file).mode & 0o777).toBe(0o600);

      const out = join(dir, "x");
      mkdirSync(out);
      const x = await run("tar", ["-xzf", file, "-C", out]);
      expect(x.code, x.stderr).toBe(0);
      const read = (name: string): string => readFileSync(join(out, name), "utf8");
      for (const name of ["manifest.json", "status.json", "doctor.json", "peers.json", "cluster.json", "plugin.log", "store.json", "kernel/host.txt"]) {
        expect(() => statSync(join(out, name)), name).not.toThrow();
      }
      const manifest = JSON.parse(read("manifest.json")) as { ready: boolean; parts: Record<string, { ok: boolean; files?: string[]; error?: string }> };
      expect(manifest.ready).toBe(true);
      for (const [part, result] of Object.entries(manifest.parts)) expect(result.ok, `${part}: ${result.error ?? ""}`).toBe(true);

      // ot-web (ot-a) and ot-cache (ot-b) run on h1: each network's namespace, with its vxlan device and VNI.
      for (const [name, subnet] of Object.values(NETS)) {
        const tables = read(`kernel/${name}.txt`);
        expect(tables).toContain(`subnet ${subnet}, network ${name}`);
        expect(tables).toMatch(new RegExp(`vxlan0(@\\S+)?: .*\\n(.*\\n)*?\\s+vxlan id ${await networkVni(h1, subnet)}\\b`));
        for (const c of ["# ip neigh show", "# bridge fdb show", "# iptables-save"]) expect(tables).toContain(c);
      }
      expect(read("kernel/host.txt")).toMatch(/# iptables-save\n(.*\n)*?:TSOVERLAY-/);
      expect(read("plugin.log").split("\n").length).toBeGreaterThan(1);
      const records = JSON.parse(read("store.json")) as { key: string }[];
      expect(records.map((rec) => rec.key)).toContain(keys.alive(h1.addr));
      expect(records.every((rec) => rec.key.startsWith("tsoverlay/"))).toBe(true);

      const token = readFileSync(join(h1.consulDir, "token"), "utf8").trim();
      const privateKey = readFileSync(`${h1.dataDir}/tsoverlay-state/wireguard/private.key`, "utf8").trim();
      expect(token.length).toBeGreaterThan(8);
      const archive = gunzipSync(readFileSync(file)).toString("latin1");
      expect(archive.includes(token), "h1's Consul token in the bundle").toBe(false);
      expect(archive.includes(privateKey), "h1's WireGuard private key in the bundle").toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("Prometheus metrics", () => {
  it("serves the families, and their values move with the lab: an endpoint started, a repair made", async () => {
    const before = await metricsOf(h1);
    for (const family of [
      "tsoverlay_networks",
      "tsoverlay_endpoints",
      "tsoverlay_peers_programmed",
      "tsoverlay_hosts_alive",
      "tsoverlay_store_up",
      "tsoverlay_published_ports",
      "tsoverlay_proxy_connections_total",
      "tsoverlay_proxy_bytes_total",
      "tsoverlay_dns_queries_total",
      "tsoverlay_driver_call_duration_seconds",
      "tsoverlay_store_request_duration_seconds",
      "tsoverlay_watch_lag_seconds",
      "tsoverlay_reconcile_repairs_total",
    ]) {
      expect(before, family).toContain(`# TYPE ${family} `);
    }
    expect(sample(before, "tsoverlay_endpoints", 'network="10.170.0.0/24"')).toBe(1);
    expect(sample(before, "tsoverlay_peers_programmed", 'network="10.170.0.0/24"')).toBe(1);
    expect(sample(before, "tsoverlay_hosts_alive")).toBe(3);
    expect(sample(before, "tsoverlay_store_up")).toBe(1);
    expect(sample(before, "tsoverlay_published_ports", 'proto="tcp",via="dnat"')).toBeGreaterThanOrEqual(1);
    const creates = sample(before, "tsoverlay_driver_call_duration_seconds_count", 'call="NetworkDriver.CreateEndpoint",result="ok"') ?? 0;
    expect(creates).toBeGreaterThanOrEqual(2);

    // An endpoint started on h1, and one on h2 that h1 must program.
    containers.push([h1, "ot-web2"], [h2, "ot-api2"]);
    await dockerOk(h1, ["run", "-d", "--name", "ot-web2", "--network", "ot-a", lab.testImage, "sleep", "3600"]);
    await dockerOk(h2, ["run", "-d", "--name", "ot-api2", "--network", "ot-a", lab.testImage, "sleep", "3600"]);
    const after = await waitFor(
      "h1's metrics to count the new endpoints",
      async () => {
        const m = await metricsOf(h1);
        return sample(m, "tsoverlay_peers_programmed", 'network="10.170.0.0/24"') === 2 ? m : undefined;
      },
      10_000,
      200,
    );
    expect(sample(after, "tsoverlay_endpoints", 'network="10.170.0.0/24"')).toBe(2);
    expect(sample(after, "tsoverlay_driver_call_duration_seconds_count", 'call="NetworkDriver.CreateEndpoint",result="ok"')).toBe(creates + 1);
    expect(sample(after, "tsoverlay_watch_lag_seconds_count")!).toBeGreaterThan(sample(before, "tsoverlay_watch_lag_seconds_count") ?? 0);
    expect(sample(after, "tsoverlay_store_request_duration_seconds_count")!).toBeGreaterThan(sample(before, "tsoverlay_store_request_duration_seconds_count")!);
    // h2's new endpoint was announced into h1's bridge when it was programmed (a gratuitous ARP), and nothing failed.
    const announced = (m: string, result: string): number => sample(m, "tsoverlay_peer_announcements_total", `family="ipv4",result="${result}"`) ?? 0;
    expect(announced(after, "sent")).toBeGreaterThan(announced(before, "sent"));
    expect(announced(after, "failed")).toBe(0);

    // A neighbor entry deleted behind the plugin's back: the periodic reconcile (2 s on the lab) puts it back and counts it.
    const repaired = sample(after, "tsoverlay_reconcile_repairs_total", 'table="neighbor",action="added"') ?? 0;
    const vni = await networkVni(h1, "10.170.0.0/24");
    const apiIp = await dockerOk(h2, ["inspect", "-f", '{{(index .NetworkSettings.Networks "ot-a").IPAddress}}', "ot-api2"]);
    const del = await inOverlayNs(h1, vni, ["ip", "neigh", "del", apiIp, "dev", "vxlan0"]);
    expect(del.code, del.stderr).toBe(0);
    await waitFor(
      "the repair to show in h1's metrics",
      async () => ((sample(await metricsOf(h1), "tsoverlay_reconcile_repairs_total", 'table="neighbor",action="added"') ?? 0) > repaired ? true : undefined),
      10_000,
      250,
    );
  });
});

interface ProbeJson {
  verdict: string;
  summary: string;
  pathMtu: number | null;
  neededMtu: number;
  rttMs: { avg: number } | null;
  vni: number;
}

describe("tsoverlay probe", () => {
  const probe = (args: string[]) => cli(h1, ["probe", h2.addr, "--network", "ot-a", ...args]);

  it("reports a healthy peer: reachable over VXLAN with the network's VNI, its round trip, and a path that carries the network's MTU", async () => {
    const r = await probe(["--json"]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const p = JSON.parse(r.stdout) as ProbeJson;
    expect(p).toMatchObject({ verdict: "ok", pathMtu: lab.mtu, neededMtu: lab.mtu, vni: await networkVni(h1, "10.170.0.0/24") });
    expect(p.rttMs!.avg).toBeGreaterThan(0);
    const text = await probe([]);
    expect(text.stdout).toMatch(new RegExp(`^${h2.addr.replace(/\./g, "\\.")} answers VXLAN \\(VNI \\d+\\)`));
    // A container address finds its host (and its network) by itself.
    const byAddress = await cli(h1, [
      "probe",
      await dockerOk(h2, ["inspect", "-f", '{{(index .NetworkSettings.Networks "ot-a").IPAddress}}', "ot-api"]),
      "--json",
    ]);
    expect((JSON.parse(byAddress.stdout) as ProbeJson).verdict).toBe("ok");
  });

  it("with UDP 4789 dropped by an iptables rule in the underlay, says the port is blocked (the host still answers ping)", async () => {
    // The underlay is a bridge whose frames pass iptables (br_netfilter, bridge-nf-call-iptables=1 in its namespace).
    const rule = ["FORWARD", "-p", "udp", "--dport", "4789", "-s", h1.addr, "-d", h2.addr, "-j", "DROP"];
    const add = await inNetns(lab.underlayNetns, ["iptables", "-w", "5", "-I", ...rule]);
    expect(add.code, add.stderr).toBe(0);
    try {
      const r = await probe(["--json"]);
      expect(r.code).toBe(1);
      const p = JSON.parse(r.stdout) as ProbeJson;
      expect(p.verdict).toBe("udp-blocked");
      expect(p.summary).toContain(`UDP 4789 blocked: ${h2.addr} answers ping`);
    } finally {
      await inNetns(lab.underlayNetns, ["iptables", "-w", "5", "-D", ...rule]);
    }
  });

  it("with the MTU of one underlay link lowered, reports the path MTU and that it is too small", async () => {
    const port = "h2"; // the underlay bridge's port towards h2 (test/lab/lib/underlay.sh)
    const lower = await inNetns(lab.underlayNetns, ["ip", "link", "set", port, "mtu", "1400"]);
    expect(lower.code, lower.stderr).toBe(0);
    try {
      const r = await probe(["--json"]);
      expect(r.code).toBe(1);
      const p = JSON.parse(r.stdout) as ProbeJson;
      expect(p).toMatchObject({ verdict: "mtu-too-small", pathMtu: 1400, neededMtu: lab.mtu });
      expect(p.summary).toMatch(/^MTU too small: the path to \S+ carries at most 1400-byte packets/);
    } finally {
      await inNetns(lab.underlayNetns, ["ip", "link", "set", port, "mtu", String(lab.mtu)]);
    }
  });
});

interface PeersJson {
  hosts: { host: string; network: string | null; missing: string[]; stale: string[]; extra: string[]; checked: boolean; error: string | null }[];
  missing: string[];
}

async function setReconcile(h: LabHost, seconds: number): Promise<void> {
  await dockerOk(h, ["plugin", "disable", "-f", lab.pluginName], { timeoutMs: 60_000 });
  await dockerOk(h, ["plugin", "set", lab.pluginName, `TSOVERLAY_RECONCILE_S=${seconds}`]);
  await dockerOk(h, ["plugin", "enable", lab.pluginName], { timeoutMs: 60_000 });
  await waitFor("the plugin to be ready", async () => ((await pluginStatus(h))?.ready ? true : undefined), 60_000, 250);
}

describe("tsoverlay peers", () => {
  it("reports nothing wrong on a healthy lab, from any host", async () => {
    const r = await cli(h3, ["peers", "--json"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const p = JSON.parse(r.stdout) as PeersJson;
    expect(p.missing).toEqual([]);
    expect(new Set(p.hosts.map((x) => x.host))).toEqual(new Set([h1.addr, h2.addr, h3.addr]));
    for (const row of p.hosts.filter((x) => x.network?.startsWith("ot-")))
      expect(row).toMatchObject({ checked: true, missing: [], stale: [], extra: [], error: null });
  });

  it("reports, from another host, a neighbor entry deleted by hand on h2 before h2's reconcile repairs it (its period lengthened for the test)", async () => {
    await setReconcile(h2, 600);
    try {
      const vni = await networkVni(h2, "10.170.0.0/24");
      const webIp = await dockerOk(h1, ["inspect", "-f", '{{(index .NetworkSettings.Networks "ot-a").IPAddress}}', "ot-web"]);
      await waitFor(
        "h2 to program ot-web again after its restart",
        async () => ((await inOverlayNs(h2, vni, ["ip", "neigh", "show", webIp, "dev", "vxlan0"])).stdout.includes(webIp) ? true : undefined),
        15_000,
        200,
      );
      const del = await inOverlayNs(h2, vni, ["ip", "neigh", "del", webIp, "dev", "vxlan0"]);
      expect(del.code, del.stderr).toBe(0);
      const r = await cli(h1, ["peers", "ot-a", "--json"]);
      expect(r.code).toBe(1);
      const p = JSON.parse(r.stdout) as PeersJson;
      const row = p.hosts.find((x) => x.host === h2.addr && x.network === "ot-a");
      expect(row?.missing.some((m) => m.startsWith(`neighbor ${webIp} → `))).toBe(true);
      expect(p.hosts.filter((x) => x.host !== h2.addr).every((x) => x.missing.length + x.stale.length + x.extra.length === 0)).toBe(true);
      const text = await cli(h1, ["peers", "ot-a"]);
      expect(text.stdout).toContain(`${h2.addr} ot-a: missing neighbor ${webIp}`);
    } finally {
      await setReconcile(h2, 2);
    }
    await waitFor("h2 to repair the entry after its restart", async () => ((await cli(h1, ["peers", "ot-a"])).code === 0 ? true : undefined), 15_000, 500);
  }, 180_000);
});

describe("tsoverlay doctor", () => {
  interface FindingJson {
    check: string;
    status: string;
    detail: string;
    fix?: string;
  }
  const doctor = async (h: LabHost): Promise<{ code: number; findings: FindingJson[] }> => {
    const r = await cli(h, ["doctor", "--json"]);
    return { code: r.code, findings: JSON.parse(r.stdout || "[]") as FindingJson[] };
  };

  it("passes on a lab host", async () => {
    const d = await doctor(h3);
    expect(d.findings.filter((f) => f.status === "problem")).toEqual([]);
    expect(d.code).toBe(0);
    expect(d.findings.map((f) => f.check)).toEqual(expect.arrayContaining(["ip_forward", "FORWARD chain", "underlay MTU", "cluster store", "clock", "Docker"]));
    expect(d.findings.find((f) => f.check === "clock")).toMatchObject({ status: "ok", detail: "3 host(s) within 2 s of this one" });
  });

  it("names ip_forward off, with its fix", async () => {
    expect((await inNetns(h3.netns, ["sysctl", "-qw", "net.ipv4.ip_forward=0"])).code).toBe(0);
    try {
      const d = await doctor(h3);
      expect(d.code).toBe(1);
      expect(d.findings.find((f) => f.check === "ip_forward")).toMatchObject({
        status: "problem",
        fix: expect.stringContaining("sysctl -w net.ipv4.ip_forward=1"),
      });
    } finally {
      await inNetns(h3.netns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    }
  });

  it("names an underlay MTU below the overlay's", async () => {
    expect((await inNetns(h3.netns, ["ip", "link", "set", "eth0", "mtu", "1400"])).code).toBe(0);
    try {
      const d = await doctor(h3);
      expect(d.code).toBe(1);
      const f = d.findings.find((x) => x.check === "underlay MTU");
      expect(f).toMatchObject({ status: "problem" });
      expect(f!.detail).toContain("eth0 has 1400");
    } finally {
      await inNetns(h3.netns, ["ip", "link", "set", "eth0", "mtu", String(lab.mtu)]);
    }
  });

  it("names the Consul agent stopped, with its fix", async () => {
    await labCtl(["agent", "stop", "3"]);
    try {
      const d = await doctor(h3);
      expect(d.code).toBe(1);
      const f = d.findings.find((x) => x.check === "cluster store");
      expect(f).toMatchObject({ status: "problem", fix: expect.stringContaining("start the Consul agent") });
      expect(f!.detail).toContain(`the Consul agent at ${lab.consulApi.url}`);
    } finally {
      await labCtl(["agent", "start", "3"]);
      await consulWritable(h3);
    }
  });
});
