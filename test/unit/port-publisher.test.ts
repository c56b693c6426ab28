import dgram from "node:dgram";
import net from "node:net";
import os from "node:os";
import { afterEach, describe, expect, it } from "vitest";
import type { DnatRule } from "../../driver/contracts/dnat.js";
import type { GatePort, HostPortGate } from "../../driver/contracts/host-gate.js";
import { createLogger } from "../../lib/log.js";
import { PortPublisher, type DnatPort, type PortRequest, type PublishedPort } from "../../driver/publish/port-publisher.js";
import { ProxyManager } from "../../proxy/index.js";

// PortPublisher over a real ProxyManager (loopback / wildcard sockets, ephemeral
// ports) and an in-memory DnatPort that records what the kernel would be told.

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

type Call = { op: "add" | "remove"; rule: DnatRule } | { op: "prune"; keep: DnatRule[] };

class FakeDnat implements DnatPort {
  readonly calls: Call[] = [];
  /** What the kernel would hold. */
  readonly rules = new Map<string, DnatRule>();
  failOn: ((r: DnatRule) => boolean) | undefined;
  /** Runs inside `remove`, before the rule is taken out. */
  onRemove: ((r: DnatRule) => Promise<void>) | undefined;

  async add(rule: DnatRule): Promise<void> {
    this.calls.push({ op: "add", rule: { ...rule } });
    await Promise.resolve();
    if (this.failOn?.(rule)) throw new Error("iptables exploded");
    this.rules.set(ruleKey(rule), { ...rule });
  }

  async remove(rule: DnatRule): Promise<void> {
    this.calls.push({ op: "remove", rule: { ...rule } });
    await this.onRemove?.(rule);
    this.rules.delete(ruleKey(rule));
  }

  async prune(keep: readonly DnatRule[]): Promise<void> {
    this.calls.push({ op: "prune", keep: keep.map((r) => ({ ...r })) });
    const wanted = new Set(keep.map(ruleKey));
    for (const k of [...this.rules.keys()]) if (!wanted.has(k)) this.rules.delete(k);
  }

  ops(): string[] {
    return this.calls.map((c) => c.op);
  }

  added(): DnatRule[] {
    return this.calls.flatMap((c) => (c.op === "add" ? [c.rule] : []));
  }
}

const managers: ProxyManager[] = [];
afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.closeAll()));
});

