/**
 * PortDnat (the hybrid proxy mode's kernel fast path) and the Iptables helper
 * under it, on a simulated host (root, no lab). Namespaces, all `tsk-*` under
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
import { DNAT_CHAIN, PortDnat } from "../../driver/kernel/port-dnat.js";
import type { DnatRule } from "../../driver/contracts/dnat.js";
import { Iptables, IptablesError } from "../../driver/kernel/iptables.js";
import { setupChain, teardownChain, type Chain } from "../../driver/kernel/chain.js";
import { createVethPair, ensureAddress, setUp } from "../../driver/kernel/links.js";
import { openNetnsFd, writeSysctlIn } from "../../driver/kernel/netns.js";
import { createLogger } from "../../lib/log.js";
import { Scratch, inNs, selfNetnsIno } from "./support/scratch.js";

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

function newDnat(gatewayBridge = BRIDGE, iptables = new Iptables({ netnsPath: ns.host })): PortDnat {
  return new PortDnat({ gatewayBridge, iptables, log });
}

/** Removes whatever a failed test left behind, without the code under test. */
function cleanNat(): void {
  const tryIpt = (...args: string[]): boolean => {
    try {
      inNs(ns.host, "iptables", "-w", "5", "-t", "nat", ...args);
      return true;
    } catch {
      return false;
    }
  };
  // Every jump to the chain, whatever its shape.
  for (const parent of ["PREROUTING", "OUTPUT"]) {
    for (const line of nat(parent).filter((l) => l.endsWith(`-j ${DNAT_CHAIN}`))) tryIpt("-D", parent, ...line.split(" ").slice(2));
  }
  tryIpt("-F", DNAT_CHAIN);
  tryIpt("-X", DNAT_CHAIN);
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
  cleanNat();
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

describe("PortDnat rules", () => {
  beforeEach(() => {
    expect(nat()).toEqual(natBefore);
  });

  it("add creates the chain, the two jumps in first position, and each rule exactly as `iptables -S` prints it", async () => {
    const dnat = newDnat();
    for (const [r] of SHAPES) await dnat.add(r);
    expect(nat(DNAT_CHAIN)).toEqual([`-N ${DNAT_CHAIN}`, ...SHAPES.map(([, line]) => line)]);
    expect(nat("PREROUTING")).toEqual(["-P PREROUTING ACCEPT", PREROUTING_JUMP, `-A PREROUTING ${FOREIGN.join(" ")}`]);
    expect(nat("OUTPUT")).toEqual(["-P OUTPUT ACCEPT", OUTPUT_JUMP, `-A OUTPUT ${FOREIGN.join(" ")}`]);
    // ruleArgs is the canonical form (what prune compares against).
    for (const [r, line] of SHAPES) expect(`-A ${DNAT_CHAIN} ${dnat.ruleArgs(r).join(" ")}`).toBe(line);
  });

  it("adding twice adds once (same instance, concurrently, and a fresh instance after a restart)", async () => {
    const dnat = newDnat();
    for (const [r] of SHAPES) await dnat.add(r);
    const once = nat();
    for (const [r] of SHAPES) await dnat.add(r);
    await Promise.all(SHAPES.map(([r]) => dnat.add(r)));
    await Promise.all(SHAPES.map(([r]) => newDnat().add(r)));
    expect(nat()).toEqual(once);
    expect(nat(DNAT_CHAIN)).toHaveLength(1 + SHAPES.length);
    expect(nat().filter((l) => l.endsWith(`-j ${DNAT_CHAIN}`))).toEqual([PREROUTING_JUMP, OUTPUT_JUMP]);
  });

  it("remove takes out one rule and leaves the others; the last one out takes the chain and the jumps", async () => {
    const dnat = newDnat();
    for (const [r] of SHAPES) await dnat.add(r);
    for (let i = 0; i < SHAPES.length - 1; i++) {
      await dnat.remove(SHAPES[i]![0]);
      expect(nat(DNAT_CHAIN)).toEqual([`-N ${DNAT_CHAIN}`, ...SHAPES.slice(i + 1).map(([, line]) => line)]);
      expect(nat().filter((l) => l.endsWith(`-j ${DNAT_CHAIN}`))).toEqual([PREROUTING_JUMP, OUTPUT_JUMP]);
    }
    await dnat.remove(SHAPES.at(-1)![0]);
    expect(chainExists()).toBe(false);
    expect(nat()).toEqual(natBefore);
    // Removing what is not there (not even the chain) is fine.
    await dnat.remove(SHAPES[0]![0]);
    expect(nat()).toEqual(natBefore);
  });

  it("remove of a rule that is not there keeps the chain of the others", async () => {
    const dnat = newDnat();
    await dnat.add(SHAPES[0]![0]);
    await dnat.remove(tcpRule(9999, 99));
    expect(nat(DNAT_CHAIN)).toEqual([`-N ${DNAT_CHAIN}`, SHAPES[0]![1]]);
    expect(nat().filter((l) => l.endsWith(`-j ${DNAT_CHAIN}`))).toEqual([PREROUTING_JUMP, OUTPUT_JUMP]);
  });

  it("prune(keep) deletes only what is not kept, hand-made rules too, and never re-creates a kept rule", async () => {
    const [c, a, b] = [tcpRule(8081, 81, HOST_IP), tcpRule(8080, 80), udpRule(5353, 5300)];
    const first = newDnat();
    for (const r of [c, a, b]) await first.add(r);
    const handMade = ["-p", "tcp", "-m", "tcp", "--dport", "9999", "-j", "DNAT", "--to-destination", `${CTR_IP}:80`];
    inNs(ns.host, "iptables", "-w", "5", "-t", "nat", "-A", DNAT_CHAIN, ...handMade);
    // Traffic through `a` (one connection = one packet through the nat table) and `b`.
    expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`ctr ${CLIENT_IP}`);
    expect(udpFrom(ns.client, HOST_IP, 5353)).toBe(`ctr ${CLIENT_IP}`);
    const before = counted();
    expect(before.map((x) => x.rule)).toEqual([SHAPES[2]![1], SHAPES[0]![1], SHAPES[1]![1], `-A ${DNAT_CHAIN} ${handMade.join(" ")}`]);
    expect(before[1]!.pkts).toBeGreaterThan(0);

    // A fresh instance (after a restart) that knows only what is published now, in another order.
    await newDnat().prune([a, c]);
    const after = counted();
    // Same rules, same order, same counters: not deleted and re-added.
    expect(after).toEqual(before.slice(0, 2));
    expect(nat().filter((l) => l.endsWith(`-j ${DNAT_CHAIN}`))).toEqual([PREROUTING_JUMP, OUTPUT_JUMP]);
    expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`ctr ${CLIENT_IP}`);
    expect(udpFrom(ns.client, HOST_IP, 5353)).toBe(`host ${CLIENT_IP}`);

    // Again: nothing to do, nothing touched.
    const counts = counted();
    await newDnat().prune([a, c]);
    expect(counted()).toEqual(counts);
  });

  it("prune([]) removes every rule, the chain and the jumps; with nothing there it is a no-op", async () => {
    const dnat = newDnat();
    for (const [r] of SHAPES) await dnat.add(r);
    inNs(ns.host, "iptables", "-w", "5", "-t", "nat", "-A", DNAT_CHAIN, "-p", "udp", "-j", "RETURN");
    // `-S` quotes the comment: the line cannot be fed back as arguments, so prune deletes by number.
    inNs(ns.host, "iptables", "-w", "5", "-t", "nat", "-A", DNAT_CHAIN, "-p", "tcp", "-m", "comment", "--comment", "added by hand", "-j", "RETURN");
    await newDnat().prune([]);
    expect(chainExists()).toBe(false);
    expect(nat()).toEqual(natBefore);
    await newDnat().prune([]);
    await newDnat().prune([SHAPES[0]![0]]); // keeping what is not there adds nothing
    expect(nat()).toEqual(natBefore);
  });
});

