import dgram from "node:dgram";
import net from "node:net";
import os from "node:os";
import { afterEach, describe, expect, it } from "vitest";
import type { DnatRule, GatePort, PortRules, WantedPortRules } from "../../driver/contracts/port-rules.js";
import { createLogger } from "../../lib/log.js";
import { PortPublisher, type PortRequest, type PublishedPort } from "../../driver/publish/port-publisher.js";
import { ProxyManager } from "../../proxy/index.js";

// PortPublisher over a real ProxyManager (loopback / wildcard sockets, ephemeral
// ports) and an in-memory PortRules that records what the kernel would be told.

const log = createLogger("silent");

/** Where the proxy would forward to; nothing here connects to it. */
const CONTAINER_IP = "127.0.0.1";
const TCP = "tcp" as const;
const UDP = "udp" as const;

const hasV6Loopback = Object.values(os.networkInterfaces())
  .flat()
  .some((a) => a?.address === "::1");
/** A non-loopback IPv4 address of this machine, if it has one. */
const externalV4 = Object.values(os.networkInterfaces())
  .flat()
  .find((a) => a !== undefined && a.family === "IPv4" && !a.internal && !a.address.startsWith("127."))?.address;

const ruleKey = (r: DnatRule): string => `${r.proto} ${r.hostIp}:${r.hostPort} -> ${r.containerIp}:${r.containerPort}`;
const gateKey = (p: GatePort): string => `${p.proto} ${p.hostIp || "*"}:${p.hostPort}`;

/** What the kernel would hold after each sync: the DNAT rules and the gate's open ports. */
class FakeRules implements PortRules {
  readonly syncs: { wanted: WantedPortRules; keepLeftovers: boolean }[] = [];
  dnat = new Map<string, DnatRule>();
  gate: string[] = [];
  /** What a previous run left: kept while restoring, gone with the first sync that does not keep leftovers. */
  leftovers: { dnat: DnatRule[]; gate: string[] } = { dnat: [], gate: [] };
  fail = false;
  /** Runs inside `sync`, before the rules change. */
  onSync: ((w: WantedPortRules) => Promise<void>) | undefined;

  async sync(wanted: () => WantedPortRules, opts: { keepLeftovers?: boolean } = {}): Promise<void> {
    await Promise.resolve();
    const w = wanted();
    await this.onSync?.(w);
    if (this.fail) throw new Error("iptables exploded");
    const keep = opts.keepLeftovers === true;
    this.syncs.push({ wanted: { dnat: w.dnat.map((r) => ({ ...r })), gate: w.gate.map((g) => ({ ...g })) }, keepLeftovers: keep });
    if (!keep) this.leftovers = { dnat: [], gate: [] };
    this.dnat = new Map([...w.dnat, ...this.leftovers.dnat].map((r) => [ruleKey(r), { ...r }]));
    this.gate = [...new Set([...w.gate.map(gateKey), ...this.leftovers.gate])].sort();
  }

  /** Every DNAT rule any sync wanted, in order, each once. */
  everWanted(): DnatRule[] {
    const seen = new Map<string, DnatRule>();
    for (const s of this.syncs) for (const r of s.wanted.dnat) if (!seen.has(ruleKey(r))) seen.set(ruleKey(r), r);
    return [...seen.values()];
  }
}

const managers: ProxyManager[] = [];
afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.closeAll()));
});

function setup(mode: "userland" | "hybrid") {
  const proxy = new ProxyManager();
  managers.push(proxy);
  const rules = new FakeRules();
  const publisher = new PortPublisher(proxy, log, { mode, rules });
  return { proxy, publisher, rules };
}

const req = (proto: "tcp" | "udp", hostIp: string, containerPort: number, hostPort = 0): PortRequest => ({
  proto,
  hostIp,
  hostPort,
  hostPortEnd: 0,
  containerPort,
});

