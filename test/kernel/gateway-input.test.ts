/**
 * The gateway bridge's input gate (TSOVERLAY-GW-INPUT) in scratch namespaces:
 * a "host" namespace whose `tsogw0` leads to a container namespace, with a
 * TCP service on every host address, a name service on the bridge address,
 * and TCP and UDP listeners for published ports. From the container: the
 * name service answers, a published port answers once the gate opens it and
 * is refused again once it is closed, any other port of the host is refused
 * at once, on the bridge address as on the host's other address. The host's
 * own connections to the container still get their replies. The gate is the
 * filter half of the published ports' rules (port-rules.ts, here without the
 * DNAT fast path), set up and repaired by the RuleKeeper.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GatePort } from "../../driver/contracts/port-rules.js";
import { GATEWAY_INPUT_CHAIN } from "../../driver/kernel/gateway-input.js";
import { Iptables } from "../../driver/kernel/iptables.js";
import { KernelPortRules } from "../../driver/kernel/port-rules.js";
import { RuleKeeper } from "../../driver/kernel/rule-keeper.js";
import { createLogger } from "../../lib/log.js";
import { inNs, Scratch } from "./support/scratch.js";

const scratch = new Scratch("tsk-gwin-");
const BRIDGE_IP = "100.72.0.1";
const CONTAINER_IP = "100.72.0.2";
/** Another address of the host (its underlay, say). */
const HOST_IP = "192.0.2.10";
const ns = { host: "", ctr: "" };
let ipt: Iptables;
let gate: KernelPortRules;
let keeper: RuleKeeper;
const log = createLogger("silent");

/** A plugin (re)start: a fresh gate that takes over what the kernel holds, set up by its keeper. */
async function startGate(): Promise<void> {
  gate = new KernelPortRules({ iptables: ipt, gatewayBridge: "tsogw0", fastPath: false, nameServer: { address: BRIDGE_IP, port: 53 }, log });
  keeper = new RuleKeeper({ iptables: ipt, parts: [gate], log });
  await keeper.start();
}
const open = (ports: GatePort[], keepLeftovers = false): Promise<void> => gate.sync(() => ({ dnat: [], gate: ports }), { keepLeftovers });
const servers: ChildProcess[] = [];

/** Runs a node script in a namespace until the test ends; resolves once it printed "ready". */
async function serve(netns: string, script: string): Promise<void> {
  const p = spawn("nsenter", [`--net=${netns}`, process.execPath, "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  servers.push(p);
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("a listener did not start")), 10_000);
    p.stdout.on("data", (d: Buffer) => {
      if (d.toString().includes("ready")) {
        clearTimeout(t);
        resolve();
      }
    });
  });
}

const tcpServer = (port: number, host = "0.0.0.0"): string =>
  `require("net").createServer((s) => s.end("hello")).listen(${port}, "${host}", () => console.log("ready"));`;
const udpServer = (port: number, host: string): string =>
  `const d = require("dgram").createSocket("udp4"); d.on("message", (m, r) => d.send("answer", r.port, r.address)); d.bind(${port}, "${host}", () => console.log("ready"));`;

/** A TCP connection from `from` to ip:port: "hello" (answered), "ECONNREFUSED" (refused at once) or "timeout". */
function tcp(from: string, ip: string, port: number): string {
  const script =
    `const t = setTimeout(() => { console.log("timeout"); process.exit(0) }, 3000);` +
    `const s = require("net").connect(${port}, "${ip}"); let got = "";` +
    `s.on("data", (d) => (got += d)); s.on("end", () => { console.log(got); process.exit(0) }); s.on("error", (e) => { console.log(e.code); process.exit(0) });`;
  return execFileSync("nsenter", [`--net=${from}`, process.execPath, "-e", script], { encoding: "utf8" }).trim();
}

