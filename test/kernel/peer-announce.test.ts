/**
 * Peer announcements (driver/kernel/datapath/peer-announce.ts), root, no lab:
 * one simulated host (`tsk-h`, a veth pair for its underlay) and the datapath's
 * network namespace, with a "container" (`tsk-c`) on its br0 through the
 * real endpoint path. The container asks for a peer before the peer is
 * programmed, and asks only once: its neighbor retransmit time is raised to
 * 60 s, far above every wait here, so an entry that turns to the peer's MAC
 * within seconds was turned by the announcement, not by a retry.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { endpointIfNames, type EndpointSpec, type NetworkSpec, type PeerEntry } from "../../driver/contracts/datapath.js";
import { networkNetnsPath } from "../../driver/kernel/datapath/context.js";
import { KernelDatapath } from "../../driver/kernel/datapath/kernel-datapath.js";
import { createLogger } from "../../lib/log.js";
import { metrics } from "../../lib/metrics.js";
import { eventually } from "../support/eventually.js";
import { Scratch, inNs, selfNetnsIno } from "./support/scratch.js";

const SUBNET = "10.78.0.0/24";
const NET: NetworkSpec = { subnet: SUBNET, gatewayCidr: "10.78.0.1/24", vni: 7008, mtu: 1450 };
const EP: EndpointSpec = { endpointId: "a1a1a1a1a1abcdef0123456789", addressCidr: "10.78.0.11/24", mac: "02:42:0a:4e:00:0b" };
const V6_ADDRESS = "fd78::11/64";
/** Far above any wait of this file: the container asks once, then not again for a minute. */
const RETRANS_MS = 60_000;
/** What the announcement has to beat. */
const WITHIN_MS = 5_000;

const lines: string[] = [];
const log = createLogger("debug", { destination: { write: (l: string) => void lines.push(l) } });
const scratch = new Scratch("tsk-announce-");
let homeIno: number;
let h: string;
let c: string;
let ovl: string;
let dp: KernelDatapath;
const pings: ChildProcess[] = [];

const peer = (n: number, mac = `02:42:0a:4e:00:${n.toString(16).padStart(2, "0")}`): PeerEntry => ({ ip: `10.78.0.${n}`, mac, vtep: "192.0.2.2" });

interface Neigh {
  dst: string;
  lladdr?: string;
  state: string[];
}
/** The container's entry for `ip`, as `ip neigh` shows it. */
const containerNeigh = (ip: string): Neigh | undefined =>
  (JSON.parse(inNs(c, "ip", "-j", "neigh", "show", "dev", "eth0")) as Neigh[]).find((n) => n.dst === ip);

async function announced(family: "ipv4" | "ipv6", result: "sent" | "failed"): Promise<number> {
  const { values } = await metrics.peerAnnouncements.get();
  return values.find((v) => v.labels.family === family && v.labels.result === result)?.value ?? 0;
}

/** Pings `ip` from the container until the test ends; resolves once the container asked for it and is waiting (INCOMPLETE). */
async function askFor(ip: string, family: 4 | 6 = 4): Promise<void> {
  const p = spawn("nsenter", [`--net=${c}`, "ping", `-${family}`, "-i", "0.2", ip], { stdio: "ignore" });
  pings.push(p);
  await eventually(`the container asking for ${ip}`, () => containerNeigh(ip)?.state.includes("INCOMPLETE"));
}

async function learned(ip: string, mac: string): Promise<Neigh> {
  return eventually(
    `the container's entry for ${ip} to hold ${mac}`,
    () => {
      const n = containerNeigh(ip);
      return n?.lladdr === mac ? n : undefined;
    },
    { timeoutMs: WITHIN_MS },
  );
}