function ok<T>(r: { ok: true; value: T } | { ok: false; error: { message: string } }): T {
  if (!r.ok) throw new Error(`expected success, got: ${r.error.message}`);
  return r.value;
}

/** Whether something accepts TCP connections on host:port right now. */
function tcpListening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect({ host, port });
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
}

/** Whether we can bind proto host:port ourselves (the port is free). */
function canBind(proto: "tcp" | "udp", host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (proto === "udp") {
      const s = dgram.createSocket({ type: net.isIPv6(host) ? "udp6" : "udp4", ipv6Only: host === "::" });
      s.once("error", () => resolve(false));
      s.bind({ address: host, port, exclusive: true }, () => s.close(() => resolve(true)));
      return;
    }
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen({ host, port, ipv6Only: host === "::" }, () => s.close(() => resolve(true)));
  });
}

const byContainerPort = (ports: PublishedPort[], containerPort: number): PublishedPort => {
  const p = ports.find((x) => x.containerPort === containerPort);
  if (p === undefined) throw new Error(`no published port for container port ${containerPort}`);
  return p;
};

describe("PortPublisher, userland mode", () => {
  it("never DNATs, shows kernelDnat false, and opens and closes the ports with one kernel change each", async () => {
    const { publisher, rules } = setup("userland");
    const ports = ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80), req(TCP, "0.0.0.0", 81), req(UDP, "", 53)]));
    expect(ports).toHaveLength(3);
    for (const p of ports) {
      expect(p.kernelDnat).toBe(false);
      expect(p.hostPort).toBeGreaterThan(0);
    }
    expect(publisher.list().map((p) => p.kernelDnat)).toEqual([false, false, false]);
    expect(rules.syncs).toHaveLength(1);
    expect(rules.gate).toHaveLength(3);
    expect(await tcpListening("127.0.0.1", byContainerPort(ports, 80).hostPort)).toBe(true);
    await publisher.revoke("ep1");
    expect(await tcpListening("127.0.0.1", byContainerPort(ports, 80).hostPort)).toBe(false);
    expect(rules.syncs).toHaveLength(2);
    expect(rules.syncs.flatMap((x) => x.wanted.dnat)).toEqual([]);
    expect(rules.gate).toEqual([]);
  });

  it("pruneFastPath ends the restore: rules a previous run left (DNAT after a switch from hybrid) go", async () => {
    const { publisher, rules } = setup("userland");
    rules.leftovers = { dnat: [{ proto: "tcp", hostIp: "", hostPort: 1, containerIp: "10.9.9.9", containerPort: 1 }], gate: ["tcp *:1"] };
    const ports = ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80)]));
    // While restoring, what the previous run left stays.
    expect(rules.syncs.map((x) => x.keepLeftovers)).toEqual([true]);
    expect(rules.dnat.size).toBe(1);
    expect(rules.gate).toEqual([`tcp *:${ports[0]!.hostPort}`, "tcp *:1"].sort());
    await publisher.pruneFastPath();
    expect(rules.syncs.map((x) => x.keepLeftovers)).toEqual([true, false]);
    expect(rules.dnat.size).toBe(0);
    expect(rules.gate).toEqual([`tcp *:${ports[0]!.hostPort}`]);
  });
});

describe("PortPublisher, another network publishing IPv6 (Docker's no_proxy_6to4)", () => {
  it('binds "" on IPv4 only and leaves IPv6 host addresses alone, so the IPv6 gateway\'s network can bind [::]', async () => {
    const { publisher } = setup("userland");
    const ports = ok(await publisher.publish("ep6", CONTAINER_IP, [req(TCP, "", 80), req(TCP, "::", 81), req(UDP, "", 53)], undefined, { ipv4Only: true }));
    expect(ports.map((p) => `${p.proto} ${p.hostIp} ${p.containerPort}`).sort()).toEqual(["tcp 0.0.0.0 80", "udp 0.0.0.0 53"]);
    const tcp = byContainerPort(ports, 80).hostPort;
    expect(await tcpListening("127.0.0.1", tcp)).toBe(true);
    if (hasV6Loopback) expect(await canBind("tcp", "::", tcp)).toBe(true);
    // Without it, "" takes both families, as Docker's own default does.
    const both = ok(await publisher.publish("ep4", CONTAINER_IP, [req(TCP, "", 80)]));
    expect(both.map((p) => p.hostIp)).toEqual([""]);
    if (hasV6Loopback) expect(await canBind("tcp", "::", both[0]!.hostPort)).toBe(false);
  });
});

