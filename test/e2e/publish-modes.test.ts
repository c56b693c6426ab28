import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker, dockerOk, inNetns, pluginPid, readLab, waitFor, type LabHost, type Run } from "./support/lab.js";
import { createNetworkOn, removeContainers, removeNetworkOn } from "./support/overlay.js";
import { endpointId, pluginStatus, publishedPorts, retry, type StatusPort } from "./support/publish.js";

const lab = readLab();
// The host whose plugin is switched between modes; clients run on another.
const [h, other] = [lab.hosts[2] ?? lab.hosts[1]!, lab.hosts[0]!];
const NET = "pubm";
const PORT = 18100;
const LOOPBACK_PORT = 18101;
/** Where the proxy's connections to containers come from: the gateway bridge's address (egress default). */
const PROXY_SOURCE = "100.72.0.1";

// The backend answers every connection with the address it was made from.
const PEER_ECHO = ["socat", "TCP-LISTEN:7000,reuseaddr,fork", "SYSTEM:echo $SOCAT_PEERADDR"];

/** Connects with socat from wherever `via` runs it; the reply is the address the backend saw. */
async function seenBy(via: (cmd: string[]) => Promise<Run>, ip: string, port: number): Promise<string> {
  const r = await retry(
    () => via(["socat", "-t", "3", "-T", "5", "-", `TCP:${ip}:${port}`]),
    (x) => x.stdout.trim() !== "",
  );
  return r.stdout.trim();
}
const fromOutside = (cmd: string[]): Promise<Run> => inNetns(lab.outside.netns, cmd);
const fromHost =
  (host: LabHost) =>
  (cmd: string[]): Promise<Run> =>
    inNetns(host.netns, cmd);
const fromContainer =
  (host: LabHost, name: string) =>
  (cmd: string[]): Promise<Run> =>
    docker(host, ["exec", name, ...cmd]);

const dnatRules = async (): Promise<string[] | undefined> => {
  const r = await inNetns(h.netns, ["iptables", "-w", "5", "-t", "nat", "-S", "TSOVERLAY-DNAT"]);
  return r.code === 0 ? r.stdout.split("\n").filter((l) => l.startsWith("-A ")) : undefined;
};

/** Waits until the host's plugin is ready and serves PORT for endpoint `id`. */
function servedAgain(id: string): Promise<StatusPort> {
  return waitFor(
    `the plugin to publish port ${PORT} again`,
    async () => {
      const s = await pluginStatus(h);
      return s?.ready ? s.ports.find((p) => p.endpointId === id && p.hostPort === PORT) : undefined;
    },
    60_000,
    250,
  );
}

/**
 * Changes the setting as a user must: disable, set, enable. Disabling makes
 * Docker unmount the plugin's propagated mount, which takes the overlay
 * namespaces, and so the network of this host's containers, with it: they
 * are restarted afterwards (see the README). Returns the new endpoint id.
 */
async function switchMode(mode: "userland" | "hybrid"): Promise<string> {
  await dockerOk(h, ["plugin", "disable", "-f", lab.pluginName], { timeoutMs: 60_000 });
  await dockerOk(h, ["plugin", "set", lab.pluginName, `TSOVERLAY_PROXY_MODE=${mode}`]);
  await dockerOk(h, ["plugin", "enable", lab.pluginName], { timeoutMs: 60_000 });
  await waitFor("the plugin to be ready", async () => ((await pluginStatus(h))?.ready ? true : undefined), 60_000, 250);
  await dockerOk(h, ["restart", "-t", "0", "pm-peer", "pm-near"], { timeoutMs: 60_000 });
  return endpointId(h, "pm-peer", NET);
}

