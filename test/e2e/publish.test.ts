import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker, dockerOk, inNetns, readLab, waitFor, type LabHost } from "./support/lab.js";
import { createNetworkOn, removeContainers, removeNetworkOn } from "./support/overlay.js";
import { endpointId, pluginStatus, publishedPorts } from "./support/publish.js";

const lab = readLab();
const [h1, h2] = [lab.hosts[0]!, lab.hosts[1]!];
const NET = "pub";
const PAGE = "tsoverlay test image";

const curl = (host: { netns: string }, url: string) => inNetns(host.netns, ["curl", "-sS", "--max-time", "5", url]);

function web(host: LabHost, name: string, publish: string[]): Promise<string> {
  return dockerOk(host, [
    "run",
    "-d",
    "--name",
    name,
    "--network",
    NET,
    ...publish.flatMap((p) => ["-p", p]),
    lab.testImage,
    "httpd",
    "-f",
    "-p",
    "80",
    "-h",
    "/var/www",
  ]);
}

describe("published ports through the embedded proxy", () => {
  beforeAll(async () => {
    await createNetworkOn([h1, h2], NET, "10.43.0.0/24");
    await web(h1, "pub-web", ["18080:80", "127.0.0.1:18082:80", "[::]:18081:80"]);
  });

  afterAll(async () => {
    await removeContainers(h1, ["pub-web", "pub-eph", "pub-again", "pub-clash", "pub-udp"]);
    await removeNetworkOn([h1, h2], NET);
  });

  it("serves -p 18080:80 to a remote client, to the host on its own address and 127.0.0.1, and to containers via the host address", async () => {
    for (const [from, url] of [
      [lab.outside, `http://${h1.addr}:18080/`],
      [h1, `http://${h1.addr}:18080/`],
      [h1, "http://127.0.0.1:18080/"],
    ] as const) {
      const r = await curl(from, url);
      // On a failure, say what curl saw, and what the kernel and the plugin hold for the port.
      const why = r.stdout.includes(PAGE)
        ? ""
        : [r.stderr, (await inNetns(h1.netns, ["iptables", "-t", "nat", "-S"])).stdout, JSON.stringify(await pluginStatus(h1))].join("\n");
      expect(r.stdout, `${from.netns} → ${url}: ${why}`).toContain(PAGE);
    }
    const fromOtherHost = await docker(h2, ["run", "--rm", lab.testImage, "timeout", "10", "wget", "-qO-", `http://${h1.addr}:18080/`]);
    expect(fromOtherHost.stdout).toContain(PAGE);
    const hairpin = await docker(h1, ["run", "--rm", lab.testImage, "timeout", "10", "wget", "-qO-", `http://${h1.addr}:18080/`]);
    expect(hairpin.stdout).toContain(PAGE);
    // A container of a tsoverlay network comes through the gateway bridge, whose gate lets in published ports.
    const overlayHairpin = await docker(h1, ["run", "--rm", "--network", NET, lab.testImage, "timeout", "10", "wget", "-qO-", `http://${h1.addr}:18080/`]);
    expect(overlayHairpin.stdout, overlayHairpin.stderr).toContain(PAGE);
  });

  it("binds 127.0.0.1: and [::]: as asked", async () => {
    expect((await curl(h1, "http://127.0.0.1:18082/")).stdout).toContain(PAGE);
    expect((await curl(lab.outside, `http://${h1.addr}:18082/`)).code).not.toBe(0);
    expect((await curl(h1, "http://[::1]:18081/")).stdout).toContain(PAGE);
    expect((await curl(h1, "http://127.0.0.1:18081/")).code).not.toBe(0);
  });

  it("finds a port for -p 80 and reports it on the plugin's status endpoint", async () => {
    await web(h1, "pub-eph", ["80"]);
    const id = await endpointId(h1, "pub-eph", NET);
    const port = (await publishedPorts(h1)).find((p) => p.endpointId === id && p.containerPort === 80);
    expect(port?.hostPort).toBeGreaterThan(1024);
    expect((await curl(lab.outside, `http://${h1.addr}:${port!.hostPort}/`)).stdout).toContain(PAGE);
  });

  it("fails docker run on a host port in use, naming the address and port", async () => {
    const r = await docker(h1, ["run", "-d", "--name", "pub-clash", "--network", NET, "-p", "18080:80", lab.testImage, "httpd", "-f", "-p", "80"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/0\.0\.0\.0:18080.*(already in use|already allocated)|(already in use|already allocated).*18080/);
    await docker(h1, ["rm", "-f", "pub-clash"]);
  });

  it("closes the listener when the container stops, and the port is reusable at once", async () => {
    await dockerOk(h1, ["stop", "-t", "0", "pub-web"]);
    expect((await curl(lab.outside, `http://${h1.addr}:18080/`)).code).not.toBe(0);
    await web(h1, "pub-again", ["18080:80"]);
    expect((await curl(lab.outside, `http://${h1.addr}:18080/`)).stdout).toContain(PAGE);
  });

  it("publishes a UDP port out of a host range", async () => {
    await dockerOk(h1, [
      "run",
      "-d",
      "--name",
      "pub-udp",
      "--network",
      NET,
      "-p",
      "19000-19002:5353/udp",
      lab.testImage,
      "socat",
      "-u",
      "UDP-RECV:5353",
      "OPEN:/tmp/got,creat,append",
    ]);
    const id = await endpointId(h1, "pub-udp", NET);
    const port = (await publishedPorts(h1)).find((p) => p.endpointId === id);
    expect(port).toMatchObject({ proto: "udp", containerPort: 5353 });
    expect(port!.hostPort).toBeGreaterThanOrEqual(19000);
    expect(port!.hostPort).toBeLessThanOrEqual(19002);
    await inNetns(lab.outside.netns, ["sh", "-c", `echo hello-udp | timeout 3 socat - UDP:${h1.addr}:${port!.hostPort}; true`]);
    const got = await waitFor(
      "the datagram at pub-udp",
      async () => {
        const r = await docker(h1, ["exec", "pub-udp", "cat", "/tmp/got"]);
        return r.stdout.includes("hello-udp") ? r.stdout : undefined;
      },
      5_000,
      100,
    );
    expect(got).toContain("hello-udp");
  });
});