describe("PortPublisher, hybrid mode", () => {
  it("needs the kernel's port rules", () => {
    expect(() => new PortPublisher(new ProxyManager(), log, { mode: "hybrid" })).toThrow(/hybrid mode needs the kernel DNAT fast path/);
  });

  it("DNATs bindings on every IPv4 address, with the port actually bound, all in one kernel change; 127.x stays on the proxy", async () => {
    const { publisher, rules, proxy } = setup("hybrid");
    const ports = ok(
      await publisher.publish("ep1", CONTAINER_IP, [
        req(TCP, "", 80),
        req(TCP, "0.0.0.0", 81),
        req(UDP, "", 53),
        req(TCP, "127.0.0.1", 82),
        req(TCP, "127.0.0.2", 83),
        req(UDP, "127.0.0.1", 84),
      ]),
    );
    const port = (cp: number): number => byContainerPort(ports, cp).hostPort;
    for (const p of ports) expect(p.hostPort).toBeGreaterThan(0);

    expect(rules.syncs).toHaveLength(1);
    expect([...rules.dnat.values()]).toEqual([
      { proto: "tcp", hostIp: "", hostPort: port(80), containerIp: CONTAINER_IP, containerPort: 80 },
      // "0.0.0.0" is "every IPv4 address": no -d in the rule.
      { proto: "tcp", hostIp: "", hostPort: port(81), containerIp: CONTAINER_IP, containerPort: 81 },
      { proto: "udp", hostIp: "", hostPort: port(53), containerIp: CONTAINER_IP, containerPort: 53 },
    ]);
    const onFastPath = { 80: true, 81: true, 53: true, 82: false, 83: false, 84: false };
    expect(Object.fromEntries(ports.map((p) => [p.containerPort, p.kernelDnat]))).toEqual(onFastPath);
    expect(Object.fromEntries(publisher.list().map((p) => [p.containerPort, p.kernelDnat]))).toEqual(onFastPath);
    // The ports in the rules are the ones the proxy holds.
    const held = new Set(proxy.list().map((a) => a.binding.hostPort));
    for (const r of rules.dnat.values()) expect(held.has(r.hostPort)).toBe(true);
    expect(await tcpListening("127.0.0.1", port(80))).toBe(true);
    expect(await tcpListening("127.0.0.1", port(81))).toBe(true);
  });

  it.runIf(hasV6Loopback)("IPv6 bindings (::1, ::) stay on the proxy", async () => {
    const { publisher, rules } = setup("hybrid");
    const ports = ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "::1", 80), req(TCP, "::", 81), req(UDP, "::", 82)]));
    expect(ports.map((p) => p.kernelDnat)).toEqual([false, false, false]);
    expect(rules.everWanted()).toEqual([]);
  });

  it.runIf(externalV4 !== undefined)("a non-loopback IPv4 host address gets a rule for that address", async () => {
    const ip = externalV4!;
    const { publisher, rules } = setup("hybrid");
    const ports = ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, ip, 80), req(UDP, ip, 53)]));
    expect([...rules.dnat.values()]).toEqual([
      { proto: "tcp", hostIp: ip, hostPort: byContainerPort(ports, 80).hostPort, containerIp: CONTAINER_IP, containerPort: 80 },
      { proto: "udp", hostIp: ip, hostPort: byContainerPort(ports, 53).hostPort, containerIp: CONTAINER_IP, containerPort: 53 },
    ]);
    expect(ports.map((p) => p.kernelDnat)).toEqual([true, true]);
  });

  it("a PROXY-protocol binding stays on the proxy (udp, which carries no header, is still DNATed)", async () => {
    const { publisher, rules } = setup("hybrid");
    const ports = ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80), req(UDP, "", 53)], "v2"));
    expect(Object.fromEntries(ports.map((p) => [p.proto, p.kernelDnat]))).toEqual({ tcp: false, udp: true });
    expect([...rules.dnat.values()]).toEqual([
      { proto: "udp", hostIp: "", hostPort: byContainerPort(ports, 53).hostPort, containerIp: CONTAINER_IP, containerPort: 53 },
    ]);
  });

  it("a kernel change that fails fails the publish, closes every listener and leaves no rule of it", async () => {
    const { publisher, rules, proxy } = setup("hybrid");
    rules.fail = true;
    const r = await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80), req(UDP, "", 81), req(TCP, "0.0.0.0", 82)]);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error).toEqual({
        cause: "kernel",
        message: "programming the published ports of ep1 in the kernel (DNAT fast path, gateway bridge's gate): iptables exploded",
      });
    }
    expect(rules.dnat.size).toBe(0);
    // Every listener is closed and every port free again.
    expect(proxy.list()).toEqual([]);
    expect(publisher.list()).toEqual([]);
    // A later publish of the endpoint works (no half-published leftovers), in one change.
    rules.fail = false;
    ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80)]));
    expect(rules.dnat.size).toBe(1);
    expect(rules.syncs).toHaveLength(1);
  });

  it("revoke removes the DNAT rules while the listeners are still open, then closes them", async () => {
    const { publisher, rules, proxy } = setup("hybrid");
    const ports = ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80), req(TCP, "127.0.0.1", 81)]));
    const hostPort = byContainerPort(ports, 80).hostPort;
    expect([...rules.dnat.values()].map((r) => r.hostPort)).toEqual([hostPort]);
    const seen: { listening: boolean; held: boolean }[] = [];
    rules.onSync = async (w) => {
      if (w.dnat.length > 0) return;
      seen.push({ listening: await tcpListening("127.0.0.1", hostPort), held: proxy.list().some((a) => a.binding.hostPort === hostPort) });
    };
    await publisher.revoke("ep1");
    expect(seen).toEqual([{ listening: true, held: true }]);
    expect(rules.syncs).toHaveLength(2);
    expect(await tcpListening("127.0.0.1", hostPort)).toBe(false);
    expect(await tcpListening("127.0.0.1", byContainerPort(ports, 81).hostPort)).toBe(false);
    expect(proxy.list()).toEqual([]);
    expect(rules.dnat.size).toBe(0);
  });

  it("re-publishing an endpoint replaces its rules", async () => {
    const { publisher, rules } = setup("hybrid");
    ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80)]));
    const again = ok(await publisher.publish("ep1", CONTAINER_IP, [req(UDP, "", 53)]));
    expect(rules.syncs.map((x) => x.wanted.dnat.map((r) => r.proto))).toEqual([["tcp"], [], ["udp"]]);
    expect([...rules.dnat.values()]).toEqual([{ proto: "udp", hostIp: "", hostPort: again[0]!.hostPort, containerIp: CONTAINER_IP, containerPort: 53 }]);
  });

  it("pruneFastPath keeps exactly the rules of what is published", async () => {
    const { publisher, rules } = setup("hybrid");
    // A rule from before a restart, which nothing publishes any more: kept while restoring.
    const stale: DnatRule = { proto: "tcp", hostIp: "", hostPort: 1, containerIp: "10.9.9.9", containerPort: 1 };
    rules.leftovers = { dnat: [stale], gate: [] };
    const a = ok(await publisher.publish("ep-a", CONTAINER_IP, [req(TCP, "", 80), req(TCP, "127.0.0.1", 81)]));
    const b = ok(await publisher.publish("ep-b", "127.0.0.2", [req(UDP, "0.0.0.0", 53), req(TCP, "", 443)]));
    const c = ok(await publisher.publish("ep-c", CONTAINER_IP, [req(TCP, "", 8080)]));
    await publisher.revoke("ep-c");
    expect(rules.dnat.has(ruleKey(stale))).toBe(true);

    await publisher.pruneFastPath();
    const expected: DnatRule[] = [
      { proto: "tcp", hostIp: "", hostPort: byContainerPort(a, 80).hostPort, containerIp: CONTAINER_IP, containerPort: 80 },
      { proto: "udp", hostIp: "", hostPort: byContainerPort(b, 53).hostPort, containerIp: "127.0.0.2", containerPort: 53 },
      { proto: "tcp", hostIp: "", hostPort: byContainerPort(b, 443).hostPort, containerIp: "127.0.0.2", containerPort: 443 },
    ];
    expect([...rules.dnat.keys()].sort()).toEqual(expected.map(ruleKey).sort());
    expect([...rules.dnat.values()].some((r) => r.hostPort === c[0]!.hostPort)).toBe(false);
  });

  it("closeAll closes the listeners but keeps the DNAT rules (the fast path outlives a restart)", async () => {
    const { publisher, rules, proxy } = setup("hybrid");
    const ports = ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80)]));
    await publisher.closeAll();
    expect(rules.syncs).toHaveLength(1);
    expect(rules.dnat.size).toBe(1);
    expect(proxy.list()).toEqual([]);
    expect(await tcpListening("127.0.0.1", ports[0]!.hostPort)).toBe(false);
    expect(publisher.list()).toEqual([]);
  });
});