describe("proxy modes", () => {
  let ep = "";
  let containerIp = "";

  beforeAll(async () => {
    await createNetworkOn([h, other], NET, "10.45.0.0/24");
    await dockerOk(h, [
      "run",
      "-d",
      "--name",
      "pm-peer",
      "--network",
      NET,
      "-p",
      `${PORT}:7000`,
      "-p",
      `127.0.0.1:${LOOPBACK_PORT}:7000`,
      lab.testImage,
      ...PEER_ECHO,
    ]);
    await dockerOk(h, ["run", "-d", "--name", "pm-near", "--network", NET, lab.testImage, "sleep", "3600"]);
    await dockerOk(other, ["run", "-d", "--name", "pm-far", "--network", NET, lab.testImage, "sleep", "3600"]);
    ep = await endpointId(h, "pm-peer", NET);
    containerIp = await dockerOk(h, ["inspect", "-f", `{{(index .NetworkSettings.Networks "${NET}").IPAddress}}`, "pm-peer"]);
  });

  afterAll(async () => {
    const mode = (await docker(h, ["plugin", "inspect", "-f", "{{.Settings.Env}}", lab.pluginName])).stdout;
    if (mode.includes("TSOVERLAY_PROXY_MODE=userland")) await switchMode("hybrid").catch(() => undefined);
    await removeContainers(h, ["pm-peer", "pm-near"]);
    await removeContainers(other, ["pm-far"]);
    await removeNetworkOn([h, other], NET);
  });

  it("hybrid (the default): remote clients arrive with their real address through DNAT; loopback and hairpin go through the proxy", async () => {
    const ports = (await publishedPorts(h)).filter((p) => p.endpointId === ep);
    expect(ports.find((p) => p.hostPort === PORT)?.kernelDnat).toBe(true);
    expect(ports.find((p) => p.hostPort === LOOPBACK_PORT)?.kernelDnat).toBe(false);
    expect(await dnatRules()).toEqual([`-A TSOVERLAY-DNAT ! -i tsogw0 -p tcp -m tcp --dport ${PORT} -j DNAT --to-destination ${containerIp}:7000`]);

    expect(await seenBy(fromOutside, h.addr, PORT)).toBe(lab.outside.addr);
    // The host on its own address: DNAT in OUTPUT, the host itself is the client.
    expect(await seenBy(fromHost(h), h.addr, PORT)).toBe(h.addr);
    // A container on another host: its host's egress NAT makes that host the client.
    expect(await seenBy(fromContainer(other, "pm-far"), h.addr, PORT)).toBe(other.addr);
    // Loopback and hairpin (a container on the same host, and the container to its own port): the proxy.
    expect(await seenBy(fromHost(h), "127.0.0.1", PORT)).toBe(PROXY_SOURCE);
    expect(await seenBy(fromHost(h), "127.0.0.1", LOOPBACK_PORT)).toBe(PROXY_SOURCE);
    expect(await seenBy(fromContainer(h, "pm-near"), h.addr, PORT)).toBe(PROXY_SOURCE);
    expect(await seenBy(fromContainer(h, "pm-peer"), h.addr, PORT)).toBe(PROXY_SOURCE);
  });

  it("the fast path does not depend on the plugin process: it serves while the plugin is frozen, and a restarted plugin binds the port again", async () => {
    const pid = await pluginPid(h);
    expect(pid).toBeDefined();
    process.kill(pid!, "SIGSTOP");
    try {
      expect(await seenBy(fromOutside, h.addr, PORT)).toBe(lab.outside.addr);
      // Loopback needs the proxy, which cannot run now.
      const stuck = await inNetns(h.netns, ["socat", "-t", "1", "-T", "2", "-", `TCP:127.0.0.1:${PORT}`]);
      expect(stuck.stdout.trim()).toBe("");
    } finally {
      process.kill(pid!, "SIGCONT");
    }
    process.kill(pid!, "SIGKILL");
    await waitFor(
      "the daemon to restart the plugin",
      async () => {
        const now = await pluginPid(h);
        return now !== undefined && now !== pid ? now : undefined;
      },
      30_000,
      100,
    );
    expect((await servedAgain(ep)).kernelDnat).toBe(true);
    expect(await seenBy(fromHost(h), "127.0.0.1", PORT)).toBe(PROXY_SOURCE);
    expect(await dnatRules()).toHaveLength(1);
  });

  it("userland, set with docker plugin set: the proxy carries everything and the DNAT chain is gone", async () => {
    ep = await switchMode("userland");
    expect((await servedAgain(ep)).kernelDnat).toBe(false);
    expect(await dnatRules()).toBeUndefined();
    expect(await seenBy(fromOutside, h.addr, PORT)).toBe(PROXY_SOURCE);
    expect(await seenBy(fromContainer(other, "pm-far"), h.addr, PORT)).toBe(PROXY_SOURCE);
    expect(await seenBy(fromContainer(h, "pm-peer"), h.addr, PORT)).toBe(PROXY_SOURCE);
  });

  it("back to hybrid: the DNAT rule returns, with the real client address", async () => {
    ep = await switchMode("hybrid");
    expect((await servedAgain(ep)).kernelDnat).toBe(true);
    expect(await dnatRules()).toHaveLength(1);
    expect(await seenBy(fromOutside, h.addr, PORT)).toBe(lab.outside.addr);
  });

  it("unpublishing removes the DNAT rule (the chain stays, empty, as Docker's do), and a reused port reaches the new container", async () => {
    await dockerOk(h, ["rm", "-f", "pm-peer"]);
    await waitFor("the DNAT rule to go", async () => ((await dnatRules())?.length === 0 ? true : undefined), 5_000, 100);
    await dockerOk(h, ["run", "-d", "--name", "pm-peer", "--network", NET, "-p", `${PORT}:7000`, lab.testImage, ...PEER_ECHO]);
    ep = await endpointId(h, "pm-peer", NET);
    expect(await seenBy(fromOutside, h.addr, PORT)).toBe(lab.outside.addr);
  });

  it("a UDP client that keeps sending follows a republished port to the new container (its conntrack entry is flushed)", async () => {
    const udpSink = (name: string, ip: string) =>
      dockerOk(h, [
        "run",
        "-d",
        "--name",
        name,
        "--network",
        NET,
        "--ip",
        ip,
        "-p",
        "18102:5353/udp",
        lab.testImage,
        "socat",
        "-u",
        "UDP-RECV:5353",
        "OPEN:/tmp/got,creat,append",
      ]);
    const received = async (name: string): Promise<number> => {
      const r = await docker(h, ["exec", name, "sh", "-c", "cat /tmp/got 2>/dev/null | wc -l"]);
      return Number(r.stdout.trim() || 0);
    };
    await udpSink("pm-udp1", "10.45.0.201");
    // One source port throughout, unconnected (ICMP errors while no container listens must not stop it).
    const sender = inNetns(
      lab.outside.netns,
      ["timeout", "20", "sh", "-c", `while :; do echo tick; sleep 0.1; done | socat -u - UDP-SENDTO:${h.addr}:18102,sourceport=40102`],
      { timeoutMs: 30_000 },
    );
    try {
      await waitFor("ticks at the first container", async () => ((await received("pm-udp1")) > 3 ? true : undefined), 10_000, 200);
      await dockerOk(h, ["rm", "-f", "pm-udp1"]);
      await udpSink("pm-udp2", "10.45.0.202");
      await waitFor("ticks at the second container", async () => ((await received("pm-udp2")) > 3 ? true : undefined), 8_000, 200);
    } finally {
      await sender;
      await removeContainers(h, ["pm-udp1", "pm-udp2"]);
    }
  });
});