function setup(mode: "userland" | "hybrid", dnat: FakeDnat | undefined = new FakeDnat()) {
  const proxy = new ProxyManager();
  managers.push(proxy);
  const publisher = new PortPublisher(proxy, log, { mode, dnat });
  return { proxy, publisher, dnat: dnat };
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
  it("never touches the kernel fast path, even when given one, and shows kernelDnat false", async () => {
    const { publisher, dnat } = setup("userland");
    const ports = ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80), req(TCP, "0.0.0.0", 81), req(UDP, "", 53)]));
    expect(ports).toHaveLength(3);
    for (const p of ports) {
      expect(p.kernelDnat).toBe(false);
      expect(p.hostPort).toBeGreaterThan(0);
    }
    expect(publisher.list().map((p) => p.kernelDnat)).toEqual([false, false, false]);
    expect(await tcpListening("127.0.0.1", byContainerPort(ports, 80).hostPort)).toBe(true);
    await publisher.revoke("ep1");
    expect(await tcpListening("127.0.0.1", byContainerPort(ports, 80).hostPort)).toBe(false);
    expect(dnat.calls).toEqual([]);
  });

  it("pruneFastPath(dnat) keeps nothing: switching from hybrid to userland clears the rules", async () => {
    const { publisher, dnat } = setup("userland");
    ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80)]));
    await publisher.pruneFastPath(dnat);
    expect(dnat.calls).toEqual([{ op: "prune", keep: [] }]);
    // Without an explicit port there is none to prune in userland mode.
    await publisher.pruneFastPath();
    expect(dnat.calls).toHaveLength(1);
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
  it("needs a DnatPort", () => {
    expect(() => new PortPublisher(new ProxyManager(), log, { mode: "hybrid" })).toThrow(/hybrid mode needs the kernel DNAT fast path/);
  });

  it("DNATs bindings on every IPv4 address, with the port actually bound; 127.x stays on the proxy", async () => {
    const { publisher, dnat, proxy } = setup("hybrid");
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

    expect(dnat.ops()).toEqual(["add", "add", "add"]);
    expect(dnat.added()).toEqual([
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
    for (const r of dnat.added()) expect(held.has(r.hostPort)).toBe(true);
    expect(await tcpListening("127.0.0.1", port(80))).toBe(true);
    expect(await tcpListening("127.0.0.1", port(81))).toBe(true);
  });

  it.runIf(hasV6Loopback)("IPv6 bindings (::1, ::) stay on the proxy", async () => {
    const { publisher, dnat } = setup("hybrid");
    const ports = ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "::1", 80), req(TCP, "::", 81), req(UDP, "::", 82)]));
    expect(ports.map((p) => p.kernelDnat)).toEqual([false, false, false]);
    expect(dnat.calls).toEqual([]);
  });

  it.runIf(externalV4 !== undefined)("a non-loopback IPv4 host address gets a rule for that address", async () => {
    const ip = externalV4!;
    const { publisher, dnat } = setup("hybrid");
    const ports = ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, ip, 80), req(UDP, ip, 53)]));
    expect(dnat.added()).toEqual([
      { proto: "tcp", hostIp: ip, hostPort: byContainerPort(ports, 80).hostPort, containerIp: CONTAINER_IP, containerPort: 80 },
      { proto: "udp", hostIp: ip, hostPort: byContainerPort(ports, 53).hostPort, containerIp: CONTAINER_IP, containerPort: 53 },
    ]);
    expect(ports.map((p) => p.kernelDnat)).toEqual([true, true]);
  });

  it("a PROXY-protocol binding stays on the proxy (udp, which carries no header, is still DNATed)", async () => {
    const { publisher, dnat } = setup("hybrid");
    const ports = ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80), req(UDP, "", 53)], "v2"));
    expect(Object.fromEntries(ports.map((p) => [p.proto, p.kernelDnat]))).toEqual({ tcp: false, udp: true });
    expect(dnat.added()).toEqual([{ proto: "udp", hostIp: "", hostPort: byContainerPort(ports, 53).hostPort, containerIp: CONTAINER_IP, containerPort: 53 }]);
  });

  it("a failing dnat.add fails the publish naming the binding, closes the listeners and removes the rules already added", async () => {
    const { publisher, dnat, proxy } = setup("hybrid");
    dnat.failOn = (r) => r.containerPort === 82;
    const r = await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80), req(UDP, "", 81), req(TCP, "0.0.0.0", 82), req(TCP, "", 83)]);
    expect(r.ok).toBe(false);
    const failedRule = dnat.added().find((x) => x.containerPort === 82)!;
    expect(failedRule).toBeDefined();
    if (!r.ok) {
      expect(r.error).toEqual({ cause: "kernel", message: `publishing tcp/0.0.0.0:${failedRule.hostPort} on the kernel fast path: iptables exploded` });
    }
    // Nothing after the failing binding was attempted; the two before were undone.
    expect(dnat.added().map((x) => x.containerPort)).toEqual([80, 81, 82]);
    const removed = dnat.calls.flatMap((c) => (c.op === "remove" ? [c.rule.containerPort] : []));
    expect(removed.sort()).toEqual([80, 81]);
    expect([...dnat.rules.values()]).toEqual([]);
    // Every listener is closed and every port free again.
    expect(proxy.list()).toEqual([]);
    expect(publisher.list()).toEqual([]);
    for (const x of dnat.added()) {
      if (x.proto === "tcp") expect(await tcpListening("127.0.0.1", x.hostPort)).toBe(false);
      expect(await canBind(x.proto, "0.0.0.0", x.hostPort)).toBe(true);
      if (hasV6Loopback) expect(await canBind(x.proto, "::", x.hostPort)).toBe(true);
    }
    // A later publish of the endpoint works (no half-published leftovers).
    dnat.failOn = undefined;
    ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80)]));
    expect(dnat.rules.size).toBe(1);
  });

  it("revoke removes the DNAT rule while the listener is still open, then closes it", async () => {
    const { publisher, dnat, proxy } = setup("hybrid");
    const ports = ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80), req(TCP, "127.0.0.1", 81)]));
    const hostPort = byContainerPort(ports, 80).hostPort;
    const seen: { listening: boolean; held: boolean }[] = [];
    dnat.onRemove = async (r) => {
      seen.push({
        listening: await tcpListening("127.0.0.1", r.hostPort),
        held: proxy.list().some((a) => a.binding.hostPort === r.hostPort),
      });
    };
    await publisher.revoke("ep1");
    expect(seen).toEqual([{ listening: true, held: true }]);
    expect(dnat.calls.filter((c) => c.op === "remove")).toEqual([
      { op: "remove", rule: { proto: "tcp", hostIp: "", hostPort, containerIp: CONTAINER_IP, containerPort: 80 } },
    ]);
    expect(await tcpListening("127.0.0.1", hostPort)).toBe(false);
    expect(await tcpListening("127.0.0.1", byContainerPort(ports, 81).hostPort)).toBe(false);
    expect(proxy.list()).toEqual([]);
    expect(dnat.rules.size).toBe(0);
  });

  it("re-publishing an endpoint replaces its rules", async () => {
    const { publisher, dnat } = setup("hybrid");
    ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80)]));
    const first = dnat.added()[0]!;
    const again = ok(await publisher.publish("ep1", CONTAINER_IP, [req(UDP, "", 53)]));
    expect(dnat.ops()).toEqual(["add", "remove", "add"]);
    expect([...dnat.rules.values()]).toEqual([{ proto: "udp", hostIp: "", hostPort: again[0]!.hostPort, containerIp: CONTAINER_IP, containerPort: 53 }]);
    expect(dnat.calls[1]).toEqual({ op: "remove", rule: first });
  });

  it("pruneFastPath keeps exactly the rules of what is published", async () => {
    const { publisher, dnat } = setup("hybrid");
    const a = ok(await publisher.publish("ep-a", CONTAINER_IP, [req(TCP, "", 80), req(TCP, "127.0.0.1", 81)]));
    const b = ok(await publisher.publish("ep-b", "127.0.0.2", [req(UDP, "0.0.0.0", 53), req(TCP, "", 443)]));
    const c = ok(await publisher.publish("ep-c", CONTAINER_IP, [req(TCP, "", 8080)]));
    await publisher.revoke("ep-c");
    // A stale rule from before a restart, which nothing published any more.
    const stale: DnatRule = { proto: "tcp", hostIp: "", hostPort: 1, containerIp: "10.9.9.9", containerPort: 1 };
    dnat.rules.set(ruleKey(stale), stale);

    await publisher.pruneFastPath();
    const prune = dnat.calls.at(-1)!;
    expect(prune.op).toBe("prune");
    const keep = prune.op === "prune" ? prune.keep : [];
    const expected: DnatRule[] = [
      { proto: "tcp", hostIp: "", hostPort: byContainerPort(a, 80).hostPort, containerIp: CONTAINER_IP, containerPort: 80 },
      { proto: "udp", hostIp: "", hostPort: byContainerPort(b, 53).hostPort, containerIp: "127.0.0.2", containerPort: 53 },
      { proto: "tcp", hostIp: "", hostPort: byContainerPort(b, 443).hostPort, containerIp: "127.0.0.2", containerPort: 443 },
    ];
    expect(keep.map(ruleKey).sort()).toEqual(expected.map(ruleKey).sort());
    expect(keep.some((r) => r.hostPort === c[0]!.hostPort)).toBe(false);
    expect([...dnat.rules.keys()].sort()).toEqual(expected.map(ruleKey).sort());
  });

  it("closeAll closes the listeners but keeps the DNAT rules (the fast path outlives a restart)", async () => {
    const { publisher, dnat, proxy } = setup("hybrid");
    const ports = ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80)]));
    await publisher.closeAll();
    expect(dnat.ops()).toEqual(["add"]);
    expect(dnat.rules.size).toBe(1);
    expect(proxy.list()).toEqual([]);
    expect(await tcpListening("127.0.0.1", ports[0]!.hostPort)).toBe(false);
    expect(publisher.list()).toEqual([]);
  });
});

