import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker, dockerOk, readLab } from "./support/lab.js";
import { containerIp, createNetworkOn, ping, removeContainers, removeNetworkOn, startContainer } from "./support/overlay.js";

const lab = readLab();
const [h1, h2, h3] = [lab.hosts[0]!, lab.hosts[1]!, lab.hosts[2]!];
const NET = "ovl-basic";
const SUBNET = "10.30.0.0/24";

describe("one overlay across hosts", () => {
  let ipA = "";
  let ipB = "";

  beforeAll(async () => {
    await createNetworkOn([h1, h2, h3], NET, SUBNET);
    ipA = await startContainer(lab, h1, "basic-a", NET);
    ipB = await startContainer(lab, h2, "basic-b", NET);
  });

  afterAll(async () => {
    await removeContainers(h1, ["basic-a"]);
    await removeContainers(h2, ["basic-b"]);
    await removeNetworkOn([h1, h2, h3], NET);
  });

  it("gives containers on different hosts distinct addresses in the subnet", () => {
    expect(ipA).toMatch(/^10\.30\.0\.\d+$/);
    expect(ipB).toMatch(/^10\.30\.0\.\d+$/);
    expect(ipA).not.toBe(ipB);
  });

  it("sets the overlay MTU from the underlay (1500 − 50) inside the container", async () => {
    const mtu = await dockerOk(h1, ["exec", "basic-a", "cat", "/sys/class/net/eth0/mtu"]);
    expect(Number(mtu)).toBe(lab.mtu - 50);
  });

  it("lets containers on different hosts ping each other", async () => {
    expect(await ping(h1, "basic-a", ipB)).toBe(true);
    expect(await ping(h2, "basic-b", ipA)).toBe(true);
  });

  it("moves 100 MB over TCP across hosts intact", async () => {
    await dockerOk(h2, [
      "exec",
      "basic-b",
      "sh",
      "-c",
      "mkdir -p /tmp/www && dd if=/dev/urandom of=/tmp/www/data bs=1M count=100 2>/dev/null && httpd -p 8080 -h /tmp/www",
    ]);
    const want = (await dockerOk(h2, ["exec", "basic-b", "sha256sum", "/tmp/www/data"])).split(/\s+/)[0];
    const got = await docker(h1, ["exec", "basic-a", "sh", "-c", `wget -qO- http://${ipB}:8080/data | sha256sum`], { timeoutMs: 120_000 });
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout.split(/\s+/)[0]).toBe(want);
  });

  it("fails a network create with an invalid -o option, naming it", async () => {
    const r = await docker(h1, ["network", "create", "-d", "tsoverlay", "--ipam-driver", "tsoverlay", "--subnet", "10.39.0.0/24", "-o", "vni=abc", "bad-opt"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/invalid option vni=abc/);
    const r2 = await docker(h1, [
      "network",
      "create",
      "-d",
      "tsoverlay",
      "--ipam-driver",
      "tsoverlay",
      "--subnet",
      "10.39.0.0/24",
      "-o",
      "vnii=5000",
      "bad-opt",
    ]);
    expect(r2.code).not.toBe(0);
    expect(r2.stderr).toMatch(/unknown option vnii/);
    expect((await docker(h1, ["network", "inspect", "bad-opt"])).code).not.toBe(0);
  });

  it("refuses, on another host, the same name or the same subnet with different options: one cluster network of each", async () => {
    await createNetworkOn([h1, h2], "ident-a", "10.38.0.0/24", ["-o", "vni=7001"]);
    try {
      const args = ["network", "create", "-d", "tsoverlay", "--ipam-driver", "tsoverlay", "--subnet", "10.38.0.0/24", "-o", "vni=7002"];
      const sameName = await docker(h2, [...args, "ident-a"]);
      expect(sameName.code).not.toBe(0);
      expect(sameName.stderr).toMatch(/already exists/);
      const sameSubnet = await docker(h2, [...args, "ident-b"]);
      expect(sameSubnet.code).not.toBe(0);
      expect(sameSubnet.stderr).toMatch(/Pool overlaps with other one on this address space/);
      expect((await docker(h2, ["network", "inspect", "ident-b"])).code).not.toBe(0);
      expect(await dockerOk(h2, ["network", "inspect", "-f", "{{json .Options}}", "ident-a"])).toBe('{"vni":"7001"}');
    } finally {
      await removeNetworkOn([h1, h2], "ident-a");
    }
  });

  it("refuses a tsoverlay network without the tsoverlay IPAM", async () => {
    const r = await docker(h1, ["network", "create", "-d", "tsoverlay", "--subnet", "10.37.0.0/24", "no-ipam"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--ipam-driver tsoverlay/);
  });

  it("keeps addresses of a removed container's peers consistent: a new container reaches the old ones", async () => {
    const ipC = await startContainer(lab, h3, "basic-c", NET);
    try {
      expect(await ping(h3, "basic-c", ipA)).toBe(true);
      expect(await ping(h3, "basic-c", ipB)).toBe(true);
      expect(await containerIp(h3, "basic-c", NET)).toBe(ipC);
    } finally {
      await removeContainers(h3, ["basic-c"]);
    }
  });
});
