/**
 * EgressGateway on a simulated host (root, no lab). Namespaces, all `tsk-*`
 * under a temp dir:
 *   tsk-outside  203.0.113.2 (TEST-NET-3), an HTTP server answering with the
 *                client address it sees
 *   tsk-host     plays the host: uplink 203.0.113.1, default via the outside;
 *                the gateway bridge, legs, routes and iptables rules go here
 *   tsk-net1/2   play two overlay networks' namespaces: br0 10.10.0.1/24 and
 *                10.20.0.1/24 (as KernelDatapath builds them)
 *   tsk-c1/2     a container per network: eth0 10.10.0.2/24 / 10.20.0.2/24
 * `ip`, `iptables`, `ping` and `curl` run through nsenter to verify.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { RtNetlinkSocket } from "netlink";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EgressGateway } from "../../driver/kernel/egress/egress-gateway.js";
import { EgressError } from "../../driver/kernel/egress/errors.js";
import { hostLegName } from "../../driver/kernel/egress/legs.js";
import { FWD_CHAIN, NAT_CHAIN } from "../../driver/kernel/egress/rules.js";
import { createVethPair, ensureAddress, ensureBridge, setMaster, setUp } from "../../driver/kernel/links.js";
import { deleteNamedNetns, openNetnsFd, readSysctlIn } from "../../driver/kernel/netns.js";
import { createLogger } from "../../lib/log.js";
import { Scratch, inNs, ipLink, ipLinks, pingOk as pingOkIn, selfNetnsIno } from "./support/scratch.js";

const pingOk = (from: string, ip: string, attempts = 2): boolean => pingOkIn(from, ip, attempts, 1);

const log = createLogger(process.env.TSOVERLAY_LOG_LEVEL ?? "silent");

const HOST_IP = "203.0.113.1";
const OUTSIDE_IP = "203.0.113.2";
const PORT = 8080;
const NET1 = "10.10.0.0/24";
const NET2 = "10.20.0.0/24";
const C1 = "10.10.0.2";
const C2 = "10.20.0.2";
/** 02:74 + 100.72.0.1 */
const BRIDGE_MAC = "02:74:64:48:00:01";

let tmp: string;
let homeIno: number;
let rootRulesBefore: string;
const scratch = new Scratch("tsk-egress-");
const { created, sockets } = scratch;
const newNs = (name: string): string => scratch.newNs(name);
const socketIn = (p: string): RtNetlinkSocket => scratch.socketIn(p);
const gateways: EgressGateway[] = [];
let server: ChildProcess | undefined;
let ns: { host: string; outside: string; net1: string; net2: string; c1: string; c2: string };
let gw: EgressGateway;

function newGateway(extra: { iptables?: string } = {}): EgressGateway {
  const g = new EgressGateway({ hostNetnsPath: ns.host, log, ...extra });
  gateways.push(g);
  return g;
}

/** Every iptables rule of the root namespace (must stay untouched). */
const rootRules = (): string =>
  ["filter", "nat", "mangle", "raw"].map((t) => execFileSync("iptables", ["-w", "5", "-t", t, "-S"], { encoding: "utf8" })).join("\n");

const ipt = (table: string, ...args: string[]): string[] =>
  inNs(ns.host, "iptables", "-w", "5", "-t", table, "-S", ...args)
    .trim()
    .split("\n");
const addrs = (p: string, dev: string): string[] =>
  (JSON.parse(inNs(p, "ip", "-j", "-4", "addr", "show", "dev", dev)) as { addr_info: { local: string; prefixlen: number }[] }[])
    .flatMap((l) => l.addr_info)
    .map((a) => `${a.local}/${a.prefixlen}`);
const routes = (p: string): string[] =>
  inNs(p, "ip", "-4", "route", "show", "table", "main")
    .trim()
    .split("\n")
    .map((l) =>
      l
        .replace(/\s+proto \S+/, "")
        .replace(/\s+linkdown/, "")
        .trim(),
    );

/** GET from the outside server; it answers with the client address it sees. */
function fetchFrom(p: string): string {
  return inNs(p, "curl", "-sS", "--max-time", "5", `http://${OUTSIDE_IP}:${PORT}/`).trim();
}

