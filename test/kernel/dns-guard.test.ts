/**
 * The name service's guard (TSOVERLAY-INPUT) in scratch namespaces. The rules:
 * Docker's bridges by their exact names come and go, before the refusals; the
 * fixed rules stay; the guard of the pattern era is rewritten. The packets: a
 * "host" namespace with a UDP listener on the name service's address and two
 * clients, one behind `docker0` (a bridge Docker lists) and one behind
 * `br-lan` (a bridge that only looks like one of Docker's): until Docker has
 * answered both are refused at once; then docker0's is answered and br-lan's
 * still refused.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DNS_GUARD_CHAIN, DnsGuard } from "../../driver/kernel/dns-guard.js";
import { Iptables } from "../../driver/kernel/iptables.js";
import { RuleKeeper } from "../../driver/kernel/rule-keeper.js";
import { createLogger } from "../../lib/log.js";
import { inNs, Scratch } from "./support/scratch.js";

const scratch = new Scratch("tsk-dnsguard-");
const NAME_SERVER = "100.72.0.1";
const ns = { host: "", docker: "", other: "" };
let ipt: Iptables;
let listener: ChildProcess | undefined;
let guard: DnsGuard;
const log = createLogger("silent");

/** A plugin (re)start: a fresh guard that takes over the bridges' rules it finds, set up by its keeper. */
async function startGuard(on = ipt): Promise<DnsGuard> {
  const g = new DnsGuard({ iptables: on, address: NAME_SERVER, port: 53, gatewayBridge: "tso-gw0", log });
  await new RuleKeeper({ iptables: on, parts: [g], log }).start();
  return g;
}

