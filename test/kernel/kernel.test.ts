/**
 * Kernel adapters against throwaway `tsk-*` network namespaces (root only).
 * Namespaces are created with our own createNamedNetns under a temp dir and
 * removed afterwards; `ip`/`bridge`/`ping` run through nsenter only to verify.
 */
import fs from "node:fs";
import path from "node:path";
import type { RtNetlinkSocket } from "netlink";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Scratch, inNs, ipLink, pingOk, selfNetnsIno } from "./support/scratch.js";
import {
  createVethPair,
  deleteLink,
  ensureAddress,
  ensureBridge,
  ensureVxlan,
  getLinkByName,
  listIpv4Addresses,
  listLinks,
  moveLinkToNetns,
  mustGetLink,
  setMaster,
  setUp,
  vxlanMismatch,
  type VxlanSpec,
} from "../../driver/kernel/links.js";
import { deleteFdbEntry, deleteNeighbor, listFdbEntries, listNeighbors, replaceFdbEntry, replaceNeighbor } from "../../driver/kernel/neighbors.js";
import {
  NetnsError,
  createNamedNetns,
  deleteNamedNetns,
  isNetnsMount,
  openNetnsFd,
  readSysctlIn,
  runInNetns,
  writeSysctlIn,
} from "../../driver/kernel/netns.js";
import { NetlinkError } from "../../driver/kernel/rtnetlink.js";

/** A link's MAC as our own link reads see it. */
const macOf = async (nl: RtNetlinkSocket, name: string): Promise<string> => (await mustGetLink(nl, name)).mac!;

let tmp: string;
let homeIno: number;
const scratch = new Scratch("tsk-kernel-");
const { created } = scratch;
const newNs = (name: string): string => scratch.newNs(name);
const socketIn = (ns: string): RtNetlinkSocket => scratch.socketIn(ns);

beforeAll(() => {
  expect(process.getuid?.()).toBe(0);
  tmp = scratch.init();
  homeIno = selfNetnsIno();
});

afterEach(() => {
  // No call may leave the test's thread in another namespace.
  expect(selfNetnsIno()).toBe(homeIno);
});

afterAll(() => {
  scratch.closeSockets();
  scratch.deleteNamespaces();
  scratch.removeDir();
});

