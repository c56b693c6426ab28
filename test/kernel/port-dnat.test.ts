/**
 * The DNAT fast path of the hybrid proxy mode (port-rules.ts over
 * port-dnat.ts), the chains of our own (chain.ts), their keeper
 * (rule-keeper.ts) and the iptables owner under them (iptables.ts), on a
 * simulated host (root, no lab). What each step costs in iptables processes
 * is read from the owner's counter. Namespaces, all `tsk-*` under
 * a temp dir:
 *   tsk-host    plays the host: cl0 198.51.100.1/24 + .3/24 towards the client,
 *               ct0 10.10.0.1/24 towards the container, ip_forward=1; the
 *               nat rules go here. A "proxy stand-in" server listens on
 *               tcp/udp 8080/5353 and answers "host <client address>": what
 *               is not DNATed ends up there, as it would at the userland proxy.
 *   tsk-client  eth0 198.51.100.2/24 (no route to the container subnet)
 *   tsk-ctr     eth0 10.10.0.5/24, default via 10.10.0.1; a server on tcp/80
 *               and udp/5300 answering "ctr <client address>"
 * `iptables`, `ip` and `curl` run through nsenter to verify.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DNAT_CHAIN } from "../../driver/kernel/port-dnat.js";
import type { DnatRule } from "../../driver/contracts/port-rules.js";
import { Iptables, IptablesError } from "../../driver/kernel/iptables.js";
import { OwnedChain, commit } from "../../driver/kernel/chain.js";
import { GATEWAY_INPUT_CHAIN } from "../../driver/kernel/gateway-input.js";
import { KernelPortRules } from "../../driver/kernel/port-rules.js";
import { RuleKeeper } from "../../driver/kernel/rule-keeper.js";
import { eventually } from "../support/eventually.js";
import { createVethPair, ensureAddress, setUp } from "../../driver/kernel/links.js";
import { openNetnsFd, writeSysctlIn } from "../../driver/kernel/netns.js";
import { createLogger } from "../../lib/log.js";
import { Scratch, inNs, selfNetnsIno } from "./support/scratch.js";
import { costOf as costOfRuns, NONE, ONE_RESTORE, type Runs } from "./support/iptables-runs.js";

const log = createLogger(process.env.TSOVERLAY_LOG_LEVEL ?? "silent");

const HOST_IP = "198.51.100.1";
const HOST_IP2 = "198.51.100.3";
const CLIENT_IP = "198.51.100.2";
const CTR_IP = "10.10.0.5";
const BRIDGE = "tsogw0"; // the default gateway bridge name; no such link here

/** Neutral rules that were there before us: our jumps must go in front of them. */
const FOREIGN = ["-s", "192.0.2.99/32", "-j", "RETURN"];

const scratch = new Scratch("tsk-dnat-");
let tmp: string;
let homeIno: number;
let rootRulesBefore: string;
let natBefore: string[];
let ns: { host: string; client: string; ctr: string };
const servers: ChildProcess[] = [];

const tcpRule = (hostPort: number, containerPort: number, hostIp = ""): DnatRule => ({ proto: "tcp", hostIp, hostPort, containerIp: CTR_IP, containerPort });
const udpRule = (hostPort: number, containerPort: number, hostIp = ""): DnatRule => ({ proto: "udp", hostIp, hostPort, containerIp: CTR_IP, containerPort });

/** The four shapes a rule can take, with how `iptables -S` prints each (written out, not derived). */
const SHAPES: [DnatRule, string][] = [
  [tcpRule(8080, 80), `-A ${DNAT_CHAIN} ! -i ${BRIDGE} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.10.0.5:80`],
  [udpRule(5353, 5300), `-A ${DNAT_CHAIN} ! -i ${BRIDGE} -p udp -m udp --dport 5353 -j DNAT --to-destination 10.10.0.5:5300`],
  [tcpRule(8081, 81, HOST_IP), `-A ${DNAT_CHAIN} -d 198.51.100.1/32 ! -i ${BRIDGE} -p tcp -m tcp --dport 8081 -j DNAT --to-destination 10.10.0.5:81`],
  [udpRule(5354, 5301, HOST_IP), `-A ${DNAT_CHAIN} -d 198.51.100.1/32 ! -i ${BRIDGE} -p udp -m udp --dport 5354 -j DNAT --to-destination 10.10.0.5:5301`],
];
const PREROUTING_JUMP = `-A PREROUTING -m addrtype --dst-type LOCAL -j ${DNAT_CHAIN}`;
const OUTPUT_JUMP = `-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j ${DNAT_CHAIN}`;

