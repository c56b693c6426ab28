import { describe, expect, it } from "vitest";
import { hear, MIN_PROBE_SIZE, plainPing, vxlanProbe } from "../../driver/kernel/probe/probe-packets.js";
import type { ProbeOutcome } from "../../driver/kernel/probe/vxlan-prober.js";
import { decodeIpv4, decodeVxlanDatagram, encodeIpv4, encodeVxlanDatagram, internetChecksum } from "../../driver/kernel/vxlan-codec.js";
import { runProbe, type ProbeInputs } from "../../plugin/compose/probe.js";
import { clocks, pluginState } from "../../plugin/compose/doctor.js";
import type { ClusterSnapshot } from "../../driver/cluster/cluster-view.js";

const SPEC = {
  srcVtep: "198.18.0.11",
  dstVtep: "198.18.0.12",
  port: 4789,
  srcPort: 50000,
  vni: 4242,
  innerSrcIp: "10.9.0.2",
  innerSrcMac: "02:42:0a:09:00:02",
  innerDstIp: "10.9.0.1",
  id: 7,
  seq: 99,
  size: 1500,
};

/** The peer's answer as its kernel would send it: echo reply from the gateway to the endpoint, in VXLAN to our VTEP. */
function replyFromPeer(id: number, seq: number): Buffer {
  const icmp = Buffer.alloc(16);
  icmp.writeUInt16BE(id, 4);
  icmp.writeUInt16BE(seq, 6);
  icmp.writeUInt16BE(internetChecksum(icmp), 2);
  const d = encodeVxlanDatagram({
    vni: SPEC.vni,
    ethernet: { dst: SPEC.innerSrcMac, src: "02:00:00:00:00:01" },
    ipv4: { src: SPEC.innerDstIp, dst: SPEC.innerSrcIp, protocol: 1 },
    payload: icmp,
  });
  if (!d.ok) throw new Error(d.error);
  const udp = Buffer.alloc(8 + d.value.length);
  udp.writeUInt16BE(41000, 0);
  udp.writeUInt16BE(4789, 2);
  udp.writeUInt16BE(udp.length, 4);
  d.value.copy(udp, 8);
  const ip = encodeIpv4({ src: SPEC.dstVtep, dst: SPEC.srcVtep, protocol: 17 }, udp);
  if (!ip.ok) throw new Error(ip.error);
  return ip.value;
}

describe("probe packets", () => {
  it("a VXLAN probe is exactly the asked size, DF set, with the network's VNI and an echo request to the gateway inside", () => {
    const p = vxlanProbe(SPEC);
    expect(p.length).toBe(1500);
    const outer = decodeIpv4(p);
    expect(outer.ok && outer.value.value.dontFragment && outer.value.value.identification).toBe(99);
    const inner = decodeVxlanDatagram(outer.ok ? outer.value.rest.subarray(8) : Buffer.alloc(0));
    expect(inner.ok && [inner.value.vni, inner.value.ethernet.dst, inner.value.ipv4?.dst, inner.value.payload[0]]).toEqual([
      4242,
      "ff:ff:ff:ff:ff:ff",
      "10.9.0.1",
      8,
    ]);
    expect(vxlanProbe({ ...SPEC, size: MIN_PROBE_SIZE }).length).toBe(MIN_PROBE_SIZE);
  });

  it("recognises the peer's VXLAN reply, a ping reply, and an ICMP error quoting a probe (with the MTU it allows); ignores the rest", () => {
    const probe = { id: 7, vni: 4242, port: 4789, peer: SPEC.dstVtep };
    expect(hear(replyFromPeer(7, 99), probe)).toEqual({ kind: "vxlan-reply", from: SPEC.dstVtep, seq: 99 });
    expect(hear(replyFromPeer(8, 99), probe)).toBeUndefined();
    expect(hear(replyFromPeer(7, 99), { ...probe, vni: 1 })).toBeUndefined();

    // A ping reply is the request with type 0 (and its checksum fixed), from the peer.
    const req = plainPing(SPEC.srcVtep, SPEC.dstVtep, 7, 5);
    const body = Buffer.from(req.subarray(20));
    body[0] = 0;
    body.writeUInt16BE(0, 2);
    body.writeUInt16BE(internetChecksum(body), 2);
    const reply = encodeIpv4({ src: SPEC.dstVtep, dst: SPEC.srcVtep, protocol: 1 }, body);
    expect(reply.ok && hear(reply.value, probe)).toEqual({ kind: "ping-reply", from: SPEC.dstVtep, seq: 5 });

    // A router's "fragmentation needed, next hop MTU 1400", quoting the probe's first bytes.
    const err = Buffer.alloc(8 + 28);
    err[0] = 3;
    err[1] = 4;
    err.writeUInt16BE(1400, 6);
    vxlanProbe(SPEC).copy(err, 8, 0, 28);
    const icmp = encodeIpv4({ src: "198.18.0.1", dst: SPEC.srcVtep, protocol: 1 }, err);
    expect(icmp.ok && hear(icmp.value, probe)).toEqual({ kind: "unreachable", from: "198.18.0.1", to: SPEC.dstVtep, port: 4789, code: 4, mtu: 1400, seq: 99 });
  });
});

