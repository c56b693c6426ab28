/**
 * The VXLAN guard (TSOVERLAY-VXLAN-IN/-FWD) on a simulated host, with real
 * datagrams. Namespaces, all `tsk-*` under a temp dir:
 *   tsk-vg-host  plays the host: underlay `ul0` 192.0.2.1/24 (its VTEP), and a
 *                container-side bridge port `cb0` 198.51.100.1/24
 *   tsk-vg-peer  the underlay: 192.0.2.2 (a live VTEP) and 192.0.2.3 (not one)
 *   tsk-vg-ctr   a container behind `cb0`: 198.51.100.2, default via the host
 * Which rule a datagram met is read from iptables' own packet counters. A
 * FORWARD chain that accepts everything first (as Docker's and the egress
 * chains do for their bridges) must not matter: the guard is in raw PREROUTING.
 */
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createVethPair, ensureAddress, setUp } from "../../driver/kernel/links.js";
import { openNetnsFd } from "../../driver/kernel/netns.js";
import { Iptables } from "../../driver/kernel/iptables.js";
import { VXLAN_FWD_CHAIN, VXLAN_IN_CHAIN, VxlanGuard } from "../../driver/kernel/vxlan-guard.js";
import { RuleKeeper } from "../../driver/kernel/rule-keeper.js";
import { createLogger } from "../../lib/log.js";
import { Scratch, inNs } from "./support/scratch.js";

const log = createLogger(process.env.TSOVERLAY_LOG_LEVEL ?? "silent");
const VTEP = "192.0.2.1";
const PEER = "192.0.2.2";
const STRANGER = "192.0.2.3";
const OTHER_PEER = "192.0.2.9";
const PORT = 4789;

const scratch = new Scratch("tsk-vxguard-");
let ns: { host: string; peer: string; ctr: string };
let guard: VxlanGuard;
let keeper: RuleKeeper;
let ipt: Iptables;

/** A plugin (re)start: a fresh guard that keeps the peers it finds, set up by its keeper. */
async function startGuard(): Promise<void> {
  guard = new VxlanGuard({ iptables: ipt, vtep: VTEP, underlay: "ul0", vxlanPort: PORT, log });
  keeper = new RuleKeeper({ iptables: ipt, parts: [guard], log });
  await keeper.start();
}

async function veth(inside: string, name: string, other: string, otherName: string, cidr: string, otherCidr: string): Promise<void> {
  const nl = scratch.socketIn(inside);
  const fd = openNetnsFd(other);
  try {
    await createVethPair(nl, name, otherName, undefined, fd);
  } finally {
    fs.closeSync(fd);
  }
  await ensureAddress(nl, name, cidr);
  await setUp(nl, name);
  const ol = scratch.socketIn(other);
  await ensureAddress(ol, otherName, otherCidr);
  await setUp(ol, otherName);
}

beforeAll(async () => {
  scratch.init();
  ns = { host: scratch.newNs("vg-host"), peer: scratch.newNs("vg-peer"), ctr: scratch.newNs("vg-ctr") };
  await veth(ns.host, "ul0", ns.peer, "eth0", `${VTEP}/24`, `${PEER}/24`);
  await ensureAddress(scratch.socketIn(ns.peer), "eth0", `${STRANGER}/24`);
  await veth(ns.host, "cb0", ns.ctr, "eth0", "198.51.100.1/24", "198.51.100.2/24");
  inNs(ns.ctr, "ip", "route", "add", "default", "via", "198.51.100.1");
  inNs(ns.host, "sysctl", "-qw", "net.ipv4.ip_forward=1");
  inNs(ns.host, "iptables", "-w", "5", "-I", "FORWARD", "1", "-i", "cb0", "-j", "ACCEPT");
  ipt = new Iptables({ netnsPath: ns.host });
  await startGuard();
});

afterAll(() => {
  scratch.closeSockets();
  scratch.deleteNamespaces();
  scratch.removeDir();
});

const rules = (chain: string): string[] =>
  inNs(ns.host, "iptables", "-w", "5", "-t", "raw", "-S", chain)
    .split("\n")
    .filter((l) => l.startsWith("-A "));

/** Packets counted by each rule of the chain, as `<target> <source|*> <destination|*>: <packets>`. */
function counters(chain: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of inNs(ns.host, "iptables", "-w", "5", "-t", "raw", "-L", chain, "-v", "-n", "-x").split("\n").slice(2)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 9) continue;
    const [pkts, , target, , , inIf, , src, dst] = f;
    out[`${target} ${inIf} ${src} ${dst}`] = Number(pkts);
  }
  return out;
}