describe("PortDnat with real traffic", () => {
  it("a client's TCP and UDP reach the container, which sees the client's own address; loopback stays local", async () => {
    const dnat = newDnat();
    await dnat.add(tcpRule(8080, 80));
    await dnat.add(udpRule(5353, 5300));
    expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`ctr ${CLIENT_IP}`);
    expect(httpFrom(ns.client, HOST_IP2, 8080)).toBe(`ctr ${CLIENT_IP}`); // no host IP: every local address
    expect(udpFrom(ns.client, HOST_IP, 5353)).toBe(`ctr ${CLIENT_IP}`);
    // From the host itself (OUTPUT): its own non-loopback address is DNATed, 127.0.0.1 is not.
    expect(httpFrom(ns.host, HOST_IP, 8080)).toBe(`ctr ${HOST_IP}`);
    expect(httpFrom(ns.host, "127.0.0.1", 8080)).toBe("host 127.0.0.1");

    await dnat.remove(tcpRule(8080, 80));
    expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`host ${CLIENT_IP}`);
    expect(udpFrom(ns.client, HOST_IP, 5353)).toBe(`ctr ${CLIENT_IP}`);
    await dnat.remove(udpRule(5353, 5300));
    expect(udpFrom(ns.client, HOST_IP, 5353)).toBe(`host ${CLIENT_IP}`);
    expect(nat()).toEqual(natBefore);
  });

  it("a rule with a host IP DNATs that address only", async () => {
    const dnat = newDnat();
    await dnat.add(tcpRule(8080, 80, HOST_IP));
    expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`ctr ${CLIENT_IP}`);
    expect(httpFrom(ns.client, HOST_IP2, 8080)).toBe(`host ${CLIENT_IP}`);
  });

  it("a connection arriving from the gateway bridge is not DNATed (hairpin stays on the proxy)", async () => {
    // Here the client-side link plays the gateway bridge.
    const dnat = newDnat("cl0");
    await dnat.add(tcpRule(8080, 80));
    await dnat.add(udpRule(5353, 5300));
    expect(nat(DNAT_CHAIN)).toContain(`-A ${DNAT_CHAIN} ! -i cl0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.10.0.5:80`);
    expect(httpFrom(ns.client, HOST_IP, 8080)).toBe(`host ${CLIENT_IP}`);
    expect(udpFrom(ns.client, HOST_IP, 5353)).toBe(`host ${CLIENT_IP}`);
    // The very same rule still DNATs what does not come in through cl0.
    expect(httpFrom(ns.host, HOST_IP, 8080)).toBe(`ctr ${HOST_IP}`);
  });
});

