/**
 * Whole Ethernet frames sent out of one interface (Node has no AF_PACKET):
 * for frames the datapath builds itself, header included, such as the peer
 * announcements of datapath/peer-announce.ts. The socket is opened inside a
 * network namespace and stays bound to it for its life (see netns.ts), so
 * sends from outside still leave through that namespace's interfaces. It
 * receives nothing (protocol 0), and a send never waits (MSG_DONTWAIT): a
 * full queue is an error, not a pause of the event loop. Needs CAP_NET_RAW
 * (the managed plugin has it).
 */
import { errno, errnoName, libc } from "../../lib/libc.js";
import { runInNetns } from "./netns.js";

const AF_PACKET = 17;
const SOCK_RAW = 3;
const MSG_DONTWAIT = 0x40;
/** struct sockaddr_ll: family, protocol (network order), ifindex, hatype, pkttype, halen, addr[8]. */
const SOCKADDR_LL_LENGTH = 20;

export class PacketSender {
  private constructor(
    private readonly fd: number,
    private readonly nsPath: string,
  ) {}

  /** A sender for the interfaces of the namespace at `nsPath`; throws (with errno's name) when the socket cannot be had. */
  static openIn(nsPath: string): PacketSender {
    // errno is read inside: switching back calls the C library again.
    const opened = runInNetns(nsPath, () => {
      const fd = libc().socket(AF_PACKET, SOCK_RAW, 0);
      return { fd, errno: fd < 0 ? errno() : 0 };
    });
    if (opened.fd < 0) throw new Error(`netns ${nsPath}: opening a packet socket failed: ${errnoName(opened.errno)} (it needs CAP_NET_RAW)`);
    return new PacketSender(opened.fd, nsPath);
  }

  /** Sends `frame` (Ethernet header first, its type `ethertype`) out of the link `ifindex`; throws when the kernel refuses it. */
  send(ifindex: number, ethertype: number, frame: Buffer): void {
    const to = Buffer.alloc(SOCKADDR_LL_LENGTH);
    to.writeUInt16LE(AF_PACKET, 0);
    to.writeUInt16BE(ethertype, 2);
    to.writeInt32LE(ifindex, 4);
    const n = libc().sendto(this.fd, frame, frame.length, MSG_DONTWAIT, to, SOCKADDR_LL_LENGTH);
    if (n < 0) throw new Error(`netns ${this.nsPath}: sending a ${frame.length}-byte frame out of link #${ifindex} failed: ${errnoName()}`);
  }

  close(): void {
    libc().close(this.fd);
  }
}
