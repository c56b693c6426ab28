/**
 * KernelDatapath on two simulated hosts (root, no lab). Per host: a `tsk-h*`
 * namespace plays the host (the underlay is a veth pair between the two, on
 * TEST-NET 192.0.2.0/24), a `tsk-c*` namespace plays a container, and the
 * datapath keeps its per-network namespaces under its own runDir in a temp
 * dir. `ip`/`bridge`/`ping` via nsenter verify, and play Docker's part (moving
 * the host-side veth end into the container and configuring it).
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { endpointIfNames, type EndpointSpec, type NetworkSpec, type PeerEntry } from "../../driver/contracts/datapath.js";
import { KernelDatapath } from "../../driver/kernel/datapath/kernel-datapath.js";
import { networkNetnsPath, tempVxlanName } from "../../driver/kernel/datapath/context.js";
import { createVethPair, ensureAddress, getLinkByName, setUp } from "../../driver/kernel/links.js";
import { createNamedNetns, deleteNamedNetns, isNetnsMount, openNetnsFd, openRtnetlinkIn, sameNetns } from "../../driver/kernel/netns.js";
import { createLogger } from "../../lib/log.js";
import { eventually } from "../support/eventually.js";
import { Scratch, inNs, ipLink, ipLinks, pingOk as pingOkIn, selfNetnsIno, type IpLink } from "./support/scratch.js";

/** Replies here can take a VXLAN round trip and an ARP resolution. */
const pingOk = (ns: string, ip: string, attempts = 3): boolean => pingOkIn(ns, ip, attempts, 2);

const log = createLogger(process.env.TSOVERLAY_LOG_LEVEL ?? "silent");

let tmp: string;
let homeIno: number;
const scratch = new Scratch("tsk-datapath-");
const { created, sockets } = scratch;
const newNs = (name: string): string => scratch.newNs(name);
const datapaths: KernelDatapath[] = [];

interface Fdb {
  mac: string;
  dst?: string;
  state?: string;
  flags?: string[];
}
const fdb = (ns: string): Fdb[] => JSON.parse(inNs(ns, "bridge", "-j", "fdb", "show", "dev", "vxlan0")) as Fdb[];
/** The VXLAN device's own remote entries, as "mac dst". */
const remoteFdb = (ns: string): string[] =>
  fdb(ns)
    .filter((e) => e.dst !== undefined)
    .map((e) => `${e.mac} ${e.dst}`)
    .sort();
interface Neigh {
  dst: string;
  lladdr?: string;
  state: string[];
}
/** br0's own entries on the vxlan0 port (not local ones), as "mac static|learned". */
const bridgeOnVxlan = (ns: string): string[] =>
  (JSON.parse(inNs(ns, "bridge", "-j", "fdb", "show", "br", "br0")) as (Fdb & { ifname?: string; master?: string })[])
    .filter((e) => e.ifname === "vxlan0" && e.master === "br0" && e.state !== "permanent")
    .map((e) => `${e.mac} ${e.state === "static" ? "static" : "learned"}`)
    .sort();
const neighs = (ns: string): string[] =>
  (JSON.parse(inNs(ns, "ip", "-j", "neigh", "show", "dev", "vxlan0")) as Neigh[]).map((n) => `${n.dst} ${n.lladdr ?? "-"} ${n.state.join(",")}`).sort();

const SUBNET = "10.77.0.0/24";
const NET: NetworkSpec = { subnet: SUBNET, gatewayCidr: "10.77.0.1/24", vni: 7007, mtu: 1450 };

interface Host {
  tag: string;
  h: string;
  c: string;
  runDir: string;
  vtep: string;
  ep: EndpointSpec;
  dp: KernelDatapath;
  /** The datapath's namespace for NET. */
  ovl: string;
}
let hosts: [Host, Host];

function newDatapath(
  x: { runDir: string; vtep: string; h: string },
  extra: { underlayIfindex?: number; vxlanPort?: number; keepDir?: string } = {},
): KernelDatapath {
  const dp = new KernelDatapath({ runDir: x.runDir, vtepAddr: x.vtep, hostNetnsPath: x.h, log, ...extra });
  datapaths.push(dp);
  return dp;
}

/** A host's second pin folder (the managed plugin's state folder). */
const keepDirOf = (x: { tag: string }): string => path.join(tmp, `keep${x.tag}`);
const peerOf = (x: Host): PeerEntry => ({ ip: x.ep.addressCidr.split("/")[0]!, mac: x.ep.mac, vtep: x.vtep });
const ipOf = (x: Host): string => x.ep.addressCidr.split("/")[0]!;