function fetchFails(p: string): boolean {
  try {
    inNs(p, "curl", "-sS", "--max-time", "2", `http://${OUTSIDE_IP}:${PORT}/`);
    return false;
  } catch {
    return true;
  }
}

/** A network namespace (br0 = gateway) with one container on it. */
async function buildNetwork(net: string, c: string, gatewayCidr: string, containerCidr: string, tag: string): Promise<void> {
  const nl = socketIn(net);
  const br = await ensureBridge(nl, "br0");
  await ensureAddress(nl, br.index, gatewayCidr);
  await setUp(nl, br.index);
  const fd = openNetnsFd(c);
  try {
    await createVethPair(nl, `ve${tag}`, "eth0", undefined, fd);
  } finally {
    fs.closeSync(fd);
  }
  await setMaster(nl, `ve${tag}`, "br0");
  await setUp(nl, `ve${tag}`);
  const cl = socketIn(c);
  await ensureAddress(cl, "eth0", containerCidr);
  await setUp(cl, "eth0");
  await setUp(cl, "lo");
  inNs(c, "ip", "route", "add", "default", "via", gatewayCidr.split("/")[0]!);
}

const spec1 = (): { subnet: string; nsPath: string; slot: number } => ({ subnet: NET1, nsPath: ns.net1, slot: 1 });
const spec2 = (): { subnet: string; nsPath: string; slot: number } => ({ subnet: NET2, nsPath: ns.net2, slot: 2 });

