import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker, dockerOk, inNetns, readLab } from "./support/lab.js";
import { createNetworkOn, ping, removeContainers, removeNetworkOn, startContainer } from "./support/overlay.js";
import { eventually } from "../support/eventually.js";

const lab = readLab();

/** The interfaces of the host's Docker bridge networks, as the bridge driver names them (docker0, br-<id>, or their own). */
async function dockerBridges(host: (typeof lab.hosts)[number]): Promise<string[]> {
  const ids = (await dockerOk(host, ["network", "ls", "--filter", "driver=bridge", "--no-trunc", "-q"])).split("\n").filter((l) => l !== "");
  return Promise.all(
    ids.map(async (id) => {
      const named = await dockerOk(host, ["network", "inspect", "-f", '{{index .Options "com.docker.network.bridge.name"}}', id]);
      return named !== "" && named !== "<no value>" ? named : `br-${id.slice(0, 12)}`;
    }),
  );
}
const hosts = lab.hosts.slice(0, 2);
const [h1, h2] = [hosts[0]!, hosts[1]!];

describe("egress through the gateway bridge", () => {
  const ips: Record<string, string> = {};

  beforeAll(async () => {
    await createNetworkOn(hosts, "egress-1", "10.42.1.0/24");
    await createNetworkOn(hosts, "egress-2", "10.42.2.0/24");
    ips.a1 = await startContainer(lab, h1, "eg-a1", "egress-1");
    ips.b1 = await startContainer(lab, h2, "eg-b1", "egress-1");
    ips.a2 = await startContainer(lab, h1, "eg-a2", "egress-2");
    ips.b2 = await startContainer(lab, h2, "eg-b2", "egress-2");
  });

  afterAll(async () => {
    await removeContainers(h1, ["eg-a1", "eg-a2"]);
    await removeContainers(h2, ["eg-b1", "eg-b2"]);
    await removeNetworkOn(hosts, "egress-1");
    await removeNetworkOn(hosts, "egress-2");
  });

  it.each([
    ["h1", "eg-a1"],
    ["h2", "eg-b1"],
    ["h1", "eg-a2"],
  ])("a container on %s (%s) fetches from the outside server, which sees the host's underlay address", async (hostName, name) => {
    const host = lab.hosts.find((h) => h.name === hostName)!;
    const r = await docker(host, ["exec", name, "timeout", "10", "wget", "-qO-", `http://${lab.outside.addr}/cgi-bin/whoami`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(host.addr);
  });

  it("does not let a container reach a container of another tsoverlay network through the gateway", async () => {
    expect(await ping(h1, "eg-a1", ips.a2!, 1)).toBe(false);
    expect(await ping(h1, "eg-a2", ips.a1!, 1)).toBe(false);
    expect(await ping(h1, "eg-a1", ips.b2!, 1)).toBe(false);
    expect(await ping(h2, "eg-b2", ips.a1!, 1)).toBe(false);
    // …while each still reaches its own network across hosts.
    expect(await ping(h1, "eg-a1", ips.b1!, 1)).toBe(true);
    expect(await ping(h1, "eg-a2", ips.b2!, 1)).toBe(true);
  });

  it("keeps its rules in its own chains and removes a network's with it; the chains stay (as Docker's do), so does the bridge for the name service", async () => {
    const rules = async (table: string) => (await inNetns(h1.netns, ["iptables", "-t", table, "-S"])).stdout;
    expect(await rules("filter")).toMatch(/-A FORWARD -j TSOVERLAY-FWD/);
    expect(await rules("nat")).toMatch(/-A TSOVERLAY-POSTROUTING -s 10\.42\.1\.0\/24 .*MASQUERADE/);
    await removeContainers(h1, ["eg-a1", "eg-a2"]);
    await removeContainers(h2, ["eg-b1", "eg-b2"]);
    await removeNetworkOn(hosts, "egress-1");
    await removeNetworkOn(hosts, "egress-2");
    for (const h of hosts) {
      const filter = (await inNetns(h.netns, ["iptables", "-S"])).stdout;
      // Nothing of the two networks is left; the forward chain holds its fixed rules only (the gateway bridge's).
      expect(filter).not.toMatch(/10\.42\./);
      expect(
        filter
          .split("\n")
          .filter((l) => l.startsWith("-A TSOVERLAY-FWD"))
          .every((l) => /tsogw0/.test(l)),
      ).toBe(true);
      // What is left is the name service's: its guard, and the bridge address it listens on. The guard lets in the
      // gateway bridge, lo and exactly this daemon's bridges (by name, no br-+ pattern), and refuses the rest, last.
      const accept = (i: string): string[] => ["udp", "tcp"].map((p) => `-A TSOVERLAY-INPUT -i ${i} -p ${p} -m ${p} --dport 53 -j ACCEPT`);
      const lines = filter.split("\n").filter((l) => l.includes("TSOVERLAY") && !l.includes("TSOVERLAY-GW-INPUT") && !l.includes("TSOVERLAY-FWD"));
      // The gateway bridge's input gate stays with the bridge: the name service and no port (nothing is published).
      const gate = filter.split("\n").filter((l) => l.startsWith("-A TSOVERLAY-GW-INPUT"));
      expect(gate.filter((l) => l.includes("--dport")).map((l) => /--dport (\d+)/.exec(l)?.[1])).toEqual(["53", "53"]);
      expect(filter).toContain("-A INPUT -i tsogw0 -j TSOVERLAY-GW-INPUT");
      expect(lines.slice(0, 2)).toEqual(["-N TSOVERLAY-INPUT", "-A INPUT -d 100.72.0.1/32 -j TSOVERLAY-INPUT"]);
      expect(lines.slice(-2)).toEqual([
        "-A TSOVERLAY-INPUT -p udp -m udp --dport 53 -j REJECT --reject-with icmp-port-unreachable",
        "-A TSOVERLAY-INPUT -p tcp -m tcp --dport 53 -j REJECT --reject-with tcp-reset",
      ]);
      const bridges = await dockerBridges(h);
      expect(bridges).toContain("docker0");
      expect(lines.slice(2, -2).sort()).toEqual([...bridges, "tsogw0", "lo"].flatMap(accept).sort());
      // A host that removed the network because another host did (propagation) lets its NAT go in its own time: wait for it.
      const nat = await eventually(
        `${h.name}'s NAT rules of the removed networks to go`,
        async () => {
          const text = (await inNetns(h.netns, ["iptables", "-t", "nat", "-S"])).stdout;
          return /10\.42\./.test(text) || text.split("\n").some((l) => l.startsWith("-A TSOVERLAY-POSTROUTING")) ? undefined : text;
        },
        { timeoutMs: 15_000, everyMs: 200 },
      );
      expect(nat).not.toMatch(/10\.42\./);
      expect((await inNetns(h.netns, ["ip", "-br", "addr", "show", "tsogw0"])).stdout).toMatch(/100\.72\.0\.1\/24/);
    }
  });
});
