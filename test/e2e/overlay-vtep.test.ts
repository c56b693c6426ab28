import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { decodeVxlanDatagram } from "../../driver/kernel/vxlan-codec.js";
import { tables } from "./support/cluster.js";
import { keys } from "../../driver/cluster/keys.js";
import { consulHttp, dockerOk, readLab, waitFor } from "./support/lab.js";
import { createNetworkOn, networkVni, removeContainers, removeNetworkOn, startContainer } from "./support/overlay.js";

const lab = readLab();
const h1 = lab.hosts[0]!;
const SUBNET = "10.40.0.0/24";
const FAKE = { hostId: lab.outside.addr, ip: "10.40.0.200", mac: "02:42:0a:28:00:c8" };

describe("what the datapath puts on the wire", () => {
  it("sends VXLAN with the network's VNI and the expected inner MACs to a remote VTEP", async () => {
    const fixture = new URL("./fixtures/udp-vtep.mjs", import.meta.url).pathname;
    const vtep = spawn("nsenter", [`--net=/run/netns/${lab.outside.netns}`, process.execPath, fixture, "4789"], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    vtep.stdout.on("data", (d: Buffer) => (out += d.toString()));
    // The stand-in host's own records, under its own prefix (layout revision 2).
    const hostKey = keys.alive(FAKE.hostId);
    const epKey = keys.hostEndpoint(FAKE.hostId, SUBNET, "fake-endpoint");
    await createNetworkOn([h1], "vtep-net", SUBNET);
    try {
      // Poll what was read so far: "listening" may already have arrived.
      await waitFor("the stand-in VTEP to listen", async () => (out.includes("listening") ? true : undefined), 10_000);
      const ipA = await startContainer(lab, h1, "vtep-a", "vtep-net");
      const macA = (await dockerOk(h1, ["exec", "vtep-a", "cat", "/sys/class/net/eth0/address"])).toLowerCase();
      const vni = await networkVni(h1, SUBNET);
      // A remote host whose only endpoint is the stand-in VTEP.
      await consulHttp(
        h1,
        "PUT",
        `/v1/kv/${hostKey}`,
        JSON.stringify({ hostId: FAKE.hostId, vtep: FAKE.hostId, hostname: "fake", startedAt: new Date().toISOString() }),
      );
      await consulHttp(
        h1,
        "PUT",
        `/v1/kv/${epKey}`,
        JSON.stringify({ endpointId: "fake-endpoint", networkId: "fake", hostId: FAKE.hostId, vtep: FAKE.hostId, ip: FAKE.ip, mac: FAKE.mac }),
      );

      await waitFor(
        "h1 to program the stand-in VTEP's endpoint",
        async () => {
          const t = await tables(h1, vni);
          return t.neighbors.includes(`${FAKE.ip} ${FAKE.mac}`) && t.fdb.includes(`${FAKE.mac} ${FAKE.hostId}`) ? true : undefined;
        },
        10_000,
        100,
      );
      await dockerOk(h1, ["exec", "vtep-a", "sh", "-c", `ping -c 3 -W 1 ${FAKE.ip} || true`]);
      const datagrams = out
        .split("\n")
        .filter((l) => /^[0-9a-f]+$/.test(l))
        .map((l) => decodeVxlanDatagram(Buffer.from(l, "hex")));
      const icmp = datagrams.flatMap((d) => (d.ok && d.value.ipv4?.protocol === 1 ? [d.value] : []));
      expect(icmp.length).toBeGreaterThanOrEqual(1);
      for (const d of icmp) {
        expect(d.vni).toBe(vni);
        expect(d.ethernet.dst).toBe(FAKE.mac);
        expect(d.ethernet.src).toBe(macA);
        expect(d.ipv4?.src).toBe(ipA);
        expect(d.ipv4?.dst).toBe(FAKE.ip);
      }
    } finally {
      vtep.kill("SIGKILL");
      await consulHttp(h1, "DELETE", `/v1/kv/${epKey}`);
      await consulHttp(h1, "DELETE", `/v1/kv/${hostKey}`);
      await removeContainers(h1, ["vtep-a"]);
      await removeNetworkOn([h1], "vtep-net");
    }
  });
});