describe("chains of our own (chain.ts)", () => {
  const filter = (...chain: string[]): string[] =>
    inNs(ns.host, "iptables", "-w", "5", "-t", "filter", "-S", ...chain)
      .trim()
      .split("\n");
  const CHAIN: Chain = {
    table: "filter",
    name: "TSK-CHAIN",
    entries: [
      { chain: "FORWARD", match: [] },
      { chain: "INPUT", match: ["-i", "cl0"] },
    ],
    rules: [
      ["-s", "192.0.2.1/32", "-j", "DROP"],
      ["-s", "192.0.2.2/32", "-j", "ACCEPT"],
      ["-j", "RETURN"],
    ],
  };
  const RULES = ["-N TSK-CHAIN", "-A TSK-CHAIN -s 192.0.2.1/32 -j DROP", "-A TSK-CHAIN -s 192.0.2.2/32 -j ACCEPT", "-A TSK-CHAIN -j RETURN"];

  it("setup creates the chain, its rules in order and the jumps first; repairs in place; teardown removes it all", async () => {
    const ipt = new Iptables({ netnsPath: ns.host });
    const before = filter();
    inNs(ns.host, "iptables", "-w", "5", "-A", "INPUT", ...FOREIGN);
    try {
      const first = await setupChain(ipt, CHAIN);
      expect(first.created).toBe(true);
      expect(first.added.map((a) => `${a.chain}@${a.position} ${a.rule.join(" ")}`)).toEqual([
        "TSK-CHAIN@1 -s 192.0.2.1/32 -j DROP",
        "TSK-CHAIN@2 -s 192.0.2.2/32 -j ACCEPT",
        "TSK-CHAIN@3 -j RETURN",
        "FORWARD@1 -j TSK-CHAIN",
        "INPUT@1 -i cl0 -j TSK-CHAIN",
      ]);
      expect(filter("TSK-CHAIN")).toEqual(RULES);
      expect(filter("INPUT")).toEqual(["-P INPUT ACCEPT", "-A INPUT -i cl0 -j TSK-CHAIN", `-A INPUT ${FOREIGN.join(" ")}`]);
      expect(filter("FORWARD")).toEqual(["-P FORWARD ACCEPT", "-A FORWARD -j TSK-CHAIN"]);

      // Again: nothing to do. A rule deleted by hand goes back to its place, a lost jump to the top.
      expect(await setupChain(ipt, CHAIN)).toEqual({ created: false, added: [] });
      inNs(ns.host, "iptables", "-w", "5", "-D", "TSK-CHAIN", "-s", "192.0.2.1/32", "-j", "DROP");
      inNs(ns.host, "iptables", "-w", "5", "-D", "INPUT", "-i", "cl0", "-j", "TSK-CHAIN");
      expect((await setupChain(ipt, CHAIN)).added.map((a) => `${a.chain}@${a.position}`)).toEqual(["TSK-CHAIN@1", "INPUT@1"]);
      expect(filter("TSK-CHAIN")).toEqual(RULES);
      expect(filter("INPUT")[1]).toBe("-A INPUT -i cl0 -j TSK-CHAIN");

      expect(await teardownChain(ipt, CHAIN)).toBe(true);
      expect(await teardownChain(ipt, CHAIN)).toBe(false); // gone already
      expect(filter()).toEqual([...before, `-A INPUT ${FOREIGN.join(" ")}`]);
    } finally {
      await teardownChain(ipt, CHAIN).catch(() => undefined);
      inNs(ns.host, "iptables", "-w", "5", "-D", "INPUT", ...FOREIGN);
    }
    expect(filter()).toEqual(before);
  });
});