function hostView(vtep: string, hostname: string, endpoints: number): ClusterSnapshot["hosts"][number] {
  return { hostId: vtep, vtep, hostname, alive: true, startedAt: null, goneSince: null, pluginVersion: null, dockerVersion: null, endpoints };
}

const SNAP: ClusterSnapshot = {
  self: "198.18.0.11",
  at: "t",
  hosts: [hostView("198.18.0.11", "h1", 1), hostView("198.18.0.12", "h2", 1), hostView("198.18.0.13", "h3", 0)],
  networks: [{ names: ["net"], subnet: "10.9.0.0/24", vni: 4242, gateway: "10.9.0.1/24", internal: false, mtu: null, hosts: [], endpoints: 2 }],
  endpoints: [
    {
      network: "net",
      subnet: "10.9.0.0/24",
      endpointId: "a",
      hostId: "198.18.0.11",
      vtep: "198.18.0.11",
      alive: true,
      ip: "10.9.0.2",
      mac: "02:42:0a:09:00:02",
      name: "a",
      names: [],
      ports: [],
    },
    {
      network: "net",
      subnet: "10.9.0.0/24",
      endpointId: "b",
      hostId: "198.18.0.12",
      vtep: "198.18.0.12",
      alive: true,
      ip: "10.9.0.3",
      mac: "02:42:0a:09:00:03",
      name: "b",
      names: [],
      ports: [],
    },
  ],
};

/** A path scripted by outer size; the underlay here is `lo` (ifindex 1, MTU 65536), so the search starts high. */
function inputs(target: string, vxlan: (size: number) => ProbeOutcome, ping: ProbeOutcome = { kind: "timeout" }): ProbeInputs {
  return {
    target,
    network: undefined,
    snapshot: SNAP,
    vtep: "198.18.0.11",
    vxlanPort: 4789,
    underlay: { ifindex: 1, mtuAtStart: 1500 },
    localEndpoints: [{ endpointId: "a", networkId: "n", subnet: "10.9.0.0/24", addressCidr: "10.9.0.2/24", mac: "02:42:0a:09:00:02" }],
    localNetworks: [],
    open: () => ({ vxlan: async (size) => vxlan(size), ping: async () => ping, close: async () => undefined }),
  };
}

describe("tsoverlay doctor's clock check", () => {
  it("warns about a host whose clock is outside the asking window by more than 2 s, and only then", async () => {
    const reading = (hostId: string, at: number) => ({ hostId, at, askedAt: 10_000, seenAt: 10_300 });
    expect(await clocks({ clocks: async () => [reading("a", 10_100), reading("b", 8_500), reading("c", 12_000)] })).toEqual([
      { check: "clock", status: "ok", detail: "3 host(s) within 2 s of this one" },
    ]);
    const [f] = await clocks({ clocks: async () => [reading("a", 10_100), reading("b", 4_000), reading("c", 15_300)] });
    expect(f).toMatchObject({ status: "warn", detail: expect.stringContaining("b behind by 6.0 s, c ahead by 5.0 s") });
  });
});