beforeAll(async () => {
  scratch.init();
  ns.host = scratch.newNs("dg-host");
  ns.docker = scratch.newNs("dg-docker");
  ns.other = scratch.newNs("dg-other");
  ipt = new Iptables({ netnsPath: ns.host });
  // host: docker0 172.17.0.1 <-> 172.17.0.2 (a container of Docker's bridge); br-lan 192.168.77.1 <-> 192.168.77.2 (someone else's bridge).
  const wire = (hostIf: string, hostIp: string, client: string, clientIp: string): void => {
    inNs(ns.host, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", client);
    inNs(ns.host, "ip", "addr", "add", `${hostIp}/24`, "dev", hostIf);
    inNs(ns.host, "ip", "link", "set", hostIf, "up");
    inNs(client, "ip", "addr", "add", `${clientIp}/24`, "dev", "eth0");
    inNs(client, "ip", "link", "set", "eth0", "up");
    inNs(client, "ip", "link", "set", "lo", "up");
    inNs(client, "ip", "route", "add", "default", "via", hostIp);
  };
  inNs(ns.host, "ip", "link", "set", "lo", "up");
  inNs(ns.host, "ip", "addr", "add", `${NAME_SERVER}/32`, "dev", "lo");
  wire("docker0", "172.17.0.1", ns.docker, "172.17.0.2");
  wire("br-lan", "192.168.77.1", ns.other, "192.168.77.2");
  // Answers any datagram with "answer".
  const script = `const d = require("dgram").createSocket("udp4"); d.on("message", (m, r) => d.send("answer", r.port, r.address)); d.bind(53, "${NAME_SERVER}", () => console.log("listening"));`;
  listener = spawn("nsenter", [`--net=${ns.host}`, process.execPath, "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("the UDP listener did not start")), 10_000);
    listener!.stdout!.on("data", (d: Buffer) => {
      if (d.toString().includes("listening")) {
        clearTimeout(t);
        resolve();
      }
    });
  });
});

afterAll(async () => {
  if (listener !== undefined && listener.exitCode === null) {
    const exited = new Promise((r) => listener!.once("exit", r));
    listener.kill("SIGTERM");
    await exited;
  }
  scratch.deleteNamespaces();
  scratch.removeDir();
});

/** The chain's rules as `<iface|*> <proto> <target>`, in order. */
async function rules(): Promise<string[]> {
  return ((await ipt.listRules("filter", DNS_GUARD_CHAIN)) ?? []).map((l) => {
    const iface = /-i (\S+)/.exec(l)?.[1] ?? "*";
    return `${iface} ${/-p (\S+)/.exec(l)?.[1]} ${/-j (\S+)/.exec(l)?.[1]}`;
  });
}

/** One UDP query from the client's namespace: "answer", "ECONNREFUSED" (refused at once), or "timeout" (dropped). */
function ask(client: string): string {
  const script =
    `const d = require("dgram").createSocket("udp4"); const t = setTimeout(() => { console.log("timeout"); process.exit(0) }, 3000);` +
    `d.on("message", (m) => { console.log(String(m)); process.exit(0) }); d.on("error", (e) => { console.log(e.code); process.exit(0) });` +
    `d.connect(53, "${NAME_SERVER}", () => d.send("q"));`;
  return execFileSync("nsenter", [`--net=${client}`, process.execPath, "-e", script], { encoding: "utf8" }).trim();
}

describe("the name service's guard", () => {
  it("refuses everything but the gateway bridge and lo until Docker's bridges are known, then lets exactly those ask", async () => {
    guard = await startGuard();
    expect(await rules()).toEqual(["tso-gw0 udp ACCEPT", "tso-gw0 tcp ACCEPT", "lo udp ACCEPT", "lo tcp ACCEPT", "* udp REJECT", "* tcp REJECT"]);
    // Before Docker has answered: refused at once (the container's resolver moves on to the next server), not left to time out.
    expect(ask(ns.docker)).toBe("ECONNREFUSED");
    expect(ask(ns.other)).toBe("ECONNREFUSED");

    // Docker lists docker0 (and a br-<id> whose interface is not here): docker0's container is answered; br-lan is still refused.
    await guard.allowDockerBridges(["docker0", "br-0123456789ab"]);
    expect(ask(ns.docker)).toBe("answer");
    expect(ask(ns.other)).toBe("ECONNREFUSED");
  });

  it("lets named Docker bridges ask, before the refusals; a bridge no longer listed loses its rule; the fixed rules stay", async () => {
    guard = await startGuard();
    await guard.allowDockerBridges([]);
    const fixed = await rules();
    expect(fixed.slice(-2)).toEqual(["* udp REJECT", "* tcp REJECT"]);

    // Exact names only: the gateway bridge and lo are the fixed rules' already; a name iptables would not take as one interface is skipped.
    await guard.allowDockerBridges(["lab0", "docker0", "br-0123456789ab", "tso-gw0", "lo", "br-+", "bad name;"]);
    const withLab = await rules();
    const dynamic = withLab.filter((r) => !fixed.includes(r));
    expect(dynamic.sort()).toEqual(["lab0", "docker0", "br-0123456789ab"].flatMap((i) => [`${i} tcp ACCEPT`, `${i} udp ACCEPT`]).sort());
    expect(withLab.slice(-2)).toEqual(["* udp REJECT", "* tcp REJECT"]);

    // Idempotent; then lab0's network goes and another comes (also a rule left from before a restart goes).
    const runs = ipt.runs();
    await guard.allowDockerBridges(["lab0", "docker0", "br-0123456789ab"]);
    expect(ipt.runs()).toEqual(runs); // nothing changed: no iptables process
    expect(await rules()).toEqual(withLab);
    await guard.allowDockerBridges(["edge1"]);
    const after = await rules();
    expect(after.filter((r) => !fixed.includes(r)).sort()).toEqual(["edge1 tcp ACCEPT", "edge1 udp ACCEPT"]);
    // A plugin restart: the guard is set up again and keeps the bridges' rules until Docker is read again.
    guard = await startGuard();
    expect(await rules()).toEqual(after);
    await guard.allowDockerBridges([]);
    expect(await rules()).toEqual(fixed);
  });

  it("rewrites the guard of the pattern era: no docker+ or br-+, refusals instead of DROPs and last, a bridge's rule kept", async () => {
    const ipt2 = new Iptables({ netnsPath: scratch.newNs("dg-old") });
    const old = (rule: string[]): string =>
      execFileSync("nsenter", [`--net=${scratch.created.at(-1)!}`, "iptables", "-w", "5", "-A", DNS_GUARD_CHAIN, ...rule], { encoding: "utf8" });
    execFileSync("nsenter", [`--net=${scratch.created.at(-1)!}`, "iptables", "-w", "5", "-N", DNS_GUARD_CHAIN]);
    for (const iface of ["lab0", "tso-gw0", "docker+", "br-+", "lo"])
      for (const p of ["udp", "tcp"]) old(["-i", iface, "-p", p, "--dport", "53", "-j", "ACCEPT"]);
    for (const p of ["udp", "tcp"]) old(["-p", p, "--dport", "53", "-j", "DROP"]);
    await startGuard(ipt2);
    const got = ((await ipt2.listRules("filter", DNS_GUARD_CHAIN)) ?? []).map(
      (l) => `${/-i (\S+)/.exec(l)?.[1] ?? "*"} ${/-p (\S+)/.exec(l)?.[1]} ${/-j (\S+)/.exec(l)?.[1]}`,
    );
    expect(got).toEqual([
      "lab0 udp ACCEPT",
      "lab0 tcp ACCEPT",
      "tso-gw0 udp ACCEPT",
      "tso-gw0 tcp ACCEPT",
      "lo udp ACCEPT",
      "lo tcp ACCEPT",
      "* udp REJECT",
      "* tcp REJECT",
    ]);
    const input = execFileSync("nsenter", [`--net=${scratch.created.at(-1)!}`, "iptables", "-w", "5", "-S", "INPUT"], { encoding: "utf8" });
    expect(input).toContain(`-A INPUT -d ${NAME_SERVER}/32 -j ${DNS_GUARD_CHAIN}`);
  });
});
