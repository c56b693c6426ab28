/**
 * Every `docker network create` flag is honoured or refused with a clear
 * message; none is silently ignored. (--ipv4=false only exists in the CLI of
 * Docker 28 and later.)
 */
import { afterAll, describe, expect, it } from "vitest";
import { keys } from "../../driver/cluster/keys.js";
import { consulGetJson, docker, dockerOk, inOverlayNs, readLab, run, waitFor } from "./support/lab.js";
import { IPAM, containerIp, createNetworkOn, networkSubnet, networkVni, ping, removeContainers, startContainer } from "./support/overlay.js";

const lab = readLab();
const [h1, h2] = [lab.hosts[0]!, lab.hosts[1]!];
const created: [typeof h1, string][] = [];
const containers: [typeof h1, string][] = [];

async function create(h: typeof h1, name: string, args: string[]): Promise<{ code: number; stderr: string }> {
  const r = await docker(h, ["network", "create", "-d", "tsoverlay", ...args, name]);
  if (r.code === 0) created.push([h, name]);
  return r;
}

async function run1(h: typeof h1, name: string, net: string, extra: string[] = [], cmd = ["sleep", "600"]): Promise<string> {
  containers.push([h, name]);
  return dockerOk(h, ["run", "-d", "--name", name, "--network", net, ...extra, lab.testImage, ...cmd]);
}

afterAll(async () => {
  for (const [h, c] of containers.splice(0).reverse()) await removeContainers(h, [c]);
  for (const [h, n] of created.splice(0).reverse()) await docker(h, ["network", "rm", n]);
});

describe("--internal", () => {
  it("has no way out, publishes nothing, but its containers reach each other across hosts", async () => {
    expect((await create(h1, "nf-int", [...IPAM, "--internal", "--subnet", "10.70.0.0/24"])).code).toBe(0);
    await waitFor("nf-int on h2", async () => ((await networkSubnet(h2, "nf-int")) !== undefined ? true : undefined), 10_000);
    await run1(h1, "nf-int1", "nf-int", ["-p", "18081:80"], ["httpd", "-f", "-p", "80", "-h", "/var/www"]);
    await run1(h2, "nf-int2", "nf-int", ["--cap-add", "NET_ADMIN"]);
    const ip1 = await containerIp(h1, "nf-int1", "nf-int");
    const ip2 = await containerIp(h2, "nf-int2", "nf-int");
    expect(await ping(h1, "nf-int1", ip2)).toBe(true);
    expect(await ping(h2, "nf-int2", ip1)).toBe(true);
    // No default route, only the one to the name service; and a container that adds a default route itself still
    // gets nowhere: the network's uplink reaches the gateway bridge's own address and nothing else.
    expect(await dockerOk(h2, ["exec", "nf-int2", "ip", "route"])).not.toMatch(/^default/m);
    expect(await dockerOk(h2, ["exec", "nf-int2", "ip", "route"])).toMatch(/^100\.72\.0\.1 via 10\.70\.0\.1/m);
    const nsRoutes = await inOverlayNs(h2, await networkVni(h2, "10.70.0.0/24"), ["ip", "route"]);
    expect(nsRoutes.code).toBe(0);
    expect(nsRoutes.stdout).not.toMatch(/^default/m);
    expect((await docker(h2, ["exec", "nf-int2", "ip", "route", "add", "default", "via", "10.70.0.1"])).code).toBe(0);
    const out = await docker(h2, ["exec", "nf-int2", "sh", "-c", `timeout 5 nc ${lab.outside.addr} 80 </dev/null`]);
    expect(out.code).not.toBe(0);
    // -p on it publishes nothing, as with Docker's own internal networks.
    const outside = await run("nsenter", [`--net=/run/netns/${lab.outside.netns}`, "curl", "-s", "-m", "3", `http://${h1.addr}:18081/`]);
    expect(outside.code).not.toBe(0);
    // Every host has it, created once: the same name again is Docker's "already exists", another network of
    // its subnet the pool overlap (a host that creates networks by hand and disagrees on --internal is
    // refused with both settings named: test/unit/overlay-driver.test.ts).
    expect((await create(lab.hosts[2]!, "nf-int", [...IPAM, "--subnet", "10.70.0.0/24"])).stderr).toMatch(/already exists/);
    expect((await create(lab.hosts[2]!, "nf-int-b", [...IPAM, "--subnet", "10.70.0.0/24"])).stderr).toMatch(
      /Pool overlaps with other one on this address space/,
    );
  });
});