describe("Iptables", () => {
  it("a binary that cannot run fails with an IptablesError naming the rule", async () => {
    const inHost = new Iptables({ bin: "/nonexistent/iptables", netnsPath: ns.host });
    const e1 = await inHost.chainExists("nat", DNAT_CHAIN).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(IptablesError);
    expect((e1 as IptablesError).rule).toBe(`iptables -t nat -S ${DNAT_CHAIN}`);
    expect((e1 as Error).message).toMatch(new RegExp(`^iptables -t nat -S ${DNAT_CHAIN} failed`));

    // Without nsenter the binary itself does not start (ENOENT); nothing runs anywhere.
    const direct = new Iptables({ bin: "/nonexistent/iptables" });
    const e2 = await direct.exec("nat", ["-N", "TSK-NEVER"]).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(IptablesError);
    expect((e2 as IptablesError).rule).toBe("iptables -t nat -N TSK-NEVER");
    expect((e2 as Error).message).toMatch(/^iptables -t nat -N TSK-NEVER failed: .*ENOENT/);

    // Through PortDnat: the error surfaces and nothing was changed.
    const e3 = await newDnat(BRIDGE, inHost)
      .add(tcpRule(8080, 80))
      .catch((e: unknown) => e);
    expect(e3).toBeInstanceOf(IptablesError);
    expect((e3 as IptablesError).rule).toBe(`iptables -t nat -S ${DNAT_CHAIN}`);
    expect(nat()).toEqual(natBefore);

    expect(() => new Iptables({ bin: "-j" })).toThrow(IptablesError);
    expect(() => new Iptables({ bin: "" })).toThrow(IptablesError);
  });

  it("a failing call names the rule and iptables' complaint; exit codes listed as ok are results", async () => {
    const ipt = new Iptables({ netnsPath: ns.host });
    const err = await ipt.exec("nat", ["-X", "TSK-NO-SUCH"]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IptablesError);
    expect((err as IptablesError).rule).toBe("iptables -t nat -X TSK-NO-SUCH");
    expect((err as Error).message).toMatch(/^iptables -t nat -X TSK-NO-SUCH failed \(exit \d+\): \S/);
    expect(await ipt.exec("nat", ["-S", "TSK-NO-SUCH"], [0, 1])).toBe(1);
    expect(await ipt.listRules("nat", "TSK-NO-SUCH")).toBeUndefined();
    expect(await ipt.chainExists("nat", "PREROUTING")).toBe(true);
    expect(await ipt.listRules("nat", "PREROUTING")).toEqual([`-A PREROUTING ${FOREIGN.join(" ")}`]);
  });

  it("refuses an argument with a space or a `;` without running anything", async () => {
    const calls = path.join(tmp, "iptables-calls.log");
    const bin = path.join(tmp, "iptables-recorder");
    fs.writeFileSync(bin, `#!/bin/sh\necho "$*" >> ${calls}\nexec iptables "$@"\n`, { mode: 0o755 });
    const ipt = new Iptables({ bin, netnsPath: ns.host });
    const ran = (): string[] => (fs.existsSync(calls) ? fs.readFileSync(calls, "utf8").trim().split("\n").filter(Boolean) : []);
    // The recorder does record what runs.
    expect(await ipt.chainExists("nat", "PREROUTING")).toBe(true);
    expect(ran()).toEqual(["-w 5 -t nat -S PREROUTING"]);
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
    await refused(ipt.exec("nat", ["-N", "TSK BAD"]), "iptables -t nat -N TSK BAD", "TSK BAD");
    await refused(ipt.exec("nat", ["-N", "TSK;reboot"]), "iptables -t nat -N TSK;reboot", "TSK;reboot");
    await refused(ipt.ensureChain("nat", "TSK;X"), "iptables -t nat -S TSK;X", "TSK;X");
    await refused(
      ipt.ensureRule("nat", "PREROUTING", ["-j", "DNAT", "--to-destination", "10.0.0.1:80;", "x"]),
      "iptables -t nat -C PREROUTING -j DNAT --to-destination 10.0.0.1:80; x",
      "10.0.0.1:80;",
    );
    await refused(ipt.listRules("nat", "PRE ROUTING"), "iptables -t nat -S PRE ROUTING", "PRE ROUTING");
    expect(ran()).toEqual([]);
    expect(nat()).toEqual(natBefore);

    // The instance is still usable afterwards (the refusals did not jam its queue).
    expect(await ipt.chainExists("nat", "OUTPUT")).toBe(true);
    expect(ran()).toEqual(["-w 5 -t nat -S OUTPUT"]);
  });
});