const FWD_RULES = [
  `-N ${FWD_CHAIN}`,
  `-A ${FWD_CHAIN} -i tsogw0 -o tsogw0 -j DROP`,
  `-A ${FWD_CHAIN} -i tsogw0 -j ACCEPT`,
  `-A ${FWD_CHAIN} -o tsogw0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
  `-A ${FWD_CHAIN} -o tsogw0 -m conntrack --ctstate DNAT -j ACCEPT`,
  `-A ${FWD_CHAIN} -o tsogw0 -j DROP`,
];
const masq = (subnet: string): string => `-A ${NAT_CHAIN} -s ${subnet} ! -o tsogw0 -j MASQUERADE`;

beforeAll(async () => {
  expect(process.getuid?.()).toBe(0);
  rootRulesBefore = rootRules();
  tmp = scratch.init();
  homeIno = selfNetnsIno();
  ns = {
    host: newNs("host"),
    outside: newNs("outside"),
    net1: newNs("net1"),
    net2: newNs("net2"),
    c1: newNs("c1"),
    c2: newNs("c2"),
  };

  // Uplink: up0 (host) <-> up0 (outside).
  const hl = socketIn(ns.host);
  const ol = socketIn(ns.outside);
  const fd = openNetnsFd(ns.outside);
  try {
    await createVethPair(hl, "up0", "up0", undefined, fd);
  } finally {
    fs.closeSync(fd);
  }
  await ensureAddress(hl, "up0", `${HOST_IP}/24`);
  await ensureAddress(ol, "up0", `${OUTSIDE_IP}/24`);
  for (const nl of [hl, ol]) {
    await setUp(nl, "up0");
    await setUp(nl, "lo");
  }
  inNs(ns.host, "ip", "route", "add", "default", "via", OUTSIDE_IP);
  // The outside only knows 203.0.113.0/24: it can answer the host, nobody behind it.

  await buildNetwork(ns.net1, ns.c1, "10.10.0.1/24", `${C1}/24`, "1");
  await buildNetwork(ns.net2, ns.c2, "10.20.0.1/24", `${C2}/24`, "2");

  // The outside's HTTP server: replies with the source address it sees.
  const script =
    `require("http").createServer((q, s) => s.end(q.socket.remoteAddress.replace(/^::ffff:/, "") + "\\n"))` +
    `.listen(${PORT}, "${OUTSIDE_IP}", () => console.log("listening"));`;
  server = spawn("nsenter", [`--net=${ns.outside}`, process.execPath, "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("HTTP server did not start")), 10_000);
    server!.stdout!.on("data", (d: Buffer) => {
      if (d.toString().includes("listening")) {
        clearTimeout(t);
        resolve();
      }
    });
    server!.on("exit", (code) => reject(new Error(`HTTP server exited with ${code}`)));
  });
  expect(fetchFrom(ns.host)).toBe(HOST_IP);

  gw = newGateway();
});

afterEach(() => {
  expect(selfNetnsIno()).toBe(homeIno);
});

afterAll(async () => {
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server!.on("exit", r));
    server.kill("SIGTERM");
    await exited;
  }
  for (const g of gateways.splice(0)) await g.close();
  for (const s of sockets.splice(0)) s.socket.close();
  for (const p of created.splice(0)) deleteNamedNetns(p);
  const mounts = fs.readFileSync("/proc/self/mountinfo", "utf8");
  expect(mounts).not.toContain(tmp);
  fs.rmSync(tmp, { recursive: true, force: true });
  expect(rootRules()).toBe(rootRulesBefore);
});

describe("EgressGateway on a simulated host", () => {
  it("before: containers have no way out", () => {
    expect(fetchFails(ns.c1)).toBe(true);
    expect(ipLink(ns.host, "tsogw0")).toBeUndefined();
  });

  it("ensureNetwork builds bridge, legs, routes, forwarding and the chains — exactly once when ensured twice", async () => {
    for (let i = 0; i < 2; i++) {
      await gw.ensureNetwork(spec1());
      await gw.ensureNetwork(spec2());
    }
    // Host bridge with the gateway subnet's first host; legs on it, isolated, up.
    expect(addrs(ns.host, "tsogw0")).toEqual(["100.72.0.1/24"]);
    expect(ipLink(ns.host, "tsogw0")?.address).toBe(BRIDGE_MAC);
    expect(ipLink(ns.host, "tsogw0")?.flags).toContain("UP");
    for (const slot of [1, 2]) {
      const leg = ipLink(ns.host, hostLegName(slot));
      expect(leg).toMatchObject({ master: "tsogw0" });
      expect(leg?.flags).toContain("UP");
      expect(leg?.linkinfo?.info_slave_data?.isolated).toBe(true);
    }
    // Network side: gw0 with .slot+1, default route via the bridge, forwarding on.
    for (const [p, ip] of [
      [ns.net1, "100.72.0.2/24"],
      [ns.net2, "100.72.0.3/24"],
    ] as const) {
      expect(addrs(p, "gw0")).toEqual([ip]);
      expect(ipLink(p, "gw0")?.flags).toContain("UP");
      expect(routes(p)).toContain("default via 100.72.0.1 dev gw0");
      expect(readSysctlIn(p, "net/ipv4/ip_forward")).toBe("1");
    }
    expect(readSysctlIn(ns.host, "net/ipv4/ip_forward")).toBe("1");
    expect(routes(ns.host)).toEqual(expect.arrayContaining([`${NET1} via 100.72.0.2 dev tsogw0`, `${NET2} via 100.72.0.3 dev tsogw0`]));

    // iptables: own chains, one jump each at the top, every rule once.
    expect(ipt("filter", FWD_CHAIN)).toEqual(FWD_RULES);
    expect(ipt("filter", "FORWARD").filter((r) => r.includes(FWD_CHAIN))).toEqual([`-A FORWARD -j ${FWD_CHAIN}`]);
    expect(ipt("filter", "FORWARD")[1]).toBe(`-A FORWARD -j ${FWD_CHAIN}`);
    expect(ipt("nat", NAT_CHAIN)).toEqual([`-N ${NAT_CHAIN}`, masq(NET1), masq(NET2)]);
    expect(ipt("nat", "POSTROUTING").filter((r) => r.includes(NAT_CHAIN))).toEqual([`-A POSTROUTING -j ${NAT_CHAIN}`]);
    const all = ipt("filter")
      .map((r) => `filter ${r}`)
      .concat(ipt("nat").map((r) => `nat ${r}`));
    expect(new Set(all).size).toBe(all.length);
  });

  it("a container reaches the outside, which sees the host's address as source", () => {
    expect(fetchFrom(ns.c1)).toBe(HOST_IP);
    expect(fetchFrom(ns.c2)).toBe(HOST_IP);
    expect(pingOk(ns.c1, OUTSIDE_IP)).toBe(true);
  });

  it("networks are isolated from each other; the outside cannot open connections in", () => {
    expect(pingOk(ns.c1, C2, 1)).toBe(false);
    expect(pingOk(ns.c2, C1, 1)).toBe(false);
    // Not even another network's leg, at layer 2 (isolated bridge ports).
    expect(pingOk(ns.c1, "100.72.0.3", 1)).toBe(false);
    expect(pingOk(ns.net1, "100.72.0.3", 1)).toBe(false);
    // The legs still reach the bridge (the host).
    expect(pingOk(ns.net1, "100.72.0.1")).toBe(true);
    // A router outside that knows the way in is still refused: only replies pass.
    inNs(ns.outside, "ip", "route", "add", NET1, "via", HOST_IP);
    try {
      expect(pingOk(ns.outside, C1, 1)).toBe(false);
    } finally {
      inNs(ns.outside, "ip", "route", "del", NET1, "via", HOST_IP);
    }
    const drops = inNs(ns.host, "iptables", "-w", "5", "-L", FWD_CHAIN, "-v", "-n", "-x");
    const pkts = drops
      .split("\n")
      .filter((l) => /\bDROP\b/.test(l))
      .map((l) => Number(l.trim().split(/\s+/)[0]));
    expect(pkts.every((n) => n > 0)).toBe(true);
  });

  it("after a restart, re-ensure repairs only what is missing and never duplicates", async () => {
    await gw.close();
    const legIndex = ipLink(ns.host, "tsog1")?.ifindex;
    // Damage: a jump, the isolation rule, a NAT rule, the host route, the
    // network's default route, and the host leg's isolation flag.
    inNs(ns.host, "iptables", "-w", "5", "-t", "nat", "-D", "POSTROUTING", "-j", NAT_CHAIN);
    inNs(ns.host, "iptables", "-w", "5", "-D", FWD_CHAIN, "-i", "tsogw0", "-o", "tsogw0", "-j", "DROP");
    inNs(ns.host, "iptables", "-w", "5", "-t", "nat", "-D", NAT_CHAIN, ...masq(NET1).split(" ").slice(2));
    inNs(ns.host, "ip", "route", "del", NET1);
    inNs(ns.net1, "ip", "route", "del", "default");
    inNs(ns.host, "ip", "link", "set", "tsog1", "type", "bridge_slave", "isolated", "off");
    expect(fetchFails(ns.c1)).toBe(true);

    gw = newGateway();
    await gw.ensureNetwork(spec1());
    await gw.ensureNetwork(spec2());
    await gw.ensureNetwork(spec1());
    expect(ipLink(ns.host, "tsog1")?.ifindex).toBe(legIndex); // not recreated
    expect(ipLink(ns.host, "tsog1")?.linkinfo?.info_slave_data?.isolated).toBe(true);
    expect(ipt("filter", FWD_CHAIN)).toEqual(FWD_RULES); // DROP back in first place
    expect(ipt("nat", NAT_CHAIN)).toEqual([`-N ${NAT_CHAIN}`, masq(NET2), masq(NET1)]);
    expect(ipt("nat", "POSTROUTING").filter((r) => r.includes(NAT_CHAIN))).toHaveLength(1);
    expect(ipt("filter", "FORWARD").filter((r) => r.includes(FWD_CHAIN))).toHaveLength(1);
    expect(fetchFrom(ns.c1)).toBe(HOST_IP);
    expect(pingOk(ns.c1, C2, 1)).toBe(false);
  });

  it("rejects bad input before touching anything, naming the network", async () => {
    const before = ipt("filter").concat(ipt("nat"));
    await expect(gw.ensureNetwork({ ...spec1(), slot: 0 })).rejects.toThrow(/10\.10\.0\.0\/24: slot 0 does not fit/);
    await expect(gw.ensureNetwork({ ...spec1(), slot: 254 })).rejects.toThrow(/slot 254 does not fit gateway subnet 100\.72\.0\.0\/24 \(1–253\)/);
    await expect(gw.ensureNetwork({ ...spec1(), slot: 1.5 })).rejects.toThrow(/slot 1\.5/);
    await expect(gw.ensureNetwork({ ...spec1(), subnet: "10.10.0.0/24 -j ACCEPT" })).rejects.toThrow(/invalid network subnet/);
    await expect(gw.ensureNetwork({ ...spec1(), subnet: "10.300.0.0/24" })).rejects.toThrow(/invalid network subnet/);
    await expect(gw.ensureNetwork({ ...spec1(), subnet: "0.0.0.0/0" })).rejects.toThrow(/invalid network subnet/);
    await expect(gw.ensureNetwork({ ...spec1(), subnet: "100.72.0.0/16" })).rejects.toThrow(/overlaps the gateway subnet/);
    await expect(gw.ensureNetwork({ ...spec1(), nsPath: path.join(tmp, "nope") })).rejects.toThrow(/10\.10\.0\.0\/24: .* is not a network namespace/);
    await expect(gw.ensureNetwork({ subnet: "10.30.0.0/24", nsPath: ns.net2, slot: 1 })).rejects.toThrow(
      /10\.30\.0\.0\/24: slot 1 is already used by network 10\.10\.0\.0\/24/,
    );
    expect(() => new EgressGateway({ bridgeName: "-j ACCEPT", log })).toThrow(EgressError);
    expect(() => new EgressGateway({ bridgeName: "tsog7", log })).toThrow(/invalid bridge name/);
    expect(() => new EgressGateway({ subnet: "100.72.0.0/31", log })).toThrow(/invalid gateway subnet/);
    expect(new EgressGateway({ subnet: "100.72.1.9/24", log }).bridgeIp).toBe("100.72.1.1");
    expect(ipt("filter").concat(ipt("nat"))).toEqual(before);
  });

  it("iptables failures name the rule and the network", async () => {
    const broken = newGateway({ iptables: "/nonexistent/iptables" });
    const err = await broken.ensureNetwork(spec1()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EgressError);
    expect((err as EgressError).network).toBe(NET1);
    expect((err as EgressError).rule).toBe(`iptables -t filter -S ${FWD_CHAIN}`);
    expect((err as Error).message).toMatch(/^egress 10\.10\.0\.0\/24: iptables -t filter -S TSOVERLAY-FWD failed/);
    await broken.close();
  });

  it("a network given another slot moves its leg and route (also after a restart)", async () => {
    await gw.ensureNetwork({ ...spec2(), slot: 5 });
    expect(ipLink(ns.host, "tsog2")).toBeUndefined();
    expect(ipLink(ns.host, "tsog5")).toMatchObject({ master: "tsogw0" });
    expect(addrs(ns.net2, "gw0")).toEqual(["100.72.0.6/24"]);
    expect(routes(ns.host)).toContain(`${NET2} via 100.72.0.6 dev tsogw0`);
    expect(fetchFrom(ns.c2)).toBe(HOST_IP);

    // A fresh instance knows nothing of slot 5: the stale pair is found from the kernel.
    await gw.close();
    gw = newGateway();
    await gw.ensureNetwork(spec1());
    await gw.ensureNetwork(spec2());
    expect(ipLink(ns.host, "tsog5")).toBeUndefined();
    expect(addrs(ns.net2, "gw0")).toEqual(["100.72.0.3/24"]);
    expect(routes(ns.host).filter((r) => r.startsWith(NET2))).toEqual([`${NET2} via 100.72.0.3 dev tsogw0`]);
    expect(ipt("nat", NAT_CHAIN).filter((r) => r === masq(NET2))).toHaveLength(1);
    expect(fetchFrom(ns.c2)).toBe(HOST_IP);
    expect(pingOk(ns.c1, C2, 1)).toBe(false);
  });

  it("removeNetwork of one network keeps the other working", async () => {
    await gw.removeNetwork({ subnet: NET2, slot: 2 });
    expect(ipLink(ns.host, "tsog2")).toBeUndefined();
    expect(ipLink(ns.net2, "gw0")).toBeUndefined();
    expect(routes(ns.host).some((r) => r.startsWith(NET2))).toBe(false);
    expect(ipt("nat", NAT_CHAIN)).toEqual([`-N ${NAT_CHAIN}`, masq(NET1)]);
    expect(ipt("filter", FWD_CHAIN)).toEqual(FWD_RULES);
    expect(fetchFails(ns.c2)).toBe(true);
    // The bridge keeps its fixed MAC when a leg goes (net1's ARP cache stays right).
    expect(ipLinks(ns.host).find((l) => l.ifname === "tsogw0")?.address).toBe(BRIDGE_MAC);
    expect(fetchFrom(ns.c1)).toBe(HOST_IP);
    await gw.removeNetwork({ subnet: NET2, slot: 2 }); // absent is fine
    expect(fetchFrom(ns.c1)).toBe(HOST_IP);
  });

  it("removing the last network removes chains, jumps and bridge; so does a fresh instance after a restart", async () => {
    await gw.removeNetwork({ subnet: NET1, slot: 1 });
    const gone = (): void => {
      expect(ipLink(ns.host, "tsogw0")).toBeUndefined();
      expect(
        ipLinks(ns.host)
          .map((l) => l.ifname)
          .sort(),
      ).toEqual(["lo", "up0"]);
      expect(ipLink(ns.net1, "gw0")).toBeUndefined();
      expect(ipt("filter").join("\n")).not.toContain("TSOVERLAY");
      expect(ipt("nat").join("\n")).not.toContain("TSOVERLAY");
      expect(routes(ns.host).filter((r) => r.startsWith("10."))).toEqual([]);
    };
    gone();
    expect(fetchFails(ns.c1)).toBe(true);
    await gw.removeNetwork({ subnet: NET1, slot: 1 }); // nothing left at all: fine

    // Set up again, "restart", and let a fresh instance, which knows nothing
    // in memory, remove both networks: it finds routes, legs and chains in the kernel.
    await gw.ensureNetwork(spec1());
    await gw.ensureNetwork(spec2());
    expect(fetchFrom(ns.c2)).toBe(HOST_IP);
    await gw.close();
    gw = newGateway();
    await gw.removeNetwork({ subnet: NET1, slot: 1 });
    expect(ipLink(ns.net1, "gw0")).toBeUndefined();
    expect(ipLink(ns.host, "tsogw0")).toBeDefined(); // net2 still uses it
    expect(fetchFrom(ns.c2)).toBe(HOST_IP);
    await gw.removeNetwork({ subnet: NET2, slot: 2 });
    gone();
    expect(ipLink(ns.net2, "gw0")).toBeUndefined();
    await gw.removeNetwork({ subnet: NET2, slot: 2 }); // twice is fine
  });

  it("a host-only uplink (an --internal network with the name service): the bridge's address and nothing else, no NAT; the bridge outlives the last network when kept", async () => {
    await gw.close();
    gw = new EgressGateway({ hostNetnsPath: ns.host, log, keepBridge: true });
    gateways.push(gw);
    await gw.ensureBridge();
    expect(addrs(ns.host, "tsogw0")).toEqual(["100.72.0.1/24"]);
    await gw.ensureNetwork({ ...spec1(), hostOnly: true });
    expect(routes(ns.net1).filter((r) => r.startsWith("default"))).toEqual([]);
    expect(ipt("nat", NAT_CHAIN)).toEqual([`-N ${NAT_CHAIN}`]);
    // The container reaches the bridge's address (the name service), and nothing beyond it.
    inNs(ns.c1, "ip", "route", "replace", "100.72.0.1/32", "via", "10.10.0.1");
    expect(pingOk(ns.c1, "100.72.0.1")).toBe(true);
    expect(fetchFails(ns.c1)).toBe(true);
    // The same network with a way out again: default route and NAT come back.
    await gw.ensureNetwork(spec1());
    expect(routes(ns.net1).filter((r) => r.startsWith("default"))).toEqual(["default via 100.72.0.1 dev gw0"]);
    expect(ipt("nat", NAT_CHAIN)).toEqual([`-N ${NAT_CHAIN}`, masq(NET1)]);
    await gw.ensureNetwork({ ...spec1(), hostOnly: true });
    expect(routes(ns.net1).filter((r) => r.startsWith("default"))).toEqual([]);
    await gw.removeNetwork({ subnet: NET1, slot: 1 });
    expect(ipt("filter").join("\n")).not.toContain("TSOVERLAY");
    expect(addrs(ns.host, "tsogw0")).toEqual(["100.72.0.1/24"]);
  });
});