/** What the gateway bridge's gate would hold: the ports it was last told to open. */
class FakeGate implements HostPortGate {
  open: string[] = [];
  syncs = 0;
  fail = false;

  async sync(wanted: () => readonly GatePort[]): Promise<void> {
    this.syncs++;
    await Promise.resolve();
    if (this.fail) throw new Error("iptables exploded");
    this.open = wanted()
      .map((p) => `${p.proto} ${p.hostIp || "*"}:${p.hostPort}`)
      .sort();
  }
}

describe("PortPublisher and the gateway bridge's gate (containers reach published ports of their host, nothing else)", () => {
  function gated() {
    const proxy = new ProxyManager();
    managers.push(proxy);
    const gate = new FakeGate();
    return { proxy, gate, publisher: new PortPublisher(proxy, log, { mode: "userland", gate }) };
  }

  it("opens each published port on the IPv4 address it is bound to (not loopback, not IPv6), and closes it on revoke", async () => {
    const { publisher, gate } = gated();
    const v6 = hasV6Loopback ? [req(TCP, "::1", 84)] : [];
    const ports = ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80), req(UDP, "0.0.0.0", 81), req(TCP, "127.0.0.1", 82), ...v6]));
    const at = (cp: number): number => byContainerPort(ports, cp).hostPort;
    const ep1 = [`tcp *:${at(80)}`, `udp *:${at(81)}`].sort();
    expect(gate.open).toEqual(ep1);
    if (externalV4 !== undefined) {
      const more = ok(await publisher.publish("ep2", CONTAINER_IP, [req(TCP, externalV4, 90)]));
      expect(gate.open).toEqual([...ep1, `tcp ${externalV4}:${more[0]!.hostPort}`].sort());
      await publisher.revoke("ep2");
    }
    expect(gate.open).toEqual(ep1);
    await publisher.revoke("ep1");
    expect(gate.open).toEqual([]);
  });

  it("a gate that cannot be opened fails the publish, and nothing is left listening", async () => {
    const { publisher, gate, proxy } = gated();
    gate.fail = true;
    const r = await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80)]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toEqual({ cause: "kernel", message: "opening the published ports of ep1 to containers: iptables exploded" });
    expect(proxy.list()).toEqual([]);
    expect(publisher.list()).toEqual([]);
    gate.fail = false;
    ok(await publisher.publish("ep1", CONTAINER_IP, [req(TCP, "", 80)]));
    expect(gate.open).toHaveLength(1);
  });

  it("after a restart, pruneFastPath closes what the previous run left open and nothing re-published", async () => {
    const { publisher, gate } = gated();
    gate.open = ["tcp *:1", "udp *:2"]; // what the previous run left
    await publisher.pruneFastPath();
    expect(gate.open).toEqual([]);
  });
});