/** One UDP datagram from `from` to ip:port: "answer", "ECONNREFUSED" or "timeout". */
function udp(from: string, ip: string, port: number): string {
  const script =
    `const d = require("dgram").createSocket("udp4"); const t = setTimeout(() => { console.log("timeout"); process.exit(0) }, 3000);` +
    `d.on("message", (m) => { console.log(String(m)); process.exit(0) }); d.on("error", (e) => { console.log(e.code); process.exit(0) });` +
    `d.connect(${port}, "${ip}", () => d.send("q"));`;
  return execFileSync("nsenter", [`--net=${from}`, process.execPath, "-e", script], { encoding: "utf8" }).trim();
}

/** The chain's rules, shortened to what differs: `[-d ip] proto port target` or the conntrack accept. */
async function rules(): Promise<string[]> {
  return ((await ipt.listRules("filter", GATEWAY_INPUT_CHAIN)) ?? []).map((l) => l.replace(`-A ${GATEWAY_INPUT_CHAIN} `, ""));
}

beforeAll(async () => {
  scratch.init();
  ns.host = scratch.newNs("gw-host");
  ns.ctr = scratch.newNs("gw-ctr");
  ipt = new Iptables({ netnsPath: ns.host });
  inNs(ns.host, "ip", "link", "set", "lo", "up");
  inNs(ns.host, "ip", "addr", "add", `${HOST_IP}/32`, "dev", "lo");
  inNs(ns.host, "ip", "link", "add", "tsogw0", "type", "veth", "peer", "name", "eth0", "netns", ns.ctr);
  inNs(ns.host, "ip", "addr", "add", `${BRIDGE_IP}/24`, "dev", "tsogw0");
  inNs(ns.host, "ip", "link", "set", "tsogw0", "up");
  inNs(ns.ctr, "ip", "addr", "add", `${CONTAINER_IP}/24`, "dev", "eth0");
  inNs(ns.ctr, "ip", "link", "set", "eth0", "up");
  inNs(ns.ctr, "ip", "link", "set", "lo", "up");
  inNs(ns.ctr, "ip", "route", "add", "default", "via", BRIDGE_IP);
  await serve(ns.host, tcpServer(2222)); // a host service (an SSH daemon, a Consul agent)
  await serve(ns.host, tcpServer(18080)); // a published TCP port
  // A published UDP port, on each address (a socket on 0.0.0.0 would answer from the bridge address only).
  for (const ip of [HOST_IP, BRIDGE_IP]) await serve(ns.host, udpServer(18081, ip));
  await serve(ns.host, udpServer(53, BRIDGE_IP)); // the name service
  await serve(ns.ctr, tcpServer(80)); // the container's own service
});

afterAll(async () => {
  for (const p of servers) {
    if (p.exitCode !== null) continue;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGTERM");
    await exited;
  }
  scratch.deleteNamespaces();
  scratch.removeDir();
});