describe("PortPublisher and the gateway bridge's gate (containers reach published ports of their host, nothing else)", () => {
  it("opens each published port on the IPv4 address it is bound to (not loopback, not IPv6), and closes it on revoke", async () => {
    const { publisher, rules } = setup("userland");
    const v6 = hasV6Loopback ? [req(TCP, "::1", 84)] : [];
    const ports = ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80), req(UDP, "0.0.0.0", 81), req(TCP, "127.0.0.1", 82), ...v6]));
    const at = (cp: number): number => byContainerPort(ports, cp).hostPort;
    const ep1 = [`tcp *:${at(80)}`, `udp *:${at(81)}`].sort();
    expect(rules.gate).toEqual(ep1);
    if (externalV4 !== undefined) {
      const more = ok(await publisher.publish("ep2", CONTAINER_IP, [req(TCP, externalV4, 90)]));
      expect(rules.gate).toEqual([...ep1, `tcp ${externalV4}:${more[0]!.hostPort}`].sort());
      await publisher.revoke("ep2");
    }
    expect(rules.gate).toEqual(ep1);
    await publisher.revoke("ep1");
    expect(rules.gate).toEqual([]);
  });

  it("a gate that cannot be opened fails the publish, and nothing is left listening", async () => {
    const { publisher, rules, proxy } = setup("userland");
    rules.fail = true;
    const r = await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80)]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.cause).toBe("kernel");
    expect(proxy.list()).toEqual([]);
    expect(publisher.list()).toEqual([]);
    rules.fail = false;
    ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80)]));
    expect(rules.gate).toHaveLength(1);
  });

  it("after a restart, pruneFastPath closes what the previous run left open and nothing re-published", async () => {
    const { publisher, rules } = setup("userland");
    rules.leftovers = { dnat: [], gate: ["tcp *:1", "udp *:2"] };
    await publisher.pruneFastPath();
    expect(rules.gate).toEqual([]);
  });

  it("without kernel rules (unit tests' userland), publishing still works", async () => {
    const proxy = new ProxyManager();
    managers.push(proxy);
    const publisher = new PortPublisher(proxy, log, { mode: "userland" });
    const ports = ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80)]));
    expect(await tcpListening("127.0.0.1", ports[0]!.hostPort)).toBe(true);
    await publisher.pruneFastPath();
  });
});