/** One UDP datagram to the VXLAN port, from `from` (bound to `source` when given). */
function send(from: string, to: string, source?: string): void {
  const bind = source === undefined ? "" : `,bind=${source}`;
  inNs(from, "sh", "-c", `printf 'not really vxlan' | socat -u - UDP-SENDTO:${to}:${PORT}${bind}`);
}

describe("the VXLAN guard", () => {
  it("admits exactly the live peers' VTEPs, on the underlay, before a final DROP; the jumps come first", async () => {
    await guard.admit([VTEP, PEER, OTHER_PEER]);
    const input = rules(VXLAN_IN_CHAIN);
    expect(input.at(-1)).toBe(`-A ${VXLAN_IN_CHAIN} -j DROP`);
    expect(input.slice(0, -1).sort()).toEqual([PEER, OTHER_PEER].map((p) => `-A ${VXLAN_IN_CHAIN} -s ${p}/32 -d ${VTEP}/32 -i ul0 -j RETURN`).sort());
    expect(rules(VXLAN_FWD_CHAIN).sort()).toEqual([OTHER_PEER, PEER, VTEP].map((v) => `-A ${VXLAN_FWD_CHAIN} -d ${v}/32 -j DROP`).sort());
    expect(rules("PREROUTING").slice(0, 2).sort()).toEqual(
      [
        `-A PREROUTING -p udp -m udp --dport ${PORT} -m addrtype --dst-type LOCAL -j ${VXLAN_IN_CHAIN}`,
        `-A PREROUTING -p udp -m udp --dport ${PORT} -m addrtype ! --dst-type LOCAL -j ${VXLAN_FWD_CHAIN}`,
      ].sort(),
    );

    // A host that goes is no longer admitted (one iptables process); the same hosts again cost none.
    let runs = ipt.runs();
    await guard.admit([VTEP, PEER]);
    expect(ipt.runs()["iptables-restore"]).toBe(runs["iptables-restore"] + 1);
    runs = ipt.runs();
    await guard.admit([PEER, VTEP, PEER]);
    expect(ipt.runs()).toEqual(runs);
    const admitted = [`-A ${VXLAN_IN_CHAIN} -s ${PEER}/32 -d ${VTEP}/32 -i ul0 -j RETURN`, `-A ${VXLAN_IN_CHAIN} -j DROP`];
    expect(rules(VXLAN_IN_CHAIN)).toEqual(admitted);
    expect(rules(VXLAN_FWD_CHAIN).sort()).toEqual([PEER, VTEP].map((v) => `-A ${VXLAN_FWD_CHAIN} -d ${v}/32 -j DROP`).sort());

    // One deleted by hand comes back with the keeper's next pass.
    inNs(ns.host, "iptables", "-w", "5", "-t", "raw", "-D", VXLAN_IN_CHAIN, "-s", `${PEER}/32`, "-d", `${VTEP}/32`, "-i", "ul0", "-j", "RETURN");
    expect(await keeper.pass()).toEqual([VXLAN_IN_CHAIN]);
    expect(rules(VXLAN_IN_CHAIN)).toEqual(admitted);

    // A restart keeps the peers it finds, without writing anything.
    runs = ipt.runs();
    await startGuard();
    expect(rules(VXLAN_IN_CHAIN)).toEqual(admitted);
    expect(ipt.runs()).toEqual({ ...runs, "iptables-save": runs["iptables-save"] + 1 });
  });

  it("passes a live VTEP's datagram; drops one from another underlay address and one from a container, to any host address", async () => {
    await guard.admit([VTEP, PEER]);
    inNs(ns.host, "iptables", "-w", "5", "-t", "raw", "-Z", VXLAN_IN_CHAIN);
    send(ns.peer, VTEP, PEER);
    send(ns.peer, VTEP, STRANGER);
    send(ns.ctr, VTEP);
    send(ns.ctr, "198.51.100.1");
    const c = counters(VXLAN_IN_CHAIN);
    expect(c[`RETURN ul0 ${PEER} ${VTEP}`]).toBe(1);
    expect(c["DROP * 0.0.0.0/0 0.0.0.0/0"]).toBe(3);
  });

  it("drops a container's datagram on its way to a live VTEP (its host's NAT would make it look like ours)", async () => {
    await guard.admit([VTEP, PEER]);
    inNs(ns.host, "iptables", "-w", "5", "-t", "raw", "-Z", VXLAN_FWD_CHAIN);
    send(ns.ctr, PEER);
    expect(counters(VXLAN_FWD_CHAIN)[`DROP * 0.0.0.0/0 ${PEER}`]).toBe(1);
  });
});