beforeAll(async () => {
  expect(process.getuid?.()).toBe(0);
  tmp = scratch.init();
  homeIno = selfNetnsIno();

  const h1 = newNs("h1");
  const h2 = newNs("h2");
  // Underlay: ul0 (h1) <-> ul0 (h2).
  const nl1 = openRtnetlinkIn(h1);
  const nl2 = openRtnetlinkIn(h2);
  sockets.push(nl1, nl2);
  const fd = openNetnsFd(h2);
  try {
    await createVethPair(nl1, "ul0", "ul0", 1500, fd);
  } finally {
    fs.closeSync(fd);
  }
  await ensureAddress(nl1, "ul0", "192.0.2.1/24");
  await ensureAddress(nl2, "ul0", "192.0.2.2/24");
  await setUp(nl1, "ul0");
  await setUp(nl2, "ul0");
  const ul1 = await getLinkByName(nl1, "ul0");

  const mk = (tag: string, h: string, vtep: string, n: number): Omit<Host, "dp"> => ({
    tag,
    h,
    c: newNs(`c${tag}`),
    runDir: path.join(tmp, `run${tag}`),
    vtep,
    ep: {
      endpointId: `${tag.repeat(4)}abcdef0123456789`,
      addressCidr: `10.77.0.${n}/24`,
      mac: `02:42:0A:4D:00:${n.toString(16).padStart(2, "0")}`,
    },
    ovl: networkNetnsPath(path.join(tmp, `run${tag}`), NET.vni),
  });
  const a = mk("1", h1, "192.0.2.1", 11);
  const b = mk("2", h2, "192.0.2.2", 12);
  // Host 1 names its underlay device (IFLA_VXLAN_LINK); host 2 does not.
  hosts = [
    { ...a, dp: newDatapath(a, { underlayIfindex: ul1!.index }) },
    { ...b, dp: newDatapath(b) },
  ];
});

afterEach(() => {
  expect(selfNetnsIno()).toBe(homeIno);
});