describe("named network namespaces", () => {
  it("creates and deletes idempotently without moving the caller", () => {
    const p = path.join(tmp, "tsk-idem");
    created.push(p);
    createNamedNetns(p);
    expect(selfNetnsIno()).toBe(homeIno);
    const ino = fs.statSync(p).ino;
    expect(isNetnsMount(p)).toBe(true);
    expect(ino).not.toBe(homeIno);

    createNamedNetns(p); // already there: same namespace kept
    expect(fs.statSync(p).ino).toBe(ino);
    expect(inNs(p, "ip", "-br", "link")).toMatch(/^lo\s/);

    deleteNamedNetns(p);
    expect(fs.existsSync(p)).toBe(false);
    deleteNamedNetns(p); // already gone
    expect(selfNetnsIno()).toBe(homeIno);
  });

  it("mounts over a left-over plain file and creates parent dirs", () => {
    const p = path.join(tmp, "nested", "tsk-leftover");
    created.push(p);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, "");
    expect(isNetnsMount(p)).toBe(false);
    createNamedNetns(p);
    expect(isNetnsMount(p)).toBe(true);
    deleteNamedNetns(p);
    expect(fs.existsSync(p)).toBe(false);
  });

  it("runInNetns runs inside, returns the value and always switches back", () => {
    const ns = newNs("run");
    const nsIno = fs.statSync(ns).ino;
    expect(runInNetns(ns, () => selfNetnsIno())).toBe(nsIno);
    expect(selfNetnsIno()).toBe(homeIno);

    // Nested: the inner call returns to the outer namespace, not home.
    const other = newNs("run2");
    const seen = runInNetns(ns, () => [runInNetns(other, () => selfNetnsIno()), selfNetnsIno()]);
    expect(seen).toEqual([fs.statSync(other).ino, nsIno]);

    expect(() =>
      runInNetns(ns, () => {
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(selfNetnsIno()).toBe(homeIno);

    expect(() => runInNetns(ns, async () => 1)).toThrow(NetnsError);
    expect(() => runInNetns(ns, () => Promise.resolve(1))).toThrow(/returned a promise/);
    expect(selfNetnsIno()).toBe(homeIno);

    expect(() => runInNetns(path.join(tmp, "tsk-missing"), () => 1)).toThrow(/tsk-missing: not a network namespace/);
    expect(selfNetnsIno()).toBe(homeIno);
  });

  it("writes sysctls inside the namespace only", () => {
    const ns = newNs("sysctl");
    const hostForward = fs.readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim();
    const want = hostForward === "1" ? "0" : "1";
    writeSysctlIn(ns, "net/ipv4/ip_forward", want);
    expect(inNs(ns, "sysctl", "-n", "net.ipv4.ip_forward").trim()).toBe(want);
    expect(readSysctlIn(ns, "net/ipv4/ip_forward")).toBe(want);
    expect(fs.readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim()).toBe(hostForward);

    expect(() => writeSysctlIn(ns, "kernel/hostname", "x")).toThrow(/refusing sysctl key/);
    expect(() => writeSysctlIn(ns, "net/../kernel/hostname", "x")).toThrow(/refusing sysctl key/);
    expect(() => writeSysctlIn(ns, "net/ipv4/conf/nonexistent0/proxy_arp", "1")).toThrow(/nonexistent0/);
    expect(selfNetnsIno()).toBe(homeIno);
  });
});

describe("links", () => {
  const vx: VxlanSpec = {
    name: "vxlan0",
    vni: 4242,
    dstPort: 4789,
    local: "192.168.250.1",
    learning: false,
    proxy: true,
    mtu: 1450,
  };

  it("bridge + vxlan (nolearning, proxy, VNI, dstport, local) enslaved, idempotently", async () => {
    const ns = newNs("links");
    const nl = socketIn(ns);
    expect(selfNetnsIno()).toBe(homeIno);

    const br = await ensureBridge(nl, "br0", 1450);
    const vxl = await ensureVxlan(nl, vx);
    await setMaster(nl, "vxlan0", "br0");
    await setUp(nl, "vxlan0");
    await setUp(nl, "br0");
    await ensureAddress(nl, "br0", "10.250.0.1/24");

    const ipBr = ipLink(ns, "br0");
    const ipVx = ipLink(ns, "vxlan0");
    expect(ipBr?.linkinfo?.info_kind).toBe("bridge");
    expect(ipBr?.mtu).toBe(1450);
    expect(ipVx?.linkinfo?.info_kind).toBe("vxlan");
    expect(ipVx?.linkinfo?.info_data).toMatchObject({ id: 4242, port: 4789, local: "192.168.250.1", learning: false, proxy: true });
    expect(ipVx?.master).toBe("br0");
    expect(ipVx?.mtu).toBe(1450);
    expect(ipVx?.flags).toContain("UP");
    expect(inNs(ns, "ip", "-d", "link", "show", "vxlan0")).toMatch(/nolearning.*proxy|proxy.*nolearning/s);

    // Our own view agrees.
    const mine = await getLinkByName(nl, "vxlan0");
    expect(mine).toMatchObject({ kind: "vxlan", master: br.index, up: true, mtu: 1450 });
    expect(mine?.vxlan).toEqual({ vni: 4242, dstPort: 4789, local: "192.168.250.1", learning: false, proxy: true });
    expect(await macOf(nl, "br0")).toBe(ipLink(ns, "br0")?.address);

    // Idempotent: nothing is recreated.
    expect((await ensureBridge(nl, "br0", 1450)).index).toBe(br.index);
    expect((await ensureVxlan(nl, vx)).index).toBe(vxl.index);
    await setMaster(nl, "vxlan0", "br0");
    await ensureAddress(nl, "br0", "10.250.0.1/24");
    const addrs = JSON.parse(inNs(ns, "ip", "-j", "-4", "addr", "show", "dev", "br0")) as {
      addr_info: { local: string; prefixlen: number }[];
    }[];
    expect(addrs[0]?.addr_info).toEqual([expect.objectContaining({ local: "10.250.0.1", prefixlen: 24 })]);

    // MTU drift is corrected in place.
    await ensureBridge(nl, "br0", 1400);
    expect(ipLink(ns, "br0")?.mtu).toBe(1400);

    // A different VNI cannot be changed in place: the device is replaced.
    const vx2 = await ensureVxlan(nl, { ...vx, vni: 4343 });
    expect(vx2.index).not.toBe(vxl.index);
    expect(ipLink(ns, "vxlan0")?.linkinfo?.info_data).toMatchObject({ id: 4343 });

    // Wrong kind under the name is an error naming the link.
    await expect(ensureVxlan(nl, { ...vx, name: "br0" })).rejects.toThrow(/link br0: ensure vxlan failed.*kind bridge/);
    const missing = await mustGetLink(nl, "nope0").catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(NetlinkError);
    expect((missing as NetlinkError).code).toBe("ENODEV");
    expect((missing as Error).message).toMatch(/^link nope0: get failed: no such link/);

    expect((await listLinks(nl)).map((l) => l.name).sort()).toEqual(["br0", "lo", "vxlan0"]);
    await deleteLink(nl, "vxlan0");
    await deleteLink(nl, "vxlan0");
    expect(ipLink(ns, "vxlan0")).toBeUndefined();

    // proxy_arp on br0 is a per-namespace, per-device sysctl.
    writeSysctlIn(ns, "net/ipv4/conf/br0/proxy_arp", "1");
    expect(inNs(ns, "sysctl", "-n", "net.ipv4.conf.br0.proxy_arp").trim()).toBe("1");
    expect(selfNetnsIno()).toBe(homeIno);
  });

  it("veth pair: one end on br0 in the netns, the other in a second namespace, MTU on both", async () => {
    const ns = newNs("veth");
    const other = newNs("veth-peer");
    const nl = socketIn(ns);
    await ensureBridge(nl, "br0", 1400);
    await setUp(nl, "br0");

    const fd = openNetnsFd(other);
    try {
      const end = await createVethPair(nl, "veth-c1", "c1-eth0", 1400, fd);
      await setMaster(nl, "veth-c1", "br0");
      await setUp(nl, "veth-c1");
      // Second call finds it and leaves it alone.
      expect((await createVethPair(nl, "veth-c1", "c1-eth0", 1400, fd)).index).toBe(end.index);
    } finally {
      fs.closeSync(fd);
    }

    const local = ipLink(ns, "veth-c1");
    expect(local).toMatchObject({ mtu: 1400, master: "br0" });
    expect(local?.linkinfo?.info_kind).toBe("veth");
    expect(ipLink(ns, "c1-eth0")).toBeUndefined();
    const peer = ipLink(other, "c1-eth0");
    expect(peer).toMatchObject({ mtu: 1400 });
    expect(peer?.linkinfo?.info_kind).toBe("veth");

    // Moving an existing link (with a rename) to another namespace.
    await createVethPair(nl, "mv-a", "mv-b", 1300);
    const fd2 = openNetnsFd(other);
    try {
      await moveLinkToNetns(nl, "mv-b", fd2, "moved0");
    } finally {
      fs.closeSync(fd2);
    }
    expect(ipLink(ns, "mv-b")).toBeUndefined();
    expect(ipLink(other, "moved0")).toMatchObject({ mtu: 1300 });

    // Deleting one end removes the pair.
    await deleteLink(nl, "veth-c1");
    expect(ipLink(other, "c1-eth0")).toBeUndefined();
    expect(selfNetnsIno()).toBe(homeIno);
  });
});

describe("link reads", () => {
  it("vxlanMismatch says why a device is not the one wanted; listIpv4Addresses lists one link's or all", async () => {
    const ns = newNs("reads");
    const nl = socketIn(ns);
    const want: VxlanSpec = { name: "vxlan0", vni: 4444, dstPort: 4789, local: "192.168.249.1", learning: false, proxy: true };
    const vxl = await ensureVxlan(nl, { ...want, underlay: 1 });
    expect(vxlanMismatch(vxl, want)).toBeUndefined();
    expect(vxlanMismatch(vxl, { ...want, underlay: 1 })).toBeUndefined();
    expect(vxlanMismatch(vxl, { ...want, vni: 4445 })).toBe("vni 4444 vs 4445");
    expect(vxlanMismatch(vxl, { ...want, dstPort: 4790, learning: true, proxy: false })).toBe("dstport 4789 vs 4790, learning off vs on, proxy on vs off");
    expect(vxlanMismatch(vxl, { ...want, local: "192.168.249.2", underlay: 2 })).toBe("local 192.168.249.1 vs 192.168.249.2, underlay #1 vs #2");
    const br = await ensureBridge(nl, "br0");
    expect(vxlanMismatch(br, want)).toBe("kind bridge vs vxlan");

    await ensureAddress(nl, "br0", "10.249.0.1/24");
    await ensureAddress(nl, "br0", "10.249.1.1/16");
    await ensureAddress(nl, "vxlan0", "10.248.0.1/30");
    await ensureAddress(nl, "br0", "fd00:249::1/64"); // not IPv4: never listed
    expect(await listIpv4Addresses(nl, br.index)).toEqual([
      { index: br.index, ip: "10.249.0.1", prefix: 24 },
      { index: br.index, ip: "10.249.1.1", prefix: 16 },
    ]);
    const all = await listIpv4Addresses(nl);
    expect(all).toHaveLength(3);
    expect(all).toContainEqual({ index: vxl.index, ip: "10.248.0.1", prefix: 30 });
    expect(await listIpv4Addresses(nl, 999_999)).toEqual([]);
    expect(selfNetnsIno()).toBe(homeIno);
  });
});

describe("neighbors", () => {
  it("FDB and ARP entries are permanent, listed, replaced and deleted", async () => {
    const ns = newNs("neigh");
    const nl = socketIn(ns);
    await ensureBridge(nl, "br0", 1450);
    const vxl = await ensureVxlan(nl, {
      name: "vxlan0",
      vni: 77,
      dstPort: 4789,
      local: "192.168.251.1",
      learning: false,
      proxy: true,
      mtu: 1450,
    });
    await setMaster(nl, "vxlan0", "br0");
    await setUp(nl, "vxlan0");
    await setUp(nl, "br0");
    const br = await getLinkByName(nl, "br0");
    const brIndex = br?.index ?? -1;

    const mac = "02:42:0a:fb:00:05";
    await replaceFdbEntry(nl, { ifindex: vxl.index, mac, dst: "192.168.251.2" });
    await replaceFdbEntry(nl, { ifindex: vxl.index, mac, dst: "192.168.251.2" }); // idempotent
    type Fdb = { mac: string; dst?: string; state?: string; flags?: string[] };
    const fdb = (): Fdb[] => JSON.parse(inNs(ns, "bridge", "-j", "fdb", "show", "dev", "vxlan0")) as Fdb[];
    expect(fdb()).toContainEqual(expect.objectContaining({ mac, dst: "192.168.251.2", state: "permanent", flags: ["self"] }));
    expect(await listFdbEntries(nl, vxl.index)).toEqual([{ ifindex: vxl.index, mac, dst: "192.168.251.2", permanent: true }]);

    // Replace moves the MAC to another VTEP; a failure names the entry and the kernel's code.
    await replaceFdbEntry(nl, { ifindex: vxl.index, mac, dst: "192.168.251.3" });
    expect((await listFdbEntries(nl, vxl.index)).map((e) => e.dst)).toEqual(["192.168.251.3"]);
    const err = await replaceFdbEntry(nl, { ifindex: 999_999, mac, dst: "192.168.251.4" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetlinkError);
    expect((err as NetlinkError).code).toBe("ENODEV");
    expect((err as Error).message).toMatch(`fdb ${mac} dst 192.168.251.4 on link #999999`);

    // A flood list on the all-zeros MAC (as `bridge fdb append` builds one) is listed per destination.
    const zero = "00:00:00:00:00:00";
    for (const dst of ["192.168.251.2", "192.168.251.3", "192.168.251.3"]) {
      inNs(ns, "bridge", "fdb", "append", zero, "dev", "vxlan0", "dst", dst, "self", "permanent");
    }
    const flood = (await listFdbEntries(nl, vxl.index)).filter((e) => e.mac === zero).map((e) => e.dst);
    expect(flood.sort()).toEqual(["192.168.251.2", "192.168.251.3"]);

    await deleteFdbEntry(nl, { ifindex: vxl.index, mac, dst: "192.168.251.3" });
    await deleteFdbEntry(nl, { ifindex: vxl.index, mac, dst: "192.168.251.3" }); // already gone
    await deleteFdbEntry(nl, { ifindex: vxl.index, mac: zero, dst: "192.168.251.2" });
    expect(fdb().filter((e) => e.mac === mac)).toEqual([]);
    expect((await listFdbEntries(nl, vxl.index)).map((e) => `${e.mac} ${e.dst}`)).toEqual([`${zero} 192.168.251.3`]);

    // ARP (and NDP) entries.
    await replaceNeighbor(nl, { ifindex: brIndex, ip: "10.251.0.5", mac });
    await replaceNeighbor(nl, { ifindex: brIndex, ip: "10.251.0.5", mac }); // idempotent
    await replaceNeighbor(nl, { ifindex: vxl.index, ip: "fd00:251::5", mac });
    type Neigh = { dst: string; lladdr?: string; state: string[] };
    const arp = JSON.parse(inNs(ns, "ip", "-j", "neigh", "show", "dev", "br0")) as Neigh[];
    expect(arp).toContainEqual(expect.objectContaining({ dst: "10.251.0.5", lladdr: mac, state: ["PERMANENT"] }));
    expect(await listNeighbors(nl, brIndex)).toEqual([{ ifindex: brIndex, ip: "10.251.0.5", mac, permanent: true }]);
    expect(await listNeighbors(nl, vxl.index)).toEqual([{ ifindex: vxl.index, ip: "fd00:251::5", mac, permanent: true }]);

    await deleteNeighbor(nl, { ifindex: brIndex, ip: "10.251.0.5" });
    await deleteNeighbor(nl, { ifindex: brIndex, ip: "10.251.0.5" }); // already gone
    await deleteNeighbor(nl, { ifindex: vxl.index, ip: "fd00:251::5" });
    expect(JSON.parse(inNs(ns, "ip", "-j", "neigh", "show", "dev", "br0"))).toEqual([]);
    expect(await listNeighbors(nl, brIndex)).toEqual([]);
    expect(selfNetnsIno()).toBe(homeIno);
  });
});

describe("overlay data path", () => {
  it("two namespaces with br0+vxlan over a veth underlay ping each other over VXLAN", async () => {
    const nsA = newNs("ovl-a");
    const nsB = newNs("ovl-b");
    const a = socketIn(nsA);
    const b = socketIn(nsB);

    // Underlay: veth ul0 (A) <-> ul0 (B).
    const fdB = openNetnsFd(nsB);
    try {
      await createVethPair(a, "ul0", "ul0", 1500, fdB);
    } finally {
      fs.closeSync(fdB);
    }
    const sides = [
      { nl: a, ns: nsA, vtep: "192.168.252.1", ip: "10.252.0.1" },
      { nl: b, ns: nsB, vtep: "192.168.252.2", ip: "10.252.0.2" },
    ] as const;
    const vxIndex: number[] = [];
    for (const s of sides) {
      await ensureAddress(s.nl, "ul0", `${s.vtep}/24`);
      await setUp(s.nl, "ul0");
      await ensureBridge(s.nl, "br0", 1450);
      const v = await ensureVxlan(s.nl, { name: "vxlan0", vni: 5252, dstPort: 4789, local: s.vtep, learning: false, proxy: true, mtu: 1450 });
      vxIndex.push(v.index);
      await setMaster(s.nl, "vxlan0", "br0");
      await ensureAddress(s.nl, "br0", `${s.ip}/24`);
      await setUp(s.nl, "vxlan0");
      await setUp(s.nl, "br0");
    }
    // The bridge takes its MAC from its ports, so read it after enslaving.
    const macs = [await macOf(a, "br0"), await macOf(b, "br0")];
    for (const [i, s] of sides.entries()) {
      const peer = sides[1 - i]!;
      const peerMac = macs[1 - i]!;
      await replaceFdbEntry(s.nl, { ifindex: vxIndex[i]!, mac: peerMac, dst: peer.vtep });
      const br = await getLinkByName(s.nl, "br0");
      await replaceNeighbor(s.nl, { ifindex: br!.index, ip: peer.ip, mac: peerMac });
    }

    expect(pingOk(nsA, "10.252.0.2")).toBe(true);
    expect(pingOk(nsB, "10.252.0.1")).toBe(true);
    // It really went through the VXLAN device.
    const stats = JSON.parse(inNs(nsA, "ip", "-j", "-s", "link", "show", "vxlan0")) as {
      stats64: { tx: { packets: number }; rx: { packets: number } };
    }[];
    expect(stats[0]?.stats64.tx.packets).toBeGreaterThan(0);
    expect(stats[0]?.stats64.rx.packets).toBeGreaterThan(0);

    // Without the FDB entry the traffic has nowhere to go.
    await deleteFdbEntry(a, { ifindex: vxIndex[0]!, mac: macs[1]!, dst: "192.168.252.2" });
    expect(pingOk(nsA, "10.252.0.2", 1)).toBe(false);
    expect(selfNetnsIno()).toBe(homeIno);
  });

  it("host-created vxlan moved into the overlay namespace carries container traffic with proxy ARP", async () => {
    // Per host: h (host/underlay), o (overlay: br0 + vxlan), c (container).
    const hosts = [
      { tag: "1", vtep: "192.168.253.1", cip: "10.253.0.11" },
      { tag: "2", vtep: "192.168.253.2", cip: "10.253.0.12" },
    ].map((x) => ({ ...x, h: newNs(`h${x.tag}`), o: newNs(`o${x.tag}`), c: newNs(`c${x.tag}`) }));
    const [h1, h2] = hosts as [(typeof hosts)[0], (typeof hosts)[0]];

    const fd = openNetnsFd(h2.h);
    try {
      await createVethPair(socketIn(h1.h), "eth1", "eth1", 1500, fd);
    } finally {
      fs.closeSync(fd);
    }

    const state: { o: RtNetlinkSocket; vx: number; cmac: string }[] = [];
    for (const x of hosts) {
      const h = socketIn(x.h);
      const o = socketIn(x.o);
      await ensureAddress(h, "eth1", `${x.vtep}/24`);
      await setUp(h, "eth1");
      const eth1 = await getLinkByName(h, "eth1");
      // Created in the host namespace (its UDP socket stays there), then moved.
      await ensureVxlan(h, { name: "vx-tmp", vni: 5353, dstPort: 4789, local: x.vtep, learning: false, proxy: true, mtu: 1450, underlay: eth1!.index });
      const ofd = openNetnsFd(x.o);
      const cfd = openNetnsFd(x.c);
      try {
        await moveLinkToNetns(h, "vx-tmp", ofd, "vxlan0");
        await ensureBridge(o, "br0", 1450);
        await setMaster(o, "vxlan0", "br0");
        await ensureAddress(o, "br0", "10.253.0.1/24");
        await setUp(o, "vxlan0");
        await setUp(o, "br0");
        await createVethPair(o, `veth${x.tag}`, "eth0", 1450, cfd);
        await setMaster(o, `veth${x.tag}`, "br0");
        await setUp(o, `veth${x.tag}`);
      } finally {
        fs.closeSync(ofd);
        fs.closeSync(cfd);
      }
      const c = socketIn(x.c);
      await ensureAddress(c, "eth0", `${x.cip}/24`);
      await setUp(c, "eth0");
      const vx = await getLinkByName(o, "vxlan0");
      expect(vx?.vxlan).toMatchObject({ vni: 5353, local: x.vtep, learning: false, proxy: true });
      state.push({ o, vx: vx!.index, cmac: await macOf(c, "eth0") });
    }
    for (const [i, x] of hosts.entries()) {
      const me = state[i]!;
      const peer = state[1 - i]!;
      const peerHost = hosts[1 - i]!;
      await replaceFdbEntry(me.o, { ifindex: me.vx, mac: peer.cmac, dst: peerHost.vtep });
      // On the vxlan device: its proxy answers the container's ARP locally.
      await replaceNeighbor(me.o, { ifindex: me.vx, ip: peerHost.cip, mac: peer.cmac });
      expect(ipLink(x.o, "vxlan0")?.linkinfo?.info_data).toMatchObject({ proxy: true, learning: false });
    }

    expect(pingOk(h1.c, h2.cip)).toBe(true);
    expect(pingOk(h2.c, h1.cip)).toBe(true);
    // The container learned the peer's MAC by ARP, answered by the proxy.
    const neigh = JSON.parse(inNs(h1.c, "ip", "-j", "neigh", "show", "dev", "eth0")) as { dst: string; lladdr?: string }[];
    expect(neigh).toContainEqual(expect.objectContaining({ dst: h2.cip, lladdr: state[1]!.cmac }));
    expect(selfNetnsIno()).toBe(homeIno);
  });
});
