import { errnoName, libc } from "../../../lib/libc.js";
import { ipToBytes } from "../../../lib/net.js";

/**
 * Raw IPv4 sockets for `tsoverlay probe` (Node has none): one that sends
 * whole IP packets we build (IPPROTO_RAW: our header, our DF bit, no
 * fragmentation by the kernel), and receivers that get a copy of every UDP
 * or ICMP packet this host receives, the kernel's VXLAN traffic included.
 * Receiving blocks on a koffi worker thread with a short SO_RCVTIMEO, so the
 * event loop never waits. Needs CAP_NET_RAW (the managed plugin has it).
 */

const AF_INET = 2;
const SOCK_RAW = 3;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SO_RCVBUF = 8;
export const IPPROTO = { icmp: 1, udp: 17, raw: 255 } as const;
const RECV_TIMEOUT_US = 50_000;

function sockaddrIn(ip: string): Buffer {
  const a = Buffer.alloc(16);
  a.writeUInt16LE(AF_INET, 0);
  Buffer.from(ipToBytes(ip)).copy(a, 4);
  return a;
}

/** A raw socket that sends whole IPv4 packets. */
export class RawSender {
  private readonly fd: number;

  constructor() {
    this.fd = libc().socket(AF_INET, SOCK_RAW, IPPROTO.raw);
    if (this.fd < 0) throw new Error(`opening a raw IPv4 socket failed: ${errnoName()} (the probe needs CAP_NET_RAW)`);
  }

  /** Sends the packet to `dst`; "too-big" when the route's MTU refuses it (DF), an Error for anything else. */
  send(packet: Buffer, dst: string): "sent" | "too-big" {
    const n = libc().sendto(this.fd, packet, packet.length, 0, sockaddrIn(dst), 16);
    if (n >= 0) return "sent";
    const name = errnoName();
    if (name === "EMSGSIZE") return "too-big";
    throw new Error(`sending a ${packet.length}-byte probe to ${dst} failed: ${name}`);
  }

  close(): void {
    libc().close(this.fd);
  }
}

/** Receives a copy of every packet of `protocol` this host gets, calling `onPacket` with it and when it arrived (performance.now()). */
export class RawReceiver {
  private readonly fd: number;
  private open = true;
  private readonly done: Promise<void>;

  constructor(protocol: number, onPacket: (packet: Buffer, at: number) => void) {
    const c = libc();
    this.fd = c.socket(AF_INET, SOCK_RAW, protocol);
    if (this.fd < 0) throw new Error(`opening a raw IPv4 socket failed: ${errnoName()} (the probe needs CAP_NET_RAW)`);
    const tv = Buffer.alloc(16);
    tv.writeBigInt64LE(0n, 0);
    tv.writeBigInt64LE(BigInt(RECV_TIMEOUT_US), 8);
    c.setsockopt(this.fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16);
    const size = Buffer.alloc(4);
    size.writeInt32LE(4 << 20, 0);
    c.setsockopt(this.fd, SOL_SOCKET, SO_RCVBUF, size, 4);
    this.done = this.loop(onPacket);
  }

  private async loop(onPacket: (packet: Buffer, at: number) => void): Promise<void> {
    const buf = Buffer.alloc(65_536);
    while (this.open) {
      const asked = performance.now();
      const n = await new Promise<number>((resolve) => libc().recv.async(this.fd, buf, buf.length, 0, (err, got) => resolve(err ? -1 : got)));
      const at = performance.now();
      if (n > 0 && this.open) onPacket(Buffer.from(buf.subarray(0, n)), at);
      // -1 after SO_RCVTIMEO is the normal pause; one that comes at once is a broken socket: do not spin.
      else if (n < 0 && at - asked < 5) await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Stops receiving; resolves once the worker's last wait has ended. */
  async close(): Promise<void> {
    this.open = false;
    await this.done;
    libc().close(this.fd);
  }
}