afterAll(async () => {
  for (const dp of datapaths.splice(0)) await dp.close();
  for (const s of sockets.splice(0)) s.socket.close();
  // Whatever a failed test left in the runDirs.
  for (const x of hosts ?? []) {
    const dir = path.join(keepDirOf(x), "netns");
    for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : []) deleteNamedNetns(path.join(dir, f));
  }
  for (const x of hosts ?? []) {
    const dir = path.join(x.runDir, "netns");
    for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : []) deleteNamedNetns(path.join(dir, f));
  }
  for (const p of created.splice(0)) deleteNamedNetns(p);
  const mounts = fs.readFileSync("/proc/self/mountinfo", "utf8");
  expect(mounts).not.toContain(tmp);
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("KernelDatapath on two simulated hosts", () => {
  it("ensureNetwork: br0 with the gateway, vxlan0 (nolearning, proxy, VNI, port, local, MTU) created in the host and moved in", async () => {
    for (const x of hosts) {
      expect(x.dp.hasNetwork(SUBNET)).toBe(false);
      await x.dp.ensureNetwork(NET);
      expect(x.dp.hasNetwork(SUBNET)).toBe(true);
      expect(x.dp.hasNetwork("10.77.0.0/24")).toBe(true);
      expect(isNetnsMount(x.ovl)).toBe(true);

      const vx = ipLink(x.ovl, "vxlan0");
      expect(vx?.linkinfo?.info_kind).toBe("vxlan");
      expect(vx?.linkinfo?.info_data).toMatchObject({ id: 7007, port: 4789, local: x.vtep, learning: false, proxy: true });
      expect(vx).toMatchObject({ mtu: 1450, master: "br0" });
      expect(vx?.flags).toContain("UP");
      expect(inNs(x.ovl, "ip", "-d", "link", "show", "vxlan0")).toMatch(/nolearning.*proxy/s);
      const br = ipLink(x.ovl, "br0");
      expect(br).toMatchObject({ mtu: 1450 });
      expect(br?.flags).toContain("UP");
      const addrs = JSON.parse(inNs(x.ovl, "ip", "-j", "-4", "addr", "show", "dev", "br0")) as {
        addr_info: { local: string; prefixlen: number }[];
      }[];
      expect(addrs[0]?.addr_info.map((a) => `${a.local}/${a.prefixlen}`)).toEqual(["10.77.0.1/24"]);

      // Nothing left behind in the host namespace; no flooding entry.
      expect(
        ipLinks(x.h)
          .map((l) => l.ifname)
          .sort(),
      ).toEqual(["lo", "ul0"]);
      expect(fdb(x.ovl).map((e) => e.mac)).not.toContain("00:00:00:00:00:00");
      expect(remoteFdb(x.ovl)).toEqual([]);
    }
    // Host 1's device is tied to its underlay device's ifindex in the host
    // namespace (where the UDP socket stays); `ip` would misname it from inside.
    const nl = openRtnetlinkIn(hosts[0].ovl);
    try {
      const vx = await getLinkByName(nl, "vxlan0");
      expect(vx?.vxlan?.underlay).toBe(ipLink(hosts[0].h, "ul0")?.ifindex);
    } finally {
      nl.socket.close();
    }
  });

  it("ensureEndpoint: veth with the MAC on the host end (down), the other end on br0 (up), MTU on both; idempotent", async () => {
    for (const x of hosts) {
      const names = await x.dp.ensureEndpoint(SUBNET, x.ep, 1450);
      expect(names).toEqual(endpointIfNames(x.ep.endpointId));
      const hostEnd = ipLink(x.h, names.hostIfName);
      expect(hostEnd).toMatchObject({ mtu: 1450, address: x.ep.mac.toLowerCase() });
      expect(hostEnd?.flags).not.toContain("UP");
      expect((JSON.parse(inNs(x.h, "ip", "-j", "addr", "show", "dev", names.hostIfName)) as { addr_info: unknown[] }[])[0]?.addr_info).toEqual([]);
      const brEnd = ipLink(x.ovl, names.bridgeIfName);
      expect(brEnd).toMatchObject({ mtu: 1450, master: "br0" });
      expect(brEnd?.flags).toContain("UP");

      // Again: same links, nothing recreated.
      expect(await x.dp.ensureEndpoint(SUBNET, x.ep, 1450)).toEqual(names);
      expect(ipLink(x.h, names.hostIfName)?.ifindex).toBe(hostEnd?.ifindex);
      expect(ipLink(x.ovl, names.bridgeIfName)?.ifindex).toBe(brEnd?.ifindex);

      // Drift is repaired in place: MTU on both ends, MAC on the host end, master.
      inNs(x.h, "ip", "link", "set", names.hostIfName, "mtu", "1300", "address", "02:00:00:00:00:01");
      inNs(x.ovl, "ip", "link", "set", names.bridgeIfName, "mtu", "1300", "nomaster");
      await x.dp.ensureEndpoint(SUBNET, x.ep, 1450);
      expect(ipLink(x.h, names.hostIfName)).toMatchObject({ ifindex: hostEnd?.ifindex, mtu: 1450, address: x.ep.mac.toLowerCase() });
      expect(ipLink(x.ovl, names.bridgeIfName)).toMatchObject({ ifindex: brEnd?.ifindex, mtu: 1450, master: "br0" });
    }
  });

  it("syncPeers programs neighbor + FDB entries: containers ping each other across the VXLAN", async () => {
    // Docker's part: move the host end into the container, name, address, up.
    for (const x of hosts) {
      const { hostIfName } = endpointIfNames(x.ep.endpointId);
      inNs(x.h, "ip", "link", "set", hostIfName, "netns", x.c);
      inNs(x.c, "ip", "link", "set", hostIfName, "name", "eth0");
      inNs(x.c, "ip", "addr", "add", x.ep.addressCidr, "dev", "eth0");
      inNs(x.c, "ip", "link", "set", "eth0", "up");
      expect(ipLink(x.c, "eth0")).toMatchObject({ mtu: 1450, address: x.ep.mac.toLowerCase() });
    }
    const [a, b] = hosts;
    // Per peer: a neighbor entry, the device's FDB entry and a static entry in br0's table.
    expect(await a.dp.syncPeers(SUBNET, [peerOf(b)])).toMatchObject({ added: 3, removed: 0 });
    expect(await b.dp.syncPeers(SUBNET, [peerOf(a)])).toMatchObject({ added: 3, removed: 0 });

    expect(pingOk(a.c, ipOf(b))).toBe(true);
    expect(pingOk(b.c, ipOf(a))).toBe(true);

    for (const [me, peer] of [
      [a, b],
      [b, a],
    ] as const) {
      expect(remoteFdb(me.ovl)).toEqual([`${peer.ep.mac.toLowerCase()} ${peer.vtep}`]);
      expect(fdb(me.ovl).find((e) => e.dst !== undefined)).toMatchObject({ state: "permanent", flags: ["self"] });
      expect(fdb(me.ovl).map((e) => e.mac)).not.toContain("00:00:00:00:00:00");
      expect(neighs(me.ovl)).toEqual([`${ipOf(peer)} ${peer.ep.mac.toLowerCase()} PERMANENT`]);
      expect(bridgeOnVxlan(me.ovl)).toEqual([`${peer.ep.mac.toLowerCase()} static`]);
    }
    // It went through the VXLAN devices.
    const stats = JSON.parse(inNs(a.ovl, "ip", "-j", "-s", "link", "show", "vxlan0")) as { stats64: { tx: { packets: number } } }[];
    expect(stats[0]?.stats64.tx.packets).toBeGreaterThan(0);

    // In sync: nothing to do.
    expect(await a.dp.syncPeers(SUBNET, [peerOf(b)])).toMatchObject({ added: 0, removed: 0 });
  });

  it("syncPeers removes what is not desired: a dropped peer (ping stops) and entries added by hand", async () => {
    const [a, b] = hosts;
    expect(await a.dp.syncPeers(SUBNET, [])).toMatchObject({ added: 0, removed: 3 });
    expect(remoteFdb(a.ovl)).toEqual([]);
    expect(bridgeOnVxlan(a.ovl)).toEqual([]);
    expect(neighs(a.ovl)).toEqual([]);
    inNs(a.c, "ip", "neigh", "flush", "dev", "eth0");
    expect(pingOk(a.c, ipOf(b), 1)).toBe(false);

    expect(await a.dp.syncPeers(SUBNET, [peerOf(b)])).toMatchObject({ added: 3, removed: 0 });
    expect(pingOk(a.c, ipOf(b))).toBe(true);

    // Foreign entries: an extra peer, a flood list of two VTEPs, an extra neighbor.
    inNs(a.ovl, "bridge", "fdb", "add", "02:00:00:00:00:99", "dev", "vxlan0", "dst", "192.0.2.99", "self", "permanent");
    inNs(a.ovl, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vxlan0", "dst", "192.0.2.2", "self", "permanent");
    inNs(a.ovl, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vxlan0", "dst", "192.0.2.98", "self", "permanent");
    inNs(a.ovl, "ip", "neigh", "add", "10.77.0.99", "lladdr", "02:00:00:00:00:99", "dev", "vxlan0", "nud", "permanent");
    expect(remoteFdb(a.ovl)).toHaveLength(4);
    expect(await a.dp.syncPeers(SUBNET, [peerOf(b)])).toMatchObject({ added: 0, removed: 4 });
    expect(remoteFdb(a.ovl)).toEqual([`${b.ep.mac.toLowerCase()} ${b.vtep}`]);
    expect(fdb(a.ovl).map((e) => e.mac)).not.toContain("00:00:00:00:00:00");
    expect(neighs(a.ovl)).toEqual([`${ipOf(b)} ${b.ep.mac.toLowerCase()} PERMANENT`]);

    // A moved peer (new VTEP) is replaced in place; a changed MAC replaces both entries.
    expect(await a.dp.syncPeers(SUBNET, [{ ...peerOf(b), vtep: "192.0.2.77" }])).toMatchObject({ added: 1, removed: 0 });
    expect(remoteFdb(a.ovl)).toEqual([`${b.ep.mac.toLowerCase()} 192.0.2.77`]);
    expect(await a.dp.syncPeers(SUBNET, [peerOf(b)])).toMatchObject({ added: 1, removed: 0 });
    expect(pingOk(a.c, ipOf(b))).toBe(true);

    // Conflicting input is refused before anything is touched.
    await expect(a.dp.syncPeers(SUBNET, [peerOf(b), { ...peerOf(b), mac: "02:00:00:00:00:42" }])).rejects.toThrow(/two MACs/);
    await expect(a.dp.syncPeers(SUBNET, [{ ...peerOf(b), mac: "nope" }])).rejects.toThrow(/invalid MAC/);
    expect(remoteFdb(a.ovl)).toEqual([`${b.ep.mac.toLowerCase()} ${b.vtep}`]);
    // Unknown network.
    await expect(a.dp.syncPeers("10.99.0.0/24", [])).rejects.toThrow(/10\.99\.0\.0\/24 is not set up/);
  });

  it("a changesOnly sync writes the difference from the last sync and reads nothing back; a full one repairs what it missed", async () => {
    const [a, b] = hosts;
    expect(await a.dp.syncPeers(SUBNET, [peerOf(b)])).toMatchObject({ added: 0, removed: 0 });
    const extra = { ip: "10.77.0.50", mac: "02:42:0a:4d:00:32", vtep: "192.0.2.50" };
    // A new peer, then the same peer moved: each written as the difference.
    expect(await a.dp.syncPeers(SUBNET, [peerOf(b), extra], { changesOnly: true })).toMatchObject({ added: 3, removed: 0 });
    expect(neighs(a.ovl)).toContain(`${extra.ip} ${extra.mac} PERMANENT`);
    expect(bridgeOnVxlan(a.ovl)).toContain(`${extra.mac} static`);
    expect(await a.dp.syncPeers(SUBNET, [peerOf(b), { ...extra, vtep: "192.0.2.51" }], { changesOnly: true })).toMatchObject({ added: 1, removed: 0 });
    expect(remoteFdb(a.ovl)).toContain(`${extra.mac} 192.0.2.51`);
    // Gone again: its three entries go, b's stay.
    expect(await a.dp.syncPeers(SUBNET, [peerOf(b)], { changesOnly: true })).toMatchObject({ added: 0, removed: 3 });
    expect(remoteFdb(a.ovl)).toEqual([`${b.ep.mac.toLowerCase()} ${b.vtep}`]);
    expect(neighs(a.ovl)).toEqual([`${ipOf(b)} ${b.ep.mac.toLowerCase()} PERMANENT`]);
    expect(bridgeOnVxlan(a.ovl)).toEqual([`${b.ep.mac.toLowerCase()} static`]);
    expect(pingOk(a.c, ipOf(b))).toBe(true);

    // It trusts what it programmed: an entry deleted by hand is not seen by a changesOnly sync ...
    inNs(a.ovl, "ip", "neigh", "del", ipOf(b), "dev", "vxlan0");
    expect(await a.dp.syncPeers(SUBNET, [peerOf(b)], { changesOnly: true })).toMatchObject({ added: 0, removed: 0 });
    expect(neighs(a.ovl)).toEqual([]);
    // ... and is repaired by the next full one (the periodic reconcile).
    expect(await a.dp.syncPeers(SUBNET, [peerOf(b)])).toMatchObject({ added: 1, removed: 0 });
    expect(neighs(a.ovl)).toEqual([`${ipOf(b)} ${b.ep.mac.toLowerCase()} PERMANENT`]);

    // Input refused before the kernel is touched leaves what was programmed known: the next changesOnly sync diffs as before.
    await expect(a.dp.syncPeers(SUBNET, [peerOf(b), { ...peerOf(b), mac: "02:00:00:00:00:42" }], { changesOnly: true })).rejects.toThrow(/two MACs/);
    expect(await a.dp.syncPeers(SUBNET, [peerOf(b), extra], { changesOnly: true })).toMatchObject({ added: 3, removed: 0 });
    expect(await a.dp.syncPeers(SUBNET, [peerOf(b)], { changesOnly: true })).toMatchObject({ added: 0, removed: 3 });
    expect(neighs(a.ovl)).toEqual([`${ipOf(b)} ${b.ep.mac.toLowerCase()} PERMANENT`]);
  });

  it("syncs of one network are serialised: the last call wins", async () => {
    const [a, b] = hosts;
    const extra = (n: number): PeerEntry => ({ ip: `10.77.0.${100 + n}`, mac: `02:00:00:00:01:${n.toString(16).padStart(2, "0")}`, vtep: "192.0.2.50" });
    const big = [peerOf(b), ...Array.from({ length: 20 }, (_, i) => extra(i))];
    const results = await Promise.all([
      a.dp.syncPeers(SUBNET, big),
      a.dp.syncPeers(SUBNET, [peerOf(b)]),
      a.dp.syncPeers(SUBNET, big),
      a.dp.syncPeers(SUBNET, [peerOf(b)]),
    ]);
    // Had they interleaved, the counts would not add up this neatly.
    expect(results.map(({ added, removed }) => ({ added, removed }))).toEqual([
      { added: 60, removed: 0 },
      { added: 0, removed: 60 },
      { added: 60, removed: 0 },
      { added: 0, removed: 60 },
    ]);
    expect(remoteFdb(a.ovl)).toEqual([`${b.ep.mac.toLowerCase()} ${b.vtep}`]);
    expect(neighs(a.ovl)).toHaveLength(1);
  });

  it("re-ensuring is idempotent and fixes drift (MTU, address, up state) without recreating devices", async () => {
    const [a, b] = hosts;
    const before = ipLinks(a.ovl).map((l) => `${l.ifname}#${l.ifindex}`);
    await a.dp.ensureNetwork(NET);
    await a.dp.ensureEndpoint(SUBNET, a.ep, 1450);
    expect(ipLinks(a.ovl).map((l) => `${l.ifname}#${l.ifindex}`)).toEqual(before);

    inNs(a.ovl, "ip", "link", "set", "vxlan0", "mtu", "1400");
    inNs(a.ovl, "ip", "link", "set", "br0", "down");
    inNs(a.ovl, "ip", "addr", "add", "10.77.0.254/24", "dev", "br0");
    await a.dp.ensureNetwork(NET);
    expect(ipLink(a.ovl, "vxlan0")).toMatchObject({ mtu: 1450 });
    expect(ipLink(a.ovl, "br0")?.flags).toContain("UP");
    const addrs = JSON.parse(inNs(a.ovl, "ip", "-j", "-4", "addr", "show", "dev", "br0")) as { addr_info: { local: string }[] }[];
    expect(addrs[0]?.addr_info.map((x) => x.local)).toEqual(["10.77.0.1"]);
    expect(ipLinks(a.ovl).map((l) => `${l.ifname}#${l.ifindex}`)).toEqual(before);
    expect(remoteFdb(a.ovl)).toEqual([`${b.ep.mac.toLowerCase()} ${b.vtep}`]);
    expect(pingOk(a.c, ipOf(b))).toBe(true);
  });

  it("restart: close() keeps kernel state; a new instance adopts it without interrupting a running ping", async () => {
    const [a, b] = hosts;
    const before = ipLinks(a.ovl).map((l) => `${l.ifname}#${l.ifindex}`);
    const ping = spawn("nsenter", [`--net=${a.c}`, "ping", "-n", "-i", "0.2", "-c", "25", "-W", "1", ipOf(b)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    ping.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const done = new Promise<number | null>((resolve) => ping.on("exit", resolve));
    await eventually("the ping to get answers", () => (out.match(/bytes from/g)?.length ?? 0) >= 3);

    await a.dp.close();
    await a.dp.close(); // twice is fine
    await expect(a.dp.syncPeers(SUBNET, [])).rejects.toThrow(/closed/);
    expect(isNetnsMount(a.ovl)).toBe(true);
    expect(ipLinks(a.ovl).map((l) => `${l.ifname}#${l.ifindex}`)).toEqual(before);

    const dp = newDatapath(a, { underlayIfindex: ipLink(a.h, "ul0")!.ifindex });
    hosts[0] = { ...a, dp };
    expect(dp.hasNetwork(SUBNET)).toBe(false);
    await dp.ensureNetwork(NET);
    expect(dp.hasNetwork(SUBNET)).toBe(true);
    await dp.ensureEndpoint(SUBNET, a.ep, 1450);
    expect(await dp.syncPeers(SUBNET, [peerOf(b)])).toMatchObject({ added: 0, removed: 0 });
    expect(ipLinks(a.ovl).map((l) => `${l.ifname}#${l.ifindex}`)).toEqual(before);
    expect(
      ipLinks(a.h)
        .map((l) => l.ifname)
        .sort(),
    ).toEqual(["lo", "ul0"]);

    expect(await done).toBe(0);
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
    expect(m?.[1]).toBe("25");
    expect(m?.[2]).toBe("25");
  });

  it("plugin disabled: the run folder's mount gone, the namespace lives on in its pin and a new instance adopts it, the ping uninterrupted", async () => {
    const [a, b] = hosts;
    await a.dp.close();
    const keep = networkNetnsPath(keepDirOf(a), NET.vni);
    const pinned = newDatapath(a, { underlayIfindex: ipLink(a.h, "ul0")!.ifindex, keepDir: keepDirOf(a) });
    await pinned.ensureNetwork(NET);
    expect(isNetnsMount(keep)).toBe(true);
    expect(sameNetns(keep, a.ovl)).toBe(true);
    const before = ipLinks(a.ovl).map((l) => `${l.ifname}#${l.ifindex}`);
    const ping = spawn("nsenter", [`--net=${a.c}`, "ping", "-n", "-i", "0.2", "-c", "25", "-W", "1", ipOf(b)], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    ping.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const done = new Promise<number | null>((resolve) => ping.on("exit", resolve));
    await eventually("the ping to get answers", () => (out.match(/bytes from/g)?.length ?? 0) >= 3);

    // What `docker plugin disable` does: the process ends, the propagated mount (the run folder) is unmounted.
    await pinned.close();
    deleteNamedNetns(a.ovl);
    expect(isNetnsMount(a.ovl)).toBe(false);
    expect(isNetnsMount(keep)).toBe(true);

    const dp = newDatapath(a, { underlayIfindex: ipLink(a.h, "ul0")!.ifindex, keepDir: keepDirOf(a) });
    hosts[0] = { ...a, dp };
    await dp.ensureNetwork(NET);
    expect(isNetnsMount(a.ovl)).toBe(true);
    expect(sameNetns(keep, a.ovl)).toBe(true);
    expect(ipLinks(a.ovl).map((l) => `${l.ifname}#${l.ifindex}`)).toEqual(before);
    await dp.ensureEndpoint(SUBNET, a.ep, 1450);
    expect(await dp.syncPeers(SUBNET, [peerOf(b)])).toMatchObject({ added: 0, removed: 0 });

    expect(await done).toBe(0);
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
    expect(m?.[1]).toBe("25");
    expect(m?.[2]).toBe("25");
  });

  it("restored: pins of networks no longer here are released, those in use and ensured are kept", async () => {
    const [a] = hosts;
    const stale = networkNetnsPath(keepDirOf(a), 7999);
    createNamedNetns(stale);
    await a.dp.restored([]);
    expect(isNetnsMount(stale)).toBe(false);
    expect(isNetnsMount(networkNetnsPath(keepDirOf(a), NET.vni))).toBe(true);
    createNamedNetns(stale);
    await a.dp.restored([7999]);
    expect(isNetnsMount(stale)).toBe(true);
    deleteNamedNetns(stale);
  });

  it("stale VXLAN devices: a crash leftover is adopted, our stale host device is deleted, a foreign one is refused", async () => {
    const b = hosts[1];
    const dp = b.dp;
    const spec = (vni: number, n: number): NetworkSpec => ({ subnet: `10.${n}.0.0/24`, gatewayCidr: `10.${n}.0.1/24`, vni, mtu: 1400 });
    const vxOf = (vni: number): IpLink | undefined => ipLink(networkNetnsPath(b.runDir, vni), "vxlan0");

    // Crash between create and move: the temporary device is still in the host.
    inNs(b.h, "ip", "link", "add", tempVxlanName(7101), "type", "vxlan", "id", "7101", "dstport", "4789", "local", b.vtep, "nolearning", "proxy");
    const tmpIndex = ipLink(b.h, tempVxlanName(7101))!.ifindex;
    await dp.ensureNetwork(spec(7101, 81));
    expect(ipLink(b.h, tempVxlanName(7101))).toBeUndefined();
    expect(vxOf(7101)).toMatchObject({ ifindex: tmpIndex, mtu: 1400, master: "br0" });

    // Ours under another name (an older naming) holding the VNI: deleted.
    inNs(b.h, "ip", "link", "add", "vx-old", "type", "vxlan", "id", "7102", "dstport", "4789", "local", b.vtep);
    await dp.ensureNetwork(spec(7102, 82));
    expect(ipLink(b.h, "vx-old")).toBeUndefined();
    expect(vxOf(7102)?.linkinfo?.info_data).toMatchObject({ id: 7102, learning: false, proxy: true });

    // Someone else's: refused, untouched.
    inNs(b.h, "ip", "link", "add", "foreign0", "type", "vxlan", "id", "7103", "dstport", "4789", "local", b.vtep);
    await expect(dp.ensureNetwork(spec(7103, 83))).rejects.toThrow(/foreign0, which is not ours/);
    expect(dp.hasNetwork("10.83.0.0/24")).toBe(false); // half-built is not "has"
    await expect(dp.syncPeers("10.83.0.0/24", [])).rejects.toThrow(/not set up/);
    expect(ipLink(b.h, "foreign0")).toBeDefined();
    inNs(b.h, "ip", "link", "del", "foreign0");
    await dp.ensureNetwork(spec(7103, 83));
    expect(dp.hasNetwork("10.83.0.0/24")).toBe(true);
    expect(vxOf(7103)).toBeDefined();

    // A mismatching vxlan0 in the namespace (another port) is replaced.
    const other = newDatapath(b, { vxlanPort: 4790 });
    await other.ensureNetwork(spec(7103, 83));
    expect(vxOf(7103)?.linkinfo?.info_data).toMatchObject({ id: 7103, port: 4790 });
    await other.close();
    await dp.ensureNetwork(spec(7103, 83));
    expect(vxOf(7103)?.linkinfo?.info_data).toMatchObject({ id: 7103, port: 4789 });

    // The namespace deleted behind our back: its devices die asynchronously
    // (holding the VNI meanwhile); ensureNetwork waits that out and rebuilds.
    deleteNamedNetns(networkNetnsPath(b.runDir, 7103));
    await dp.ensureNetwork(spec(7103, 83));
    expect(vxOf(7103)?.linkinfo?.info_data).toMatchObject({ id: 7103, port: 4789 });

    // Bad input is a rejection, not a synchronous throw.
    expect(dp.hasNetwork("not-a-subnet")).toBe(false);
    await expect(dp.ensureNetwork({ ...spec(7104, 84), subnet: "nope" })).rejects.toThrow(/invalid subnet/);
    await expect(dp.ensureNetwork({ ...spec(7104, 84), gatewayCidr: "10.99.0.1/24" })).rejects.toThrow(/not in subnet/);

    // A VNI is one network's only.
    await expect(dp.ensureNetwork({ ...spec(7103, 84) })).rejects.toThrow(/VNI 7103 .* already used by network 10\.83\.0\.0\/24/);

    // removeNetwork frees the VNI at once: recreating right away works.
    await dp.removeNetwork("10.81.0.0/24");
    expect(fs.existsSync(networkNetnsPath(b.runDir, 7101))).toBe(false);
    await dp.ensureNetwork(spec(7101, 81));
    for (const n of [81, 82, 83]) await dp.removeNetwork(`10.${n}.0.0/24`);
    expect(
      ipLinks(b.h)
        .map((l) => l.ifname)
        .sort(),
    ).toEqual(["lo", "ul0"]);
  });

  it("removeNetwork after a restart finds the namespace by subnet", async () => {
    const b = hosts[1];
    await b.dp.ensureNetwork({ subnet: "10.85.0.0/24", gatewayCidr: "10.85.0.1/24", vni: 7105, mtu: 1450 });
    const ns = networkNetnsPath(b.runDir, 7105);
    expect(isNetnsMount(ns)).toBe(true);
    const fresh = newDatapath(b);
    expect(fresh.hasNetwork("10.85.0.0/24")).toBe(false);
    await fresh.removeNetwork("10.85.0.0/24");
    expect(fs.existsSync(ns)).toBe(false);
    await fresh.removeNetwork("10.85.0.0/24"); // absent
    await fresh.close();
    expect(isNetnsMount(b.ovl)).toBe(true); // the other network is untouched
    expect(pingOk(b.c, ipOf(hosts[0]))).toBe(true);
  });

  it("an address and MAC that move from a remote host to a local container are reached on the first frame, before it sends anything", async () => {
    const [a, b] = hosts;
    // The bridge never learns behind vxlan0.
    const port = JSON.parse(inNs(a.ovl, "bridge", "-d", "-j", "link", "show", "dev", "vxlan0")) as { learning?: boolean }[];
    expect(port[0]?.learning).toBe(false);

    const moving: EndpointSpec = { endpointId: "777777777abcdef0123456789", addressCidr: "10.77.0.20/24", mac: "02:42:0a:4d:00:14" };
    const place = async (x: Host, ep: EndpointSpec, c: string): Promise<void> => {
      await x.dp.ensureEndpoint(SUBNET, ep, 1450);
      const { hostIfName } = endpointIfNames(ep.endpointId);
      inNs(x.h, "ip", "link", "set", hostIfName, "netns", c);
      inNs(c, "ip", "link", "set", hostIfName, "name", "eth0");
      inNs(c, "ip", "addr", "add", ep.addressCidr, "dev", "eth0");
      inNs(c, "ip", "link", "set", "eth0", "up");
    };
    // First on host 2, known to host 1 as a peer; host 1's bridge also holds a
    // learned-like entry for it, as a bridge with learning on would have.
    await place(b, moving, newNs("cb-mv"));
    const onB: PeerEntry = { ip: "10.77.0.20", mac: moving.mac, vtep: b.vtep };
    await a.dp.syncPeers(SUBNET, [peerOf(b), onB]);
    expect(pingOk(a.c, "10.77.0.20")).toBe(true);
    inNs(a.ovl, "bridge", "fdb", "add", "02:42:0a:4d:00:99", "dev", "vxlan0", "master", "dynamic");
    expect(bridgeOnVxlan(a.ovl)).toContain("02:42:0a:4d:00:99 learned");
    expect(await a.dp.syncPeers(SUBNET, [peerOf(b), onB])).toMatchObject({ added: 0, removed: 1 });

    // Then it moves to host 1 with a new endpoint; the container never sends.
    await b.dp.removeEndpoint(SUBNET, moving.endpointId);
    const moved = { ...moving, endpointId: "888888888abcdef0123456789" };
    await place(a, moved, newNs("ca-mv"));
    // Taking the MAC removed every entry host 1 had for it behind vxlan0, before any sync.
    expect(bridgeOnVxlan(a.ovl)).toEqual([`${b.ep.mac.toLowerCase()} static`]);
    expect(remoteFdb(a.ovl)).toEqual([`${b.ep.mac.toLowerCase()} ${b.vtep}`]);
    expect(neighs(a.ovl)).toEqual([`${ipOf(b)} ${b.ep.mac.toLowerCase()} PERMANENT`]);
    // Host 2 learns of the move; its container's first frames reach the silent one.
    await b.dp.syncPeers(SUBNET, [peerOf(a), { ...onB, vtep: a.vtep }]);
    inNs(b.c, "ip", "neigh", "flush", "dev", "eth0");
    expect(pingOk(b.c, "10.77.0.20", 1)).toBe(true);
    expect(await a.dp.syncPeers(SUBNET, [peerOf(b)])).toMatchObject({ added: 0, removed: 0 });

    await a.dp.removeEndpoint(SUBNET, moved.endpointId);
    expect(await b.dp.syncPeers(SUBNET, [peerOf(a)])).toMatchObject({ added: 0, removed: 3 });
    expect(pingOk(a.c, ipOf(b))).toBe(true);
  });

  it("removeEndpoint deletes the pair wherever the other end is; removeNetwork cleans up", async () => {
    const [a, b] = hosts;
    const names = endpointIfNames(a.ep.endpointId);
    await a.dp.removeEndpoint(SUBNET, a.ep.endpointId);
    expect(ipLink(a.ovl, names.bridgeIfName)).toBeUndefined();
    expect(ipLink(a.c, "eth0")).toBeUndefined();
    await a.dp.removeEndpoint(SUBNET, a.ep.endpointId); // absent
    await a.dp.removeEndpoint("10.99.0.0/24", a.ep.endpointId); // unknown network

    // After Leave: the end is back in the host namespace.
    const bNames = endpointIfNames(b.ep.endpointId);
    inNs(b.c, "ip", "link", "set", "eth0", "down");
    inNs(b.c, "ip", "link", "set", "eth0", "name", bNames.hostIfName);
    inNs(b.c, "ip", "link", "set", bNames.hostIfName, "netns", b.h);
    expect(ipLink(b.h, bNames.hostIfName)).toBeDefined();
    await b.dp.removeEndpoint(SUBNET, b.ep.endpointId);
    expect(ipLink(b.h, bNames.hostIfName)).toBeUndefined();

    for (const x of hosts) {
      await x.dp.removeNetwork(SUBNET);
      expect(x.dp.hasNetwork(SUBNET)).toBe(false);
      expect(fs.existsSync(x.ovl)).toBe(false);
      await x.dp.removeNetwork(SUBNET); // absent
      await x.dp.close();
      expect(
        ipLinks(x.h)
          .map((l) => l.ifname)
          .sort(),
      ).toEqual(["lo", "ul0"]);
      expect(fs.readdirSync(path.join(x.runDir, "netns"))).toEqual([]);
    }
  });
});
