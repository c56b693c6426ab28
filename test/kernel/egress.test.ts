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
 * `ip`, `iptables`, `ping` and `curl` run through nsenter to verify. The
 * chains are set up and repaired by a RuleKeeper, as in the plugin; what each
 * step costs in iptables processes is read from the owner's counter.
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
import { Iptables } from "../../driver/kernel/iptables.js";
import { RuleKeeper } from "../../driver/kernel/rule-keeper.js";
import { eventually } from "../support/eventually.js";
import { createVethPair, ensureAddress, ensureBridge, setMaster, setUp } from "../../driver/kernel/links.js";
import { deleteNamedNetns, openNetnsFd, readSysctlIn } from "../../driver/kernel/netns.js";
import { createLogger } from "../../lib/log.js";
import { Scratch, inNs, ipLink, ipLinks, pingOk as pingOkIn, selfNetnsIno } from "./support/scratch.js";
import { costOf as costOfRuns, NONE, ONE_RESTORE, type Runs } from "./support/iptables-runs.js";

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
let iptables: Iptables;
let keeper: RuleKeeper;

/** A plugin (re)start: a fresh gateway over the owner, its chains taken over and set up by a keeper. */
async function newGateway(extra: { iptables?: Iptables; keepBridge?: boolean } = {}): Promise<EgressGateway> {
  const g = new EgressGateway({ hostNetnsPath: ns.host, log, iptables, ...extra });
  gateways.push(g);
  await keeper?.stop();
  keeper = new RuleKeeper({ iptables: extra.iptables ?? iptables, parts: [g.rules], log });
  await keeper.start();
  return g;
}

