/**
 * The C library through koffi, for the system calls Node does not offer:
 * switching network namespaces and pinning them with bind mounts (netns),
 * raw IPv4 sockets (the probe), duplicating a socket's descriptor (the port
 * proxy). Loaded once, on first use, with every function declared; a load
 * that failed (no glibc, no koffi binary for this platform) fails the same
 * way on every later use without trying again.
 */
import koffi from "koffi";
import { messageOf } from "./errors.js";

export interface Libc {
  setns(fd: number, nstype: number): number;
  unshare(flags: number): number;
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: null): number;
  umount2(target: string, flags: number): number;
  socket(domain: number, type: number, protocol: number): number;
  sendto(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrlen: number): number;
  /** `recv.async` blocks on a koffi worker thread, not the event loop. */
  recv: ((fd: number, buf: Buffer, len: number, flags: number) => number) & {
    async(fd: number, buf: Buffer, len: number, flags: number, cb: (err: unknown, n: number) => void): void;
  };
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  dup(fd: number): number;
  close(fd: number): number;
}

let loaded: Libc | Error | undefined;

/** The C library's functions; throws if it cannot be loaded. */
export function libc(): Libc {
  loaded ??= load();
  if (loaded instanceof Error) throw loaded;
  return loaded;
}

function load(): Libc | Error {
  try {
    const lib = koffi.load("libc.so.6");
    return {
      setns: lib.func("int setns(int fd, int nstype)"),
      unshare: lib.func("int unshare(int flags)"),
      mount: lib.func("int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)"),
      umount2: lib.func("int umount2(const char *target, int flags)"),
      socket: lib.func("int socket(int domain, int type, int protocol)"),
      sendto: lib.func("long sendto(int fd, const void *buf, unsigned long len, int flags, const void *addr, unsigned int addrlen)"),
      recv: lib.func("long recv(int fd, _Out_ void *buf, unsigned long len, int flags)") as Libc["recv"],
      setsockopt: lib.func("int setsockopt(int fd, int level, int name, const void *value, unsigned int len)"),
      dup: lib.func("int dup(int fd)"),
      close: lib.func("int close(int fd)"),
    };
  } catch (err) {
    return new Error(`loading the C library (libc.so.6) failed: ${messageOf(err)}`, { cause: err });
  }
}

/** errno as the last libc call on this thread left it. */
export function errno(): number {
  return koffi.errno();
}

/** errno's symbolic name ("EMSGSIZE"), or "errno <n>" for one koffi does not name. */
export function errnoName(n: number = errno()): string {
  return Object.entries(koffi.os.errno).find(([, v]) => v === n)?.[0] ?? `errno ${n}`;
}
