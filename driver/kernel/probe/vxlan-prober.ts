import { hear, plainPing, vxlanProbe, type Heard } from "./probe-packets.js";
import { IPPROTO, RawReceiver, RawSender } from "./raw-sockets.js";

/**
 * One probe at a time to one peer VTEP, each answered by what came back for
 * its sequence number: a VXLAN echo reply, a plain ping reply, an ICMP
 * error about it (frag needed with the MTU the path allows, port
 * unreachable, prohibited), a local refusal (larger than this host's route
 * MTU), or nothing before the timeout.
 */

export interface ProbePath {
  /** This host's VTEP address and the peer's. */
  vtep: string;
  peer: string;
  port: number;
  vni: number;
  /** One of this host's endpoints on the network: the inner source the peer answers to. */
  inner: { ip: string; mac: string };
  /** The network's gateway address: the peer's br0, which answers. */
  gateway: string;
}

export type ProbeOutcome =
  | { kind: "reply"; rttMs: number }
  | { kind: "too-big-here" }
  | { kind: "frag-needed"; mtu: number; from: string }
  | { kind: "unreachable"; code: number; from: string }
  | { kind: "timeout" };

export class VxlanProber {
  private readonly sender = new RawSender();
  private readonly receivers: RawReceiver[];
  private readonly waiting = new Map<number, (h: Heard, at: number) => void>();
  private readonly id = Math.floor(Math.random() * 0xffff);
  private readonly srcPort = 49152 + Math.floor(Math.random() * 16000);
  private seq = Math.floor(Math.random() * 0xffff);

  constructor(private readonly path: ProbePath) {
    const onPacket = (packet: Buffer, at: number): void => {
      const h = hear(packet, { id: this.id, vni: path.vni, port: path.port, peer: path.peer });
      if (h !== undefined) this.waiting.get(h.seq)?.(h, at);
    };
    this.receivers = [new RawReceiver(IPPROTO.udp, onPacket), new RawReceiver(IPPROTO.icmp, onPacket)];
  }

  /** A VXLAN echo whose outer packet is `size` bytes. */
  vxlan(size: number, timeoutMs: number): Promise<ProbeOutcome> {
    const seq = this.next();
    const p = this.path;
    const packet = vxlanProbe({
      srcVtep: p.vtep,
      dstVtep: p.peer,
      port: p.port,
      srcPort: this.srcPort,
      vni: p.vni,
      innerSrcIp: p.inner.ip,
      innerSrcMac: p.inner.mac,
      innerDstIp: p.gateway,
      id: this.id,
      seq,
      size,
    });
    return this.exchange(seq, packet, timeoutMs);
  }

  /** A plain ICMP echo to the peer's VTEP address. */
  ping(timeoutMs: number): Promise<ProbeOutcome> {
    const seq = this.next();
    return this.exchange(seq, plainPing(this.path.vtep, this.path.peer, this.id, seq), timeoutMs);
  }

  async close(): Promise<void> {
    this.sender.close();
    await Promise.all(this.receivers.map((r) => r.close()));
  }

  private next(): number {
    this.seq = (this.seq + 1) & 0xffff;
    return this.seq;
  }

  private exchange(seq: number, packet: Buffer, timeoutMs: number): Promise<ProbeOutcome> {
    return new Promise((resolve) => {
      let sentAt = 0;
      const timer = setTimeout(() => finish({ kind: "timeout" }), timeoutMs);
      const finish = (o: ProbeOutcome): void => {
        clearTimeout(timer);
        this.waiting.delete(seq);
        resolve(o);
      };
      this.waiting.set(seq, (h, at) => {
        if (h.kind === "unreachable")
          finish(h.code === 4 && h.mtu !== undefined ? { kind: "frag-needed", mtu: h.mtu, from: h.from } : { kind: "unreachable", code: h.code, from: h.from });
        else finish({ kind: "reply", rttMs: at - sentAt });
      });
      sentAt = performance.now();
      try {
        if (this.sender.send(packet, this.path.peer) === "too-big") finish({ kind: "too-big-here" });
      } catch (e) {
        clearTimeout(timer);
        this.waiting.delete(seq);
        throw e;
      }
    });
  }
}