const costOf = (work: () => Promise<unknown>): Promise<Runs> => costOfRuns(iptables, work);

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

  iptables = new Iptables({ netnsPath: ns.host });
  gw = await newGateway();
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
  await keeper?.stop();
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

  it("the chains come first, once; a network's NAT with its creation; ensureNetwork (a first endpoint) runs no iptables at all", async () => {
    // Set up by the keeper at start: both chains and their jumps, one save and one restore (see beforeAll).
    expect(ipt("filter", FWD_CHAIN)).toEqual(FWD_RULES);
    expect(ipt("nat", NAT_CHAIN)).toEqual([`-N ${NAT_CHAIN}`]);
    expect(await costOf(() => keeper.pass())).toEqual({ ...NONE, "iptables-save": 1 });
    // A network created here: its MASQUERADE rule, one process; again, none.
    expect(await costOf(() => gw.setNat(NET1, true))).toEqual(ONE_RESTORE);
    expect(await costOf(() => gw.setNat(NET1, true))).toEqual(NONE);
    expect(await costOf(() => gw.setNat(NET2, true))).toEqual(ONE_RESTORE);
    for (let i = 0; i < 2; i++) {
      expect(await costOf(() => gw.ensureNetwork(spec1()))).toEqual(NONE);
      expect(await costOf(() => gw.ensureNetwork(spec2()))).toEqual(NONE);
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

    // The keeper's start puts the chain's rules and the jump back, and keeps NET2's NAT; the restore asks for NET1's again.
    gw = await newGateway();
    expect(ipt("filter", FWD_CHAIN)).toEqual(FWD_RULES); // DROP back in first place
    expect(ipt("nat", NAT_CHAIN)).toEqual([`-N ${NAT_CHAIN}`, masq(NET2)]);
    expect(await costOf(() => gw.setNat(NET2, true))).toEqual(NONE);
    expect(await costOf(() => gw.setNat(NET1, true))).toEqual(ONE_RESTORE);
    await gw.ensureNetwork(spec1());
    await gw.ensureNetwork(spec2());
    await gw.ensureNetwork(spec1());
    expect(ipLink(ns.host, "tsog1")?.ifindex).toBe(legIndex); // not recreated
    expect(ipLink(ns.host, "tsog1")?.linkinfo?.info_slave_data?.isolated).toBe(true);
    expect(ipt("nat", NAT_CHAIN).sort()).toEqual([`-N ${NAT_CHAIN}`, masq(NET2), masq(NET1)].sort());
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
    await expect(gw.setNat("10.10.0.0/24 -j ACCEPT", true)).rejects.toThrow(/invalid network subnet/);
    await expect(gw.setNat("100.72.0.0/16", true)).rejects.toThrow(/overlaps the gateway subnet/);
    expect(() => new EgressGateway({ bridgeName: "-j ACCEPT", log, iptables })).toThrow(EgressError);
    expect(() => new EgressGateway({ bridgeName: "tsog7", log, iptables })).toThrow(/invalid bridge name/);
    expect(() => new EgressGateway({ subnet: "100.72.0.0/31", log, iptables })).toThrow(/invalid gateway subnet/);
    expect(new EgressGateway({ subnet: "100.72.1.9/24", log, iptables }).bridgeIp).toBe("100.72.1.1");
    expect(ipt("filter").concat(ipt("nat"))).toEqual(before);
  });

  it("iptables failures name the rule and the network", async () => {
    const broken = new EgressGateway({ hostNetnsPath: ns.host, log, iptables: new Iptables({ bin: "/nonexistent/iptables", netnsPath: ns.host }) });
    const err = await broken.setNat(NET1, true).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EgressError);
    expect((err as EgressError).network).toBe(NET1);
    expect((err as EgressError).rule).toBe("iptables-restore");
    expect((err as Error).message).toMatch(/^egress 10\.10\.0\.0\/24: iptables-restore failed/);
    // Written from what is wanted: a rule of the network, once it goes through, is there once.
    const again = await broken.ensureNetwork(spec1()).catch((e: unknown) => e);
    expect((again as EgressError).rule).toBe("iptables-restore");
    await broken.close();
    expect(ipt("nat", NAT_CHAIN).filter((r) => r === masq(NET1))).toHaveLength(1);
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
    gw = await newGateway();
    await gw.ensureNetwork(spec1());
    await gw.ensureNetwork(spec2());
    expect(ipLink(ns.host, "tsog5")).toBeUndefined();
    expect(addrs(ns.net2, "gw0")).toEqual(["100.72.0.3/24"]);
    expect(routes(ns.host).filter((r) => r.startsWith(NET2))).toEqual([`${NET2} via 100.72.0.3 dev tsogw0`]);
    expect(ipt("nat", NAT_CHAIN).filter((r) => r === masq(NET2))).toHaveLength(1);
    expect(fetchFrom(ns.c2)).toBe(HOST_IP);
    expect(pingOk(ns.c1, C2, 1)).toBe(false);
  });

  it("removeNetwork of one network keeps the other working; its NAT goes with the network, not with its last endpoint", async () => {
    expect(await costOf(() => gw.removeNetwork({ subnet: NET2, slot: 2 }))).toEqual(NONE);
    expect(ipLink(ns.host, "tsog2")).toBeUndefined();
    expect(ipLink(ns.net2, "gw0")).toBeUndefined();
    expect(routes(ns.host).some((r) => r.startsWith(NET2))).toBe(false);
    expect(ipt("nat", NAT_CHAIN).sort()).toEqual([`-N ${NAT_CHAIN}`, masq(NET1), masq(NET2)].sort());
    expect(await costOf(() => gw.setNat(NET2, false))).toEqual(ONE_RESTORE);
    expect(ipt("nat", NAT_CHAIN)).toEqual([`-N ${NAT_CHAIN}`, masq(NET1)]);
    expect(ipt("filter", FWD_CHAIN)).toEqual(FWD_RULES);
    expect(fetchFails(ns.c2)).toBe(true);
    // The bridge keeps its fixed MAC when a leg goes (net1's ARP cache stays right).
    expect(ipLinks(ns.host).find((l) => l.ifname === "tsogw0")?.address).toBe(BRIDGE_MAC);
    expect(fetchFrom(ns.c1)).toBe(HOST_IP);
    await gw.removeNetwork({ subnet: NET2, slot: 2 }); // absent is fine
    expect(fetchFrom(ns.c1)).toBe(HOST_IP);
  });

  it("removing the last network removes legs, routes and the bridge (the chains stay, kept); so does a fresh instance after a restart", async () => {
    await gw.removeNetwork({ subnet: NET1, slot: 1 });
    await gw.setNat(NET1, false);
    const gone = (): void => {
      expect(ipLink(ns.host, "tsogw0")).toBeUndefined();
      expect(
        ipLinks(ns.host)
          .map((l) => l.ifname)
          .sort(),
      ).toEqual(["lo", "up0"]);
      expect(ipLink(ns.net1, "gw0")).toBeUndefined();
      expect(ipt("filter", FWD_CHAIN)).toEqual(FWD_RULES);
      expect(ipt("nat", NAT_CHAIN)).toEqual([`-N ${NAT_CHAIN}`]);
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
    gw = await newGateway();
    await gw.removeNetwork({ subnet: NET1, slot: 1 });
    expect(ipLink(ns.net1, "gw0")).toBeUndefined();
    expect(ipLink(ns.host, "tsogw0")).toBeDefined(); // net2 still uses it
    expect(fetchFrom(ns.c2)).toBe(HOST_IP);
    await gw.removeNetwork({ subnet: NET2, slot: 2 });
    await gw.setNat(NET1, false);
    await gw.setNat(NET2, false);
    gone();
    expect(ipLink(ns.net2, "gw0")).toBeUndefined();
    await gw.removeNetwork({ subnet: NET2, slot: 2 }); // twice is fine
  });

  it("a host-only uplink (an --internal network with the name service): the bridge's address and nothing else, no NAT; the bridge outlives the last network when kept", async () => {
    await gw.close();
    gw = await newGateway({ keepBridge: true });
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
    await gw.setNat(NET1, false);
    expect(ipt("nat", NAT_CHAIN)).toEqual([`-N ${NAT_CHAIN}`]);
    expect(addrs(ns.host, "tsogw0")).toEqual(["100.72.0.1/24"]);
  });

  it("rules flushed or deleted by hand come back through the periodic repair, without the plugin being asked", async () => {
    await gw.setNat(NET1, true);
    await gw.ensureNetwork(spec1());
    expect(fetchFrom(ns.c1)).toBe(HOST_IP);
    keeper.run(100);
    try {
      inNs(ns.host, "iptables", "-w", "5", "-F", FWD_CHAIN);
      inNs(ns.host, "iptables", "-w", "5", "-t", "nat", "-F", NAT_CHAIN);
      inNs(ns.host, "iptables", "-w", "5", "-D", "FORWARD", "-j", FWD_CHAIN);
      await eventually(
        "the keeper to put the chains' rules and the jump back",
        () =>
          JSON.stringify(ipt("filter", FWD_CHAIN)) === JSON.stringify(FWD_RULES) &&
          JSON.stringify(ipt("nat", NAT_CHAIN)) === JSON.stringify([`-N ${NAT_CHAIN}`, masq(NET1)]) &&
          ipt("filter", "FORWARD")[1] === `-A FORWARD -j ${FWD_CHAIN}`,
        { everyMs: 50 },
      );
      expect(fetchFrom(ns.c1)).toBe(HOST_IP);
    } finally {
      await keeper.stop();
    }
    await gw.removeNetwork({ subnet: NET1, slot: 1 });
    await gw.setNat(NET1, false);
  });
});