describe("flags tsoverlay honours", () => {
  it("--ip-range keeps addresses inside the range", async () => {
    expect((await create(h1, "nf-range", [...IPAM, "--subnet", "10.71.0.0/24", "--ip-range", "10.71.0.128/25"])).code).toBe(0);
    await run1(h1, "nf-range1", "nf-range");
    expect(await containerIp(h1, "nf-range1", "nf-range")).toMatch(/^10\.71\.0\.(12[89]|1[3-9]\d|2[0-4]\d|25[0-4])$/);
  });

  it("--gateway is the containers' gateway", async () => {
    expect((await create(h1, "nf-gw", [...IPAM, "--subnet", "10.72.0.0/24", "--gateway", "10.72.0.254"])).code).toBe(0);
    await run1(h1, "nf-gw1", "nf-gw");
    expect(await dockerOk(h1, ["exec", "nf-gw1", "ip", "route"])).toMatch(/^default via 10\.72\.0\.254 /m);
  });

  it("--attachable is accepted (every tsoverlay network takes standalone containers) and --label shows in inspect", async () => {
    expect((await create(h1, "nf-att", [...IPAM, "--attachable", "--label", "team=blue", "--subnet", "10.73.0.0/24"])).code).toBe(0);
    await run1(h1, "nf-att1", "nf-att");
    expect(await dockerOk(h1, ["network", "inspect", "-f", '{{.Attachable}} {{index .Labels "team"}}', "nf-att"])).toBe("true blue");
  });

  it("--scope local is accepted; --scope swarm is refused by Docker outside swarm", async () => {
    expect((await create(h1, "nf-local", [...IPAM, "--scope", "local", "--subnet", "10.74.0.0/24"])).code).toBe(0);
    const swarm = await create(h1, "nf-swarm", [...IPAM, "--scope", "swarm", "--subnet", "10.75.0.0/24"]);
    expect(swarm.code).not.toBe(0);
    expect(swarm.stderr).toMatch(/swarm/);
  });

  it("--config-only and --config-from: a network takes its subnet and IPAM from a config network", async () => {
    const cfg = await docker(h1, ["network", "create", "--config-only", ...IPAM, "--subnet", "10.76.0.0/24", "nf-cfg"]);
    expect(cfg.code, cfg.stderr).toBe(0);
    created.push([h1, "nf-cfg"]);
    expect((await create(h1, "nf-from", ["--config-from", "nf-cfg"])).code).toBe(0);
    await run1(h1, "nf-from1", "nf-from");
    expect(await containerIp(h1, "nf-from1", "nf-from")).toMatch(/^10\.76\.0\.\d+$/);
  });

  it("-o com.docker.network.driver.mtu, -o com.docker.network.driver.overlay.vxlanid_list and -o com.docker.network.container_iface_prefix", async () => {
    const opts = [
      "-o",
      "com.docker.network.driver.mtu=1400",
      "-o",
      "com.docker.network.driver.overlay.vxlanid_list=7707",
      "-o",
      "com.docker.network.container_iface_prefix=ovl",
    ];
    expect((await create(h1, "nf-opts", [...IPAM, ...opts, "--subnet", "10.77.0.0/24"])).code).toBe(0);
    await run1(h1, "nf-opts1", "nf-opts");
    expect(await dockerOk(h1, ["exec", "nf-opts1", "cat", "/sys/class/net/ovl0/mtu"])).toBe("1400");
    expect((await consulGetJson<{ vni: number }>(h1, keys.network("10.77.0.0/24")))?.vni).toBe(7707);
  });
});

describe("flags tsoverlay refuses, saying why", () => {
  it.each([
    ["--ipv6", ["--ipv6", "--subnet", "10.78.0.0/24", "--subnet", "fd00:78::/64"], /IPv6 pools are not supported yet: tsoverlay allocates IPv4 pools only/],
    ["--aux-address", ["--subnet", "10.79.0.0/24", "--aux-address", "router=10.79.0.5"], /--aux-address is not supported.*--ip-range/],
    [
      "-o com.docker.network.bridge.*",
      ["--subnet", "10.80.0.0/24", "-o", "com.docker.network.bridge.name=br-x"],
      /option com\.docker\.network\.bridge\.name belongs to Docker's bridge driver; tsoverlay does not support it/,
    ],
    [
      "-o com.docker.network.host_ipv4",
      ["--subnet", "10.81.0.0/24", "-o", "com.docker.network.host_ipv4=198.18.0.11"],
      /option com\.docker\.network\.host_ipv4 is not supported by tsoverlay/,
    ],
    ["an unknown -o", ["--subnet", "10.82.0.0/24", "-o", "vnii=5"], /unknown option vnii/],
    ["Docker's own IPAM", ["--subnet", "10.83.0.0/24"], /add --ipam-driver tsoverlay/],
  ])("%s", async (_what, args, message) => {
    const ipam = _what === "Docker's own IPAM" ? [] : IPAM;
    const r = await create(h1, "nf-refused", [...ipam, ...args]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(message);
    // Nothing half-created: the network does not exist and its subnet is free again.
    expect((await docker(h1, ["network", "inspect", "nf-refused"])).code).not.toBe(0);
  });

  it("a second network with a subnet this host already has, with Docker's words for overlapping pools; the first keeps working", async () => {
    await createNetworkOn([h1, h2], "nf-first", "10.84.0.0/24");
    created.push([h1, "nf-first"], [h2, "nf-first"]);
    const r = await create(h1, "nf-second", [...IPAM, "--subnet", "10.84.0.0/24"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/invalid pool request: Pool overlaps with other one on this address space/);
    const ip = await startContainer(lab, h2, "nf-f2", "nf-first");
    containers.push([h2, "nf-f2"]);
    await run1(h1, "nf-f1", "nf-first");
    expect(await ping(h1, "nf-f1", ip)).toBe(true);
    expect(await consulGetJson(h1, keys.networkHost("10.84.0.0/24", h1.addr))).toBeDefined();
  });
});