/** Every iptables rule of the root namespace (must stay untouched). */
const rootRules = (): string =>
  ["filter", "nat", "mangle", "raw"].map((t) => execFileSync("iptables", ["-w", "5", "-t", t, "-S"], { encoding: "utf8" })).join("\n");

/** `iptables -t nat -S [chain]` in the host namespace, as lines. */
const nat = (...chain: string[]): string[] =>
  inNs(ns.host, "iptables", "-w", "5", "-t", "nat", "-S", ...chain)
    .trim()
    .split("\n");
const chainExists = (): boolean => {
  try {
    nat(DNAT_CHAIN);
    return true;
  } catch {
    return false;
  }
};
/** Our chain's rules with their packet counters (`-S -v` prints `-c <pkts> <bytes>`). */
function counted(): { rule: string; pkts: number }[] {
  return inNs(ns.host, "iptables", "-w", "5", "-t", "nat", "-S", DNAT_CHAIN, "-v")
    .trim()
    .split("\n")
    .filter((l) => l.startsWith("-A "))
    .map((l) => {
      const m = / -c (\d+) \d+/.exec(l);
      return { rule: l.replace(/ -c \d+ \d+/, ""), pkts: m ? Number(m[1]) : NaN };
    });
}

/** The host's iptables owner (one per test file, as one per plugin). */
let ipt: Iptables;

/** A plugin (re)start: fresh port rules over the owner, what the kernel holds taken over and set up by a keeper. */
async function startRules(
  o: { gatewayBridge?: string; fastPath?: boolean; iptables?: Iptables } = {},
): Promise<{ rules: KernelPortRules; keeper: RuleKeeper }> {
  const iptables = o.iptables ?? ipt;
  const rules = new KernelPortRules({ iptables, gatewayBridge: o.gatewayBridge ?? BRIDGE, fastPath: o.fastPath ?? true, netnsPath: ns.host, log });
  const keeper = new RuleKeeper({ iptables, parts: [rules], log });
  await keeper.start();
  return { rules, keeper };
}

/** The DNAT rules wanted now (no published port reachable from containers: the gate's half is not under test here). */
const want = (rules: KernelPortRules, dnat: DnatRule[], keepLeftovers = false): Promise<void> => rules.sync(() => ({ dnat, gate: [] }), { keepLeftovers });

/** iptables processes run by `work`, by command (by the file's owner unless told). */
const costOf = (work: () => Promise<unknown>, owner = ipt): Promise<Runs> => costOfRuns(owner, work);

/** Removes whatever a test left behind (our nat chain, the gate's filter chain), without the code under test. */
function cleanChains(): void {
  const tryIpt = (table: string, ...args: string[]): boolean => {
    try {
      inNs(ns.host, "iptables", "-w", "5", "-t", table, ...args);
      return true;
    } catch {
      return false;
    }
  };
  // Every jump to the chains, whatever its shape.
  for (const [table, parent, chain] of [
    ["nat", "PREROUTING", DNAT_CHAIN],
    ["nat", "OUTPUT", DNAT_CHAIN],
    ["filter", "INPUT", GATEWAY_INPUT_CHAIN],
  ] as const) {
    const lines = inNs(ns.host, "iptables", "-w", "5", "-t", table, "-S", parent).trim().split("\n");
    for (const line of lines.filter((l) => l.endsWith(`-j ${chain}`))) tryIpt(table, "-D", parent, ...line.split(" ").slice(2));
  }
  for (const [table, chain] of [
    ["nat", DNAT_CHAIN],
    ["filter", GATEWAY_INPUT_CHAIN],
  ] as const) {
    tryIpt(table, "-F", chain);
    tryIpt(table, "-X", chain);
  }
}

// ------------------------------------------------------------------ traffic

/** GET http://ip:port/ from a namespace: the answering server and the client address it saw. */
function httpFrom(from: string, ip: string, port: number, attempts = 3): string {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return inNs(from, "curl", "-sS", "--max-time", "3", `http://${ip}:${port}/`).trim();
    } catch (err) {
      last = err;
    }
  }
  throw last;
}

const UDP_CLIENT =
  `const [h, p] = process.argv.slice(1); const d = require("dgram").createSocket("udp4");` +
  `const t = setTimeout(() => { console.error("no reply"); process.exit(1); }, 2000);` +
  `d.on("message", (m) => { clearTimeout(t); process.stdout.write(m); d.close(); });` +
  `d.send("hello", Number(p), h);`;

/** One UDP datagram to ip:port from a namespace: the reply (who answered, and whom it saw). */
function udpFrom(from: string, ip: string, port: number, attempts = 3): string {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return inNs(from, process.execPath, "-e", UDP_CLIENT, ip, String(port)).trim();
    } catch (err) {
      last = err;
    }
  }
  throw last;
}