beforeAll(async () => {
  expect(process.getuid?.()).toBe(0);
  const tmp = scratch.init();
  homeIno = selfNetnsIno();
  h = scratch.newNs("h");
  c = scratch.newNs("c");
  inNs(h, "ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul1");
  inNs(h, "ip", "addr", "add", "192.0.2.1/24", "dev", "ul0");
  inNs(h, "ip", "link", "set", "ul0", "up");
  const runDir = path.join(tmp, "run");
  ovl = networkNetnsPath(runDir, NET.vni);
  dp = new KernelDatapath({ runDir, vtepAddr: "192.0.2.1", hostNetnsPath: h, log });
  await dp.ensureNetwork(NET);
  await dp.ensureEndpoint(SUBNET, EP, NET.mtu);
  // Docker's part, then a container that asks once a minute.
  const { hostIfName } = endpointIfNames(EP.endpointId);
  inNs(h, "ip", "link", "set", hostIfName, "netns", c);
  inNs(c, "ip", "link", "set", hostIfName, "name", "eth0");
  inNs(c, "ip", "addr", "add", EP.addressCidr, "dev", "eth0");
  inNs(c, "ip", "addr", "add", V6_ADDRESS, "dev", "eth0", "nodad");
  for (const v of ["ipv4", "ipv6"]) {
    inNs(
      c,
      "sysctl",
      "-q",
      "-w",
      `net.${v}.neigh.eth0.retrans_time_ms=${RETRANS_MS}`,
      `net.${v}.neigh.eth0.mcast_solicit=1`,
      `net.${v}.neigh.eth0.ucast_solicit=1`,
    );
  }
  inNs(c, "ip", "link", "set", "eth0", "up");
});

afterEach(() => {
  for (const p of pings.splice(0)) p.kill();
  expect(selfNetnsIno()).toBe(homeIno);
});

afterAll(async () => {
  await dp?.removeNetwork(SUBNET);
  await dp?.close();
  scratch.deleteNamespaces();
  scratch.removeDir();
});

describe("peers announced to the local containers when programmed", () => {
  it("a container that asked for a peer before it was programmed learns its MAC at once (gratuitous ARP), not at its next retry", async () => {
    const p = peer(50);
    await askFor(p.ip);
    const before = await announced("ipv4", "sent");
    const t0 = performance.now();
    expect(await dp.syncPeers(SUBNET, [p])).toMatchObject({ added: 3 });
    const n = await learned(p.ip, p.mac);
    expect(performance.now() - t0).toBeLessThan(WITHIN_MS);
    expect(n.state).not.toContain("INCOMPLETE");
    expect(await announced("ipv4", "sent")).toBe(before + 1);
    // The vxlan0 entry the announcement speaks for, and nothing else announced.
    expect(inNs(ovl, "ip", "neigh", "show", p.ip, "dev", "vxlan0")).toContain(p.mac);
  });

  it("a periodic repair that changes nothing announces nothing; a changed MAC is announced and replaces the container's entry; a moved VTEP is not announced", async () => {
    const p = peer(50);
    const sent = await announced("ipv4", "sent");
    expect(await dp.syncPeers(SUBNET, [p])).toMatchObject({ added: 0, removed: 0 });
    expect(await dp.syncPeers(SUBNET, [{ ...p, vtep: "192.0.2.3" }])).toMatchObject({ added: 1, removed: 0 });
    expect(await announced("ipv4", "sent")).toBe(sent);

    const moved = { ...p, mac: "02:42:0a:4e:00:99" };
    expect(containerNeigh(p.ip)?.lladdr).toBe(p.mac);
    await dp.syncPeers(SUBNET, [moved]);
    await learned(p.ip, moved.mac);
    expect(await announced("ipv4", "sent")).toBe(sent + 1);
  });

  it("IPv6: an unsolicited neighbor advertisement with override updates the container's waiting entry", async () => {
    const p6: PeerEntry = { ip: "fd78::50", mac: "02:42:0a:4e:00:50", vtep: "192.0.2.2" };
    await askFor(p6.ip, 6);
    const before = await announced("ipv6", "sent");
    await dp.syncPeers(SUBNET, [p6]);
    await learned(p6.ip, p6.mac);
    expect(await announced("ipv6", "sent")).toBe(before + 1);
  });

  it("an announcement that cannot be sent is logged and counted; the sync succeeds and the entry is programmed", async () => {
    const p = peer(51);
    const failed = await announced("ipv4", "failed");
    inNs(ovl, "ip", "link", "set", "br0", "down");
    try {
      await dp.syncPeers(SUBNET, [p]);
    } finally {
      inNs(ovl, "ip", "link", "set", "br0", "up");
    }
    expect(inNs(ovl, "ip", "neigh", "show", p.ip, "dev", "vxlan0")).toContain(p.mac);
    expect(await announced("ipv4", "failed")).toBe(failed + 1);
    const warned = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === "announcing programmed peers to local containers failed");
    expect(warned).toMatchObject({
      level: "warn",
      subnet: SUBNET,
      vni: NET.vni,
      ip: p.ip,
      failed: 1,
      of: 1,
      err: expect.stringMatching(/ENETDOWN/) as unknown,
    });
  });
});