describe("the gateway bridge's input gate", () => {
  it("without it, a container reaches every service of its host (the reason it exists)", () => {
    expect(tcp(ns.ctr, HOST_IP, 2222)).toBe("hello");
    expect(tcp(ns.ctr, BRIDGE_IP, 2222)).toBe("hello");
  });

  it("lets a container reach the name service, refuses the rest of the host at once, and keeps the host's own connections working", async () => {
    await startGate();
    expect(await rules()).toEqual([
      "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
      `-d ${BRIDGE_IP}/32 -p udp -m udp --dport 53 -j ACCEPT`,
      `-d ${BRIDGE_IP}/32 -p tcp -m tcp --dport 53 -j ACCEPT`,
      "-p tcp -j REJECT --reject-with tcp-reset",
      "-j REJECT --reject-with icmp-port-unreachable",
    ]);
    expect(udp(ns.ctr, BRIDGE_IP, 53)).toBe("answer");
    for (const ip of [HOST_IP, BRIDGE_IP]) {
      expect(tcp(ns.ctr, ip, 2222)).toBe("ECONNREFUSED");
      expect(tcp(ns.ctr, ip, 18080)).toBe("ECONNREFUSED");
      expect(udp(ns.ctr, ip, 18081)).toBe("ECONNREFUSED");
    }
    // The host's connection to the container (the proxy's, say) is answered: replies are let in.
    expect(tcp(ns.host, CONTAINER_IP, 80)).toBe("hello");
  });

  it("opens exactly the published ports (one iptables process for both), closes them when they go, and sets itself up again in place", async () => {
    const runs = ipt.runs();
    await open([
      { proto: "tcp", hostIp: "", hostPort: 18080 },
      { proto: "udp", hostIp: HOST_IP, hostPort: 18081 },
    ]);
    expect(ipt.runs()).toEqual({ ...runs, "iptables-restore": runs["iptables-restore"] + 1 });
    expect(tcp(ns.ctr, HOST_IP, 18080)).toBe("hello");
    expect(tcp(ns.ctr, BRIDGE_IP, 18080)).toBe("hello");
    expect(udp(ns.ctr, HOST_IP, 18081)).toBe("answer");
    // Published on one address only: not on the others.
    expect(udp(ns.ctr, BRIDGE_IP, 18081)).toBe("ECONNREFUSED");
    expect(tcp(ns.ctr, HOST_IP, 2222)).toBe("ECONNREFUSED");
    const opened = await rules();
    expect(opened.slice(-2)).toEqual(["-p tcp -j REJECT --reject-with tcp-reset", "-j REJECT --reject-with icmp-port-unreachable"]);

    // A plugin restart sets the gate up again: nothing moves (no write at all), the ports stay open until the publisher says otherwise.
    const beforeRestart = ipt.runs();
    await startGate();
    expect(await rules()).toEqual(opened);
    expect(ipt.runs()["iptables-restore"]).toBe(beforeRestart["iptables-restore"]);
    await open([{ proto: "tcp", hostIp: "", hostPort: 18080 }], true); // restoring: what the previous run opened stays
    expect(udp(ns.ctr, HOST_IP, 18081)).toBe("answer");
    // A refusal deleted by hand comes back, last.
    inNs(ns.host, "iptables", "-w", "5", "-D", GATEWAY_INPUT_CHAIN, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset");
    expect(await keeper.pass()).toEqual([GATEWAY_INPUT_CHAIN]);
    // Written again whole: the ports in any order, between the fixed accepts and the refusals.
    const repaired = await rules();
    expect([...repaired].sort()).toEqual([...opened].sort());
    expect(repaired.slice(0, 3)).toEqual(opened.slice(0, 3));
    expect(repaired.slice(-2)).toEqual(opened.slice(-2));
    expect(await keeper.pass()).toEqual([]);

    await open([{ proto: "tcp", hostIp: "", hostPort: 18080 }]);
    expect(udp(ns.ctr, HOST_IP, 18081)).toBe("ECONNREFUSED");
    expect(tcp(ns.ctr, HOST_IP, 18080)).toBe("hello");
    await open([]);
    expect(tcp(ns.ctr, HOST_IP, 18080)).toBe("ECONNREFUSED");
    // The name service's accepts are the gate's own, never closed as a port.
    expect(udp(ns.ctr, BRIDGE_IP, 53)).toBe("answer");
    expect((await rules()).filter((r) => r.includes("--dport"))).toEqual([
      `-d ${BRIDGE_IP}/32 -p udp -m udp --dport 53 -j ACCEPT`,
      `-d ${BRIDGE_IP}/32 -p tcp -m tcp --dport 53 -j ACCEPT`,
    ]);
    const input = inNs(ns.host, "iptables", "-w", "5", "-S", "INPUT");
    expect(input.split("\n").filter((l) => l.includes(GATEWAY_INPUT_CHAIN))).toEqual([`-A INPUT -i tsogw0 -j ${GATEWAY_INPUT_CHAIN}`]);
  });
});