const SERVER =
  `const [label, tcpPort, udpPort] = process.argv.slice(1); let up = 0;` +
  `const ready = () => { if (++up === 2) console.log("listening"); };` +
  `require("http").createServer((q, s) => s.end(label + " " + q.socket.remoteAddress.replace(/^::ffff:/, "") + "\\n"))` +
  `.listen(Number(tcpPort), "0.0.0.0", ready);` +
  `const u = require("dgram").createSocket("udp4");` +
  `u.on("message", (m, r) => u.send(label + " " + r.address + "\\n", r.port, r.address));` +
  `u.bind(Number(udpPort), "0.0.0.0", ready);`;

async function startServer(where: string, label: string, tcpPort: number, udpPort: number): Promise<void> {
  const child = spawn("nsenter", [`--net=${where}`, process.execPath, "-e", SERVER, label, String(tcpPort), String(udpPort)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  servers.push(child);
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${label} server did not start`)), 10_000);
    child.stdout.on("data", (d: Buffer) => {
      if (d.toString().includes("listening")) {
        clearTimeout(t);
        resolve();
      }
    });
    child.on("exit", (code) => {
      clearTimeout(t);
      reject(new Error(`${label} server exited with ${code}`));
    });
  });
}

async function veth(hostEnd: string, peerNs: string, hostCidrs: string[], peerCidr: string): Promise<void> {
  const hl = scratch.socketIn(ns.host);
  const pl = scratch.socketIn(peerNs);
  const fd = openNetnsFd(peerNs);
  try {
    await createVethPair(hl, hostEnd, "eth0", undefined, fd);
  } finally {
    fs.closeSync(fd);
  }
  for (const c of hostCidrs) await ensureAddress(hl, hostEnd, c);
  await ensureAddress(pl, "eth0", peerCidr);
  await setUp(hl, hostEnd);
  await setUp(hl, "lo");
  await setUp(pl, "eth0");
  await setUp(pl, "lo");
}

beforeAll(async () => {
  expect(process.getuid?.()).toBe(0);
  rootRulesBefore = rootRules();
  tmp = scratch.init();
  homeIno = selfNetnsIno();
  ns = { host: scratch.newNs("host"), client: scratch.newNs("client"), ctr: scratch.newNs("ctr") };

  await veth("cl0", ns.client, [`${HOST_IP}/24`, `${HOST_IP2}/24`], `${CLIENT_IP}/24`);
  await veth("ct0", ns.ctr, ["10.10.0.1/24"], `${CTR_IP}/24`);
  inNs(ns.ctr, "ip", "route", "add", "default", "via", "10.10.0.1");
  writeSysctlIn(ns.host, "net/ipv4/ip_forward", "1");

  inNs(ns.host, "iptables", "-w", "5", "-t", "nat", "-A", "PREROUTING", ...FOREIGN);
  inNs(ns.host, "iptables", "-w", "5", "-t", "nat", "-A", "OUTPUT", ...FOREIGN);
  natBefore = nat();
  ipt = new Iptables({ netnsPath: ns.host });

  await startServer(ns.host, "host", 8080, 5353);
  await startServer(ns.ctr, "ctr", 80, 5300);
  // Without DNAT everything lands on the host's own sockets (the proxy's).
  expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`host ${CLIENT_IP}`);
  expect(udpFrom(ns.client, HOST_IP, 5353)).toBe(`host ${CLIENT_IP}`);
  // And the container is reachable from the host by routing alone.
  expect(httpFrom(ns.host, CTR_IP, 80)).toBe("ctr 10.10.0.1");
});

afterEach(() => {
  expect(selfNetnsIno()).toBe(homeIno);
  cleanChains();
});

afterAll(async () => {
  for (const s of servers.splice(0)) {
    if (s.exitCode !== null || s.signalCode !== null) continue;
    const exited = new Promise((r) => s.once("exit", r));
    s.kill("SIGTERM");
    await exited;
  }
  scratch.closeSockets();
  scratch.deleteNamespaces();
  const mounts = fs.readFileSync("/proc/self/mountinfo", "utf8");
  if (tmp !== undefined) expect(mounts).not.toContain(tmp);
  scratch.removeDir();
  expect(rootRules()).toBe(rootRulesBefore);
});

describe("DNAT rules", () => {
  beforeEach(() => {
    expect(nat()).toEqual(natBefore);
  });

  it("the keeper sets up the chain and its two jumps first; one sync writes every rule as `iptables -S` prints it, in one process", async () => {
    const { rules } = await startRules();
    expect(nat(DNAT_CHAIN)).toEqual([`-N ${DNAT_CHAIN}`]);
    expect(nat("PREROUTING")).toEqual(["-P PREROUTING ACCEPT", PREROUTING_JUMP, `-A PREROUTING ${FOREIGN.join(" ")}`]);
    expect(nat("OUTPUT")).toEqual(["-P OUTPUT ACCEPT", OUTPUT_JUMP, `-A OUTPUT ${FOREIGN.join(" ")}`]);
    expect(
      await costOf(() =>
        want(
          rules,
          SHAPES.map(([r]) => r),
        ),
      ),
    ).toEqual(ONE_RESTORE);
    expect(nat(DNAT_CHAIN)).toEqual([`-N ${DNAT_CHAIN}`, ...SHAPES.map(([, line]) => line)]);
  });

  it("wanting what is there runs no process and adds nothing (again, concurrently, and after a restart)", async () => {
    const { rules } = await startRules();
    const all = SHAPES.map(([r]) => r);
    await want(rules, all);
    const once = nat();
    expect(await costOf(() => want(rules, all))).toEqual(NONE);
    expect(await costOf(() => Promise.all([want(rules, all), want(rules, [...all].reverse()), want(rules, all)]))).toEqual(NONE);
    // A restart: one iptables-save, nothing written; the restore's syncs write nothing either.
    const restarted = await costOf(async () => {
      const again = await startRules();
      await want(again.rules, all, true);
      await want(again.rules, all);
    });
    expect(restarted).toEqual({ ...NONE, "iptables-save": 1 });
    expect(nat()).toEqual(once);
    expect(nat(DNAT_CHAIN)).toHaveLength(1 + SHAPES.length);
    expect(nat().filter((l) => l.endsWith(`-j ${DNAT_CHAIN}`))).toEqual([PREROUTING_JUMP, OUTPUT_JUMP]);
  });

  it("a sync takes out just what is no longer wanted; with no rule left, the chain and its jumps stay (hybrid mode keeps them)", async () => {
    const { rules } = await startRules();
    await want(
      rules,
      SHAPES.map(([r]) => r),
    );
    for (let i = 1; i <= SHAPES.length; i++) {
      expect(
        await costOf(() =>
          want(
            rules,
            SHAPES.slice(i).map(([r]) => r),
          ),
        ),
      ).toEqual(ONE_RESTORE);
      expect(nat(DNAT_CHAIN)).toEqual([`-N ${DNAT_CHAIN}`, ...SHAPES.slice(i).map(([, line]) => line)]);
    }
    expect(nat().filter((l) => l.endsWith(`-j ${DNAT_CHAIN}`))).toEqual([PREROUTING_JUMP, OUTPUT_JUMP]);
  });

  it("after a restart, what the previous run left keeps working, untouched, until the restore is over; then only what is published stays", async () => {
    const [c, a, b] = [tcpRule(8081, 81, HOST_IP), tcpRule(8080, 80), udpRule(5353, 5300)];
    const first = await startRules();
    await want(first.rules, [c, a, b]);
    // Traffic through `a` (one connection = one packet through the nat table) and `b`.
    expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`ctr ${CLIENT_IP}`);
    expect(udpFrom(ns.client, HOST_IP, 5353)).toBe(`ctr ${CLIENT_IP}`);
    const before = counted();
    expect(before.map((x) => x.rule)).toEqual([SHAPES[2]![1], SHAPES[0]![1], SHAPES[1]![1]]);
    expect(before[1]!.pkts).toBeGreaterThan(0);

    // A fresh instance (after a restart): while its endpoints are restored, in another order, nothing is written.
    const { rules } = await startRules();
    expect(await costOf(() => want(rules, [a], true))).toEqual(NONE);
    expect(await costOf(() => want(rules, [a, c], true))).toEqual(NONE);
    expect(udpFrom(ns.client, HOST_IP, 5353)).toBe(`ctr ${CLIENT_IP}`);
    // The restore is over: what nothing published goes, in one process; the rest keeps its counters (not deleted and re-added).
    expect(await costOf(() => want(rules, [a, c]))).toEqual(ONE_RESTORE);
    expect(counted()).toEqual(before.slice(0, 2));
    expect(nat().filter((l) => l.endsWith(`-j ${DNAT_CHAIN}`))).toEqual([PREROUTING_JUMP, OUTPUT_JUMP]);
    expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`ctr ${CLIENT_IP}`);
    expect(udpFrom(ns.client, HOST_IP, 5353)).toBe(`host ${CLIENT_IP}`);
  });

  it("a rule added to our chain by hand goes at start; a chain flushed or a jump deleted by hand comes back through the periodic repair", async () => {
    const first = await startRules();
    await want(first.rules, [tcpRule(8080, 80)]);
    inNs(ns.host, "iptables", "-w", "5", "-t", "nat", "-A", DNAT_CHAIN, "-p", "tcp", "-m", "comment", "--comment", "added by hand", "-j", "RETURN");
    const { rules, keeper } = await startRules();
    expect(nat(DNAT_CHAIN)).toEqual([`-N ${DNAT_CHAIN}`, SHAPES[0]![1]]);
    keeper.run(100);
    try {
      inNs(ns.host, "iptables", "-w", "5", "-t", "nat", "-F", DNAT_CHAIN);
      inNs(ns.host, "iptables", "-w", "5", "-t", "nat", "-D", "PREROUTING", ...PREROUTING_JUMP.split(" ").slice(2));
      expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`host ${CLIENT_IP}`);
      await eventually(
        "the keeper to put the rule and the jump back",
        () => nat(DNAT_CHAIN).join("\n") === [`-N ${DNAT_CHAIN}`, SHAPES[0]![1]].join("\n") && nat("PREROUTING")[1] === PREROUTING_JUMP,
        { everyMs: 50 },
      );
      expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`ctr ${CLIENT_IP}`);
      // And the plugin's own state followed: a change afterwards is a plain difference again.
      expect(await costOf(() => want(rules, [tcpRule(8080, 80)]))).toEqual(NONE);
    } finally {
      await keeper.stop();
    }
  });

  it("userland mode: a DNAT chain a hybrid run left keeps working while restoring, then goes with its jumps", async () => {
    const hybrid = await startRules();
    await want(hybrid.rules, [tcpRule(8080, 80)]);
    const { rules } = await startRules({ fastPath: false });
    expect(await costOf(() => want(rules, [], true))).toEqual(NONE);
    expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`ctr ${CLIENT_IP}`);
    expect(await costOf(() => want(rules, []))).toEqual(ONE_RESTORE);
    expect(chainExists()).toBe(false);
    expect(nat()).toEqual(natBefore);
    expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`host ${CLIENT_IP}`);
    // Again: nothing to do.
    expect(await costOf(() => want(rules, []))).toEqual(NONE);
  });
});

describe("DNAT with real traffic", () => {
  it("a client's TCP and UDP reach the container, which sees the client's own address; loopback stays local", async () => {
    const { rules } = await startRules();
    await want(rules, [tcpRule(8080, 80), udpRule(5353, 5300)]);
    expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`ctr ${CLIENT_IP}`);
    expect(httpFrom(ns.client, HOST_IP2, 8080)).toBe(`ctr ${CLIENT_IP}`); // no host IP: every local address
    expect(udpFrom(ns.client, HOST_IP, 5353)).toBe(`ctr ${CLIENT_IP}`);
    // From the host itself (OUTPUT): its own non-loopback address is DNATed, 127.0.0.1 is not.
    expect(httpFrom(ns.host, HOST_IP, 8080)).toBe(`ctr ${HOST_IP}`);
    expect(httpFrom(ns.host, "127.0.0.1", 8080)).toBe("host 127.0.0.1");

    await want(rules, [udpRule(5353, 5300)]);
    expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`host ${CLIENT_IP}`);
    expect(udpFrom(ns.client, HOST_IP, 5353)).toBe(`ctr ${CLIENT_IP}`);
    await want(rules, []);
    expect(udpFrom(ns.client, HOST_IP, 5353)).toBe(`host ${CLIENT_IP}`);
  });

  it("a rule with a host IP DNATs that address only", async () => {
    const { rules } = await startRules();
    await want(rules, [tcpRule(8080, 80, HOST_IP)]);
    expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`ctr ${CLIENT_IP}`);
    expect(httpFrom(ns.client, HOST_IP2, 8080)).toBe(`host ${CLIENT_IP}`);
  });

  it("a connection arriving from the gateway bridge is not DNATed (hairpin stays on the proxy)", async () => {
    // Here the client-side link plays the gateway bridge: its gate lets the published ports through to the proxy.
    const { rules } = await startRules({ gatewayBridge: "cl0" });
    const dnat = [tcpRule(8080, 80), udpRule(5353, 5300)];
    await rules.sync(() => ({ dnat, gate: dnat.map((r) => ({ proto: r.proto, hostIp: r.hostIp, hostPort: r.hostPort })) }));
    expect(nat(DNAT_CHAIN)).toContain(`-A ${DNAT_CHAIN} ! -i cl0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.10.0.5:80`);
    expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`host ${CLIENT_IP}`);
    expect(udpFrom(ns.client, HOST_IP, 5353)).toBe(`host ${CLIENT_IP}`);
    // The very same rule still DNATs what does not come in through cl0.
    expect(httpFrom(ns.host, HOST_IP, 8080)).toBe(`ctr ${HOST_IP}`);
  });
});

describe("chains of our own (chain.ts) and their keeper", () => {
  const filter = (...chain: string[]): string[] =>
    inNs(ns.host, "iptables", "-w", "5", "-t", "filter", "-S", ...chain)
      .trim()
      .split("\n");
  const newChain = (): OwnedChain =>
    new OwnedChain({
      table: "filter",
      name: "TSK-CHAIN",
      entries: [
        { chain: "FORWARD", match: [] },
        { chain: "INPUT", match: ["-i", "cl0"] },
      ],
      head: [["-s", "192.0.2.1/32", "-j", "DROP"]],
      tail: [["-j", "RETURN"]],
    });
  const FIXED = ["-N TSK-CHAIN", "-A TSK-CHAIN -s 192.0.2.1/32 -j DROP", "-A TSK-CHAIN -j RETURN"];
  const dropHand = (): void => {
    for (const [parent, rule] of [
      ["FORWARD", ["-j", "TSK-CHAIN"]],
      ["INPUT", ["-i", "cl0", "-j", "TSK-CHAIN"]],
    ] as const) {
      while (filter(parent).includes(`-A ${parent} ${rule.join(" ")}`)) inNs(ns.host, "iptables", "-w", "5", "-D", parent, ...rule);
    }
    for (const op of ["-F", "-X"]) {
      try {
        inNs(ns.host, "iptables", "-w", "5", op, "TSK-CHAIN");
      } catch {
        /* not there */
      }
    }
  };

  it("the keeper creates the chain, its fixed rules in order and the jumps first; changes go between head and tail; drift is rewritten", async () => {
    const before = filter();
    inNs(ns.host, "iptables", "-w", "5", "-A", "INPUT", ...FOREIGN);
    try {
      const chain = newChain();
      const keeper = new RuleKeeper({ iptables: ipt, parts: [{ chains: () => [chain] }], log });
      expect(await costOf(() => keeper.start())).toEqual({ ...NONE, "iptables-save": 1, "iptables-restore": 1 });
      expect(filter("TSK-CHAIN")).toEqual(FIXED);
      expect(filter("INPUT")).toEqual(["-P INPUT ACCEPT", "-A INPUT -i cl0 -j TSK-CHAIN", `-A INPUT ${FOREIGN.join(" ")}`]);
      expect(filter("FORWARD")).toEqual(["-P FORWARD ACCEPT", "-A FORWARD -j TSK-CHAIN"]);
      // Settled: a pass reads, writes nothing.
      expect(await costOf(async () => expect(await keeper.pass()).toEqual([]))).toEqual({ ...NONE, "iptables-save": 1 });

      // Two changing rules in one process, before the tail; one out, in one more; the same again, in none.
      const [x, y] = [
        ["-s", "192.0.2.7/32", "-j", "ACCEPT"],
        ["-s", "192.0.2.8/32", "-j", "ACCEPT"],
      ];
      chain.set([x, y]);
      expect(await costOf(() => ipt.exclusive((s) => commit(s, [chain])))).toEqual(ONE_RESTORE);
      expect(filter("TSK-CHAIN")).toEqual([FIXED[0], FIXED[1], `-A TSK-CHAIN ${y.join(" ")}`, `-A TSK-CHAIN ${x.join(" ")}`, FIXED[2]]);
      chain.set([y]);
      expect(await costOf(() => ipt.exclusive((s) => commit(s, [chain])))).toEqual(ONE_RESTORE);
      expect(await costOf(() => ipt.exclusive((s) => commit(s, [chain])))).toEqual(NONE);
      expect(filter("TSK-CHAIN")).toEqual([FIXED[0], FIXED[1], `-A TSK-CHAIN ${y.join(" ")}`, FIXED[2]]);

      // A fixed rule deleted by hand, a lost jump, a duplicate: one pass, one process, everything in place.
      inNs(ns.host, "iptables", "-w", "5", "-D", "TSK-CHAIN", "-s", "192.0.2.1/32", "-j", "DROP");
      inNs(ns.host, "iptables", "-w", "5", "-D", "INPUT", "-i", "cl0", "-j", "TSK-CHAIN");
      inNs(ns.host, "iptables", "-w", "5", "-I", "TSK-CHAIN", "1", ...y);
      expect(await keeper.pass()).toEqual(["TSK-CHAIN", "INPUT→TSK-CHAIN"]);
      expect(filter("TSK-CHAIN")).toEqual([FIXED[0], FIXED[1], `-A TSK-CHAIN ${y.join(" ")}`, FIXED[2]]);
      expect(filter("INPUT")[1]).toBe("-A INPUT -i cl0 -j TSK-CHAIN");

      // A write that fails (the chain deleted behind our back) leaves the state unknown: the next write is whole.
      dropHand();
      chain.set([x]);
      await expect(ipt.exclusive((s) => commit(s, [chain]))).rejects.toBeInstanceOf(IptablesError);
      expect(await costOf(() => ipt.exclusive((s) => commit(s, [chain])))).toEqual(ONE_RESTORE);
      expect(filter("TSK-CHAIN")).toEqual([FIXED[0], FIXED[1], `-A TSK-CHAIN ${x.join(" ")}`, FIXED[2]]);
    } finally {
      dropHand();
      inNs(ns.host, "iptables", "-w", "5", "-D", "INPUT", ...FOREIGN);
    }
    expect(filter()).toEqual(before);
  });
});

describe("Iptables, the owner", () => {
  it("a binary that cannot run fails with an IptablesError naming the rule, and nothing changes", async () => {
    const inHost = new Iptables({ bin: "/nonexistent/iptables", netnsPath: ns.host });
    const e1 = await inHost.listRules("nat", DNAT_CHAIN).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(IptablesError);
    expect((e1 as IptablesError).rule).toBe(`iptables -t nat -S ${DNAT_CHAIN}`);
    expect((e1 as Error).message).toMatch(new RegExp(`^iptables -t nat -S ${DNAT_CHAIN} failed`));

    // Without nsenter the binary itself does not start (ENOENT); nothing runs anywhere.
    const direct = new Iptables({ bin: "/nonexistent/iptables" });
    const e2 = await direct.exec("nat", ["-N", "TSK-NEVER"]).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(IptablesError);
    expect((e2 as IptablesError).rule).toBe("iptables -t nat -N TSK-NEVER");
    expect((e2 as Error).message).toMatch(/^iptables -t nat -N TSK-NEVER failed: .*ENOENT/);
    const e3 = await direct.save().catch((e: unknown) => e);
    expect((e3 as IptablesError).rule).toBe("iptables-save");
    expect((e3 as Error).message).toMatch(/^iptables-save failed: .*ENOENT/);

    // Through the port rules: the error surfaces and nothing was changed.
    const rules = new KernelPortRules({ iptables: inHost, gatewayBridge: BRIDGE, fastPath: true, log });
    const e4 = await want(rules, [tcpRule(8080, 80)]).catch((e: unknown) => e);
    expect(e4).toBeInstanceOf(IptablesError);
    expect((e4 as IptablesError).rule).toBe("iptables-restore");
    expect(nat()).toEqual(natBefore);

    expect(() => new Iptables({ bin: "-j" })).toThrow(IptablesError);
    expect(() => new Iptables({ bin: "" })).toThrow(IptablesError);
  });

  it("a failing call names the rule and iptables' complaint; a failing restore names the line, and changed nothing of its table", async () => {
    const err = await ipt.exec("nat", ["-X", "TSK-NO-SUCH"]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IptablesError);
    expect((err as IptablesError).rule).toBe("iptables -t nat -X TSK-NO-SUCH");
    expect((err as Error).message).toMatch(/^iptables -t nat -X TSK-NO-SUCH failed \(exit \d+\): \S/);
    expect(await ipt.exec("nat", ["-S", "TSK-NO-SUCH"], [0, 1])).toBe(1);
    expect(await ipt.listRules("nat", "TSK-NO-SUCH")).toBeUndefined();
    expect(await ipt.listRules("nat", "PREROUTING")).toEqual([`-A PREROUTING ${FOREIGN.join(" ")}`]);

    const missing = ["-D", "PREROUTING", "-s", "192.0.2.123/32", "-j", "RETURN"];
    const bad = await ipt.restore([{ table: "nat", declare: ["TSK-NEW"], lines: [["-A", "TSK-NEW", "-j", "RETURN"], missing] }]).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(IptablesError);
    expect((bad as IptablesError).rule).toBe(missing.join(" "));
    expect((bad as Error).message).toContain(`at ${JSON.stringify(missing.join(" "))}`);
    expect(nat()).toEqual(natBefore);
  });

  it("refuses an argument with a space or a `;` without running anything; counts every process it starts", async () => {
    const calls = path.join(tmp, "iptables-calls.log");
    const bin = path.join(tmp, "iptables-recorder");
    fs.writeFileSync(bin, `#!/bin/sh\necho "$*" >> ${calls}\nexec iptables "$@"\n`, { mode: 0o755 });
    const owner = new Iptables({ bin, netnsPath: ns.host });
    const ran = (): string[] => (fs.existsSync(calls) ? fs.readFileSync(calls, "utf8").trim().split("\n").filter(Boolean) : []);
    // The recorder does record what runs, and the owner counts it.
    expect(await owner.policy("nat", "PREROUTING")).toBe("ACCEPT");
    expect(ran()).toEqual(["-w 5 -t nat -S PREROUTING"]);
    expect(owner.runs()).toEqual({ ...NONE, iptables: 1 });
    fs.rmSync(calls);

    const refused = async (p: Promise<unknown>, rule: string, odd: string): Promise<void> => {
      const err = await p.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(IptablesError);
      expect((err as IptablesError).rule).toBe(rule);
      expect((err as Error).message).toContain(`refusing iptables argument ${JSON.stringify(odd)}`);
    };
    await refused(owner.exec("nat", ["-N", "TSK BAD"]), "iptables -t nat -N TSK BAD", "TSK BAD");
    await refused(owner.exec("nat", ["-N", "TSK;reboot"]), "iptables -t nat -N TSK;reboot", "TSK;reboot");
    await refused(owner.listRules("nat", "PRE ROUTING"), "iptables -t nat -S PRE ROUTING", "PRE ROUTING");
    await refused(
      owner.restore([{ table: "nat", lines: [["-A", "PREROUTING", "-j", "DNAT", "--to-destination", "10.0.0.1:80;", "x"]] }]),
      "-A PREROUTING -j DNAT --to-destination 10.0.0.1:80; x",
      "10.0.0.1:80;",
    );
    await refused(owner.restore([{ table: "nat", declare: ["TSK\nCOMMIT"], lines: [] }]), ":TSK\nCOMMIT", "TSK\nCOMMIT");
    const rules = new KernelPortRules({ iptables: owner, gatewayBridge: BRIDGE, fastPath: true, log });
    await expect(want(rules, [{ ...tcpRule(8080, 80), containerIp: "10.0.0.1 -j ACCEPT" }])).rejects.toThrow(/refusing iptables argument/);
    expect(ran()).toEqual([]);
    expect(owner.runs()).toEqual({ ...NONE, iptables: 1 });
    expect(nat()).toEqual(natBefore);

    // The owner is still usable afterwards (the refusals did not jam its queue).
    expect(await owner.policy("nat", "OUTPUT")).toBe("ACCEPT");
    expect(ran()).toEqual(["-w 5 -t nat -S OUTPUT"]);
  });

  it("runs one process at a time, whoever asks, and counts each by command", async () => {
    // Each of the three commands through a wrapper that logs when it starts and ends, and takes a while.
    const spans = path.join(tmp, "iptables-spans.log");
    const wrap = (name: string, real: string): void =>
      fs.writeFileSync(
        path.join(tmp, name),
        `#!/bin/sh\necho "start $(date +%s%N)" >> ${spans}\nsleep 0.05\n${real} "$@"\nrc=$?\necho "end $(date +%s%N)" >> ${spans}\nexit $rc\n`,
        { mode: 0o755 },
      );
    wrap("ipt-slow", "iptables");
    wrap("ipt-slow-restore", "iptables-restore");
    wrap("ipt-slow-save", "iptables-save");
    const owner = new Iptables({ bin: path.join(tmp, "ipt-slow"), netnsPath: ns.host });
    const first = await startRules({ iptables: owner });
    // Asked from many places at once, as by the publisher, the guards, the keeper and the doctor.
    await Promise.all([
      want(first.rules, [tcpRule(8080, 80)]),
      first.keeper.pass(),
      owner.policy("nat", "PREROUTING"),
      want(first.rules, [tcpRule(8080, 80), udpRule(5353, 5300)]),
      owner.listRules("nat", "OUTPUT"),
      first.keeper.pass(),
    ]);
    const events = fs
      .readFileSync(spans, "utf8")
      .trim()
      .split("\n")
      .map((l) => l.split(" ")[0]);
    // start, end, start, end, …: never two at once.
    expect(events.length).toBeGreaterThanOrEqual(2 * 7);
    expect(events).toEqual(events.map((_, i) => (i % 2 === 0 ? "start" : "end")));
    // start: save + restore; two syncs: a restore each; two passes: a save each; policy and listRules: one iptables each.
    expect(owner.runs()).toEqual({ iptables: 2, "iptables-restore": 3, "iptables-save": 3 });
    expect(events.length).toBe(2 * 8);
  });
});
