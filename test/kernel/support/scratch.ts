/**
 * What the kernel tests share: throwaway `tsk-*` namespaces under a temp dir
 * (with the rtnetlink sockets opened in them), and `ip`/`ping` through nsenter
 * to verify what the code under test did.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { RtNetlinkSocket } from "netlink";
import { createNamedNetns, deleteNamedNetns, openRtnetlinkIn } from "../../../driver/kernel/netns.js";

/** The inode of the calling thread's network namespace: no call may leave the test elsewhere. */
export const selfNetnsIno = (): number => fs.statSync("/proc/thread-self/ns/net").ino;

export function inNs(ns: string, cmd: string, ...args: string[]): string {
  return execFileSync("nsenter", [`--net=${ns}`, cmd, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

// iproute2's JSON output; only the fields the assertions read are typed.
export interface IpLink {
  ifname: string;
  ifindex: number;
  mtu: number;
  master?: string;
  address?: string;
  operstate?: string;
  flags: string[];
  linkinfo?: {
    info_kind?: string;
    info_data?: Record<string, unknown>;
    info_slave_kind?: string;
    info_slave_data?: { isolated?: boolean };
  };
}
export const ipLinks = (ns: string): IpLink[] => JSON.parse(inNs(ns, "ip", "-d", "-j", "link", "show")) as IpLink[];
export const ipLink = (ns: string, name: string): IpLink | undefined => ipLinks(ns).find((l) => l.ifname === name);

export function pingOk(ns: string, ip: string, attempts = 3, waitSeconds = 1): boolean {
  for (let i = 0; i < attempts; i++) {
    try {
      inNs(ns, "ping", "-c1", `-W${waitSeconds}`, ip);
      return true;
    } catch {
      /* retry */
    }
  }
  return false;
}

/** Namespaces and sockets a test file made, so that it can remove them all. */
export class Scratch {
  readonly created: string[] = [];
  readonly sockets: RtNetlinkSocket[] = [];
  private dir: string | undefined;

  constructor(private readonly prefix: string) {}

  /** Makes the temp dir (call in beforeAll). */
  init(): string {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), this.prefix));
    return this.dir;
  }

  get tmp(): string {
    if (this.dir === undefined) throw new Error("Scratch.init() was not called");
    return this.dir;
  }

  /** A fresh named namespace `tsk-<name>` under the temp dir. */
  newNs(name: string): string {
    const p = path.join(this.tmp, `tsk-${name}`);
    createNamedNetns(p);
    this.created.push(p);
    return p;
  }

  socketIn(ns: string): RtNetlinkSocket {
    const s = openRtnetlinkIn(ns);
    this.sockets.push(s);
    return s;
  }

  closeSockets(): void {
    for (const s of this.sockets.splice(0)) s.socket.close();
  }

  deleteNamespaces(): void {
    for (const p of this.created.splice(0)) deleteNamedNetns(p);
  }

  removeDir(): void {
    if (this.dir !== undefined) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