describe("tsoverlay doctor's teardown check", () => {
  const status =
    (
      pendingTeardown: number,
      failingTeardown: { seq: number; op: "withdraw-endpoint"; network: string; attempts: number; error: string; retryInMs: number }[],
    ) =>
    async () => ({
      pendingTeardown,
      failingTeardown,
      storeCondition: undefined,
      names: { serving: true, address: "100.72.0.1:53" },
    });

  it("names a failing step as a problem, with its network, its error and when it is tried again; a queue waiting for the store is a warning", async () => {
    const failing = [{ seq: 7, op: "withdraw-endpoint" as const, network: "10.9.0.0/24", attempts: 4, error: "permission denied", retryInMs: 7_500 }];
    const found = await pluginState({ status: status(3, failing) });
    expect(found[0]).toMatchObject({
      check: "failing teardown",
      status: "problem",
      detail: expect.stringMatching(/^the withdraw-endpoint step of network 10\.9\.0\.0\/24 failed 4 time\(s\): permission denied; it is tried again in 8 s/),
    });
    expect(found[1]).toMatchObject({ check: "queued teardown", status: "info", detail: "3 teardown step(s) pending, 1 of them failing (see above)" });
    expect((await pluginState({ status: status(2, []) }))[0]).toMatchObject({ check: "queued teardown", status: "warn" });
    expect((await pluginState({ status: status(0, []) }))[0]).toMatchObject({ check: "queued teardown", status: "ok" });
  });
});

describe("tsoverlay probe's verdicts", () => {
  it("ok when the path carries what the network needs; MTU too small when a router quotes less, or when large probes go unanswered", async () => {
    const ok = await runProbe(
      inputs("198.18.0.12", (s) => (s <= 1500 ? { kind: "reply", rttMs: 0.2 } : { kind: "frag-needed", mtu: 1500, from: "198.18.0.1" })),
    );
    expect([ok.verdict, ok.pathMtu, ok.neededMtu]).toEqual(["ok", 1500, 1500]);
    expect(ok.rttMs?.avg).toBeCloseTo(0.2);
    const quoted = await runProbe(
      inputs("10.9.0.3", (s) => (s <= 1400 ? { kind: "reply", rttMs: 0.3 } : { kind: "frag-needed", mtu: 1400, from: "198.18.0.1" })),
    );
    expect([quoted.verdict, quoted.pathMtu]).toEqual(["mtu-too-small", 1400]);
    expect(quoted.summary).toMatch(/^MTU too small: the path to 198\.18\.0\.12 carries at most 1400-byte packets, the network needs 1500/);
    const silent = await runProbe(inputs("h2", (s) => (s <= 1372 ? { kind: "reply", rttMs: 0.3 } : { kind: "timeout" })));
    expect([silent.verdict, silent.pathMtu]).toEqual(["mtu-too-small", 1372]);
  });

  it("UDP 4789 blocked (the host answers ping, or a firewall says so), peer not answering (nothing answers)", async () => {
    const dropped = await runProbe(inputs("198.18.0.12", () => ({ kind: "timeout" }), { kind: "reply", rttMs: 0.1 }));
    expect(dropped.verdict).toBe("udp-blocked");
    expect(dropped.summary).toMatch(/^UDP 4789 blocked: 198\.18\.0\.12 answers ping, but VXLAN/);
    const rejected = await runProbe(inputs("198.18.0.12", () => ({ kind: "unreachable", code: 13, from: "198.18.0.1" })));
    expect(rejected.summary).toBe("UDP 4789 to 198.18.0.12 blocked: 198.18.0.1 answers administratively prohibited (a firewall rejects it)");
    const gone = await runProbe(inputs("198.18.0.12", () => ({ kind: "timeout" })));
    expect([gone.verdict, gone.summary]).toEqual(["peer-not-answering", "peer not answering: 198.18.0.12 answers neither VXLAN on port 4789 nor ping"]);
  });

  it("refuses an unknown target, this host, and a peer without containers on the network, with words that say so", async () => {
    const never = (): ProbeOutcome => ({ kind: "timeout" });
    await expect(runProbe(inputs("198.18.0.99", never))).rejects.toThrow("no host or container address 198.18.0.99 in the cluster");
    await expect(runProbe(inputs("198.18.0.11", never))).rejects.toThrow("is this host");
    await expect(runProbe(inputs("198.18.0.13", never))).rejects.toThrow(/no network has containers both on this host and on 198\.18\.0\.13/);
  });
});
