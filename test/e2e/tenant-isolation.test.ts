/**
 * Tenants isolated on the datapath: hand-made VXLAN datagrams carrying network
 * B's VNI and an ICMP echo for B's containers, sent by a container of network
 * A to every address of the hosts it can reach, and from an underlay address
 * that is no live VTEP, reach nobody. The same datagram sent by a live host
 * from its VTEP address does arrive (that is VXLAN): it is the control that
 * shows the counters see an arrival, and it is sent last, so that once it has
 * arrived anything sent before it would have too.
 *
 * And from the gateway bridge a container reaches of its host only the name
 * service (names tests) and published ports (publish.test.ts): a service
 * listening on every address of h1 answers the outside world and refuses the
 * container, on the underlay address and on the gateway bridge's.
 */
import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeVxlanDatagram, internetChecksum, IPPROTO_ICMP } from "../../driver/kernel/vxlan-codec.js";
import { docker, dockerOk, inNetns, readLab, type LabHost } from "./support/lab.js";
import { createNetworkOn, networkVni, removeContainers, removeNetworkOn, startContainer } from "./support/overlay.js";
import { eventually } from "../support/eventually.js";

const lab = readLab();
const [h1, h2] = lab.hosts as [LabHost, LabHost];
const NET_A = "iso-a";
const NET_B = "iso-b";
const SUBNET_A = "10.61.0.0/24";
const SUBNET_B = "10.62.0.0/24";
/** h1's gateway bridge address (TSOVERLAY_GATEWAY_SUBNET's first address): the container's way to its host. */
const GATEWAY_BRIDGE = "100.72.0.1";
const SPOOFED = { ip: "10.62.0.250", mac: "02:42:0a:3e:00:fa" };

interface Target {
  host: LabHost;
  container: string;
  ip: string;
  mac: string;
}

let vniB: number;
let b1: Target;
let b2: Target;

/** An ICMP echo request for `t`, inside VXLAN with network B's VNI, as printf octal escapes. */
function datagramFor(t: Target, seq: number): string {
  const icmp = Buffer.alloc(16);
  icmp.writeUInt8(8, 0); // echo request
  icmp.writeUInt16BE(0x7501, 4);
  icmp.writeUInt16BE(seq, 6);
  icmp.write("tso-iso!", 8);
  icmp.writeUInt16BE(internetChecksum(icmp), 2);
  const d = encodeVxlanDatagram({
    vni: vniB,
    ethernet: { dst: t.mac, src: SPOOFED.mac },
    ipv4: { src: SPOOFED.ip, dst: t.ip, protocol: IPPROTO_ICMP },
    payload: icmp,
  });
  if (!d.ok) throw new Error(d.error);
  return [...d.value].map((b) => `\\${b.toString(8).padStart(3, "0")}`).join("");
}

const sendCmd = (octal: string, to: string): string => `printf '${octal}' | socat -u - UDP-SENDTO:${to}:4789`;

async function fromContainer(host: LabHost, container: string, octal: string, to: string): Promise<void> {
  await dockerOk(host, ["exec", container, "sh", "-c", sendCmd(octal, to)]);
}

async function fromNetns(netns: string, octal: string, to: string): Promise<void> {
  const r = await inNetns(netns, ["sh", "-c", sendCmd(octal, to)]);
  if (r.code !== 0) throw new Error(`sending from ${netns} failed: ${r.stderr}`);
}

/** Echo requests the container's kernel has received (/proc/net/snmp, Icmp InEchos). */
async function inEchos(t: Target): Promise<number> {
  const snmp = await dockerOk(t.host, ["exec", t.container, "cat", "/proc/net/snmp"]);
  const [names, values] = snmp.split("\n").filter((l) => l.startsWith("Icmp:"));
  const i = names!.split(/\s+/).indexOf("InEchos");
  return Number(values!.split(/\s+/)[i]);
}

async function target(host: LabHost, container: string): Promise<Target> {
  const ip = await startContainer(lab, host, container, NET_B);
  const mac = (await dockerOk(host, ["exec", container, "cat", "/sys/class/net/eth0/address"])).trim().toLowerCase();
  return { host, container, ip, mac };
}

beforeAll(async () => {
  await createNetworkOn([h1], NET_A, SUBNET_A);
  await createNetworkOn([h1], NET_B, SUBNET_B, ["--internal"]);
  await startContainer(lab, h1, "iso-a1", NET_A);
  b1 = await target(h1, "iso-b1");
  b2 = await eventually("network B on h2", async () => ((await docker(h2, ["network", "inspect", NET_B])).code === 0 ? target(h2, "iso-b2") : undefined), {
    timeoutMs: 30_000,
    everyMs: 200,
  });
  vniB = await networkVni(h1, SUBNET_B);
});

afterAll(async () => {
  await removeContainers(h1, ["iso-a1", "iso-b1"]);
  await removeContainers(h2, ["iso-b2"]);
  await removeNetworkOn([h1], NET_A);
  await removeNetworkOn([h1], NET_B);
});

describe("tenants isolated on the datapath", () => {
  it("a container cannot get a VXLAN datagram decapsulated on its host or another; nor can an underlay address that is no live VTEP", async () => {
    const before = { b1: await inEchos(b1), b2: await inEchos(b2) };
    let seq = 1;
    // Network A's container, to every address of the hosts it can reach: its host through the gateway bridge, both underlay addresses.
    for (const to of [GATEWAY_BRIDGE, h1.addr, h2.addr]) {
      for (const t of [b1, b2]) await fromContainer(h1, "iso-a1", datagramFor(t, seq++), to);
    }
    // The outside world is routed to the underlay but is no VTEP of the cluster.
    await fromNetns(lab.outside.netns, datagramFor(b1, seq++), h1.addr);
    await fromNetns(lab.outside.netns, datagramFor(b2, seq++), h2.addr);

    // The control: each host, from its VTEP, to the other's.
    await fromNetns(h2.netns, datagramFor(b1, seq++), h1.addr);
    await fromNetns(h1.netns, datagramFor(b2, seq), h2.addr);
    await eventually("the controls to arrive", async () => (await inEchos(b1)) > before.b1 && (await inEchos(b2)) > before.b2, { timeoutMs: 10_000 });
    expect(await inEchos(b1)).toBe(before.b1 + 1);
    expect(await inEchos(b2)).toBe(before.b2 + 1);
  });

  it("from the gateway bridge, a container reaches no service of its host but names and published ports: refused at once", async () => {
    const port = 18097;
    const service = spawn("nsenter", [`--net=/run/netns/${h1.netns}`, "socat", `TCP-LISTEN:${port},reuseaddr,fork`, "SYSTEM:echo host-service"], {
      stdio: "ignore",
    });
    try {
      const connect = (to: string): string[] => ["socat", "-T", "3", "-", `TCP:${to}:${port},connect-timeout=3`];
      // The control: the service answers the outside world on h1's underlay address.
      await eventually(
        "h1's service to answer the outside",
        async () => ((await inNetns(lab.outside.netns, connect(h1.addr))).stdout.includes("host-service") ? true : undefined),
        { timeoutMs: 10_000, everyMs: 200 },
      );
      for (const to of [h1.addr, GATEWAY_BRIDGE]) {
        const r = await docker(h1, ["exec", "iso-a1", ...connect(to)]);
        expect(r.stdout, `iso-a1 → ${to}:${port}`).not.toContain("host-service");
        // Refused (a reset), not left to time out.
        expect(r.stderr, `iso-a1 → ${to}:${port}`).toMatch(/Connection refused/);
      }
    } finally {
      service.kill("SIGTERM");
    }
  });
});
