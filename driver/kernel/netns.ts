/**
 * Network namespaces: the ONE module that switches the calling thread between
 * network namespaces.
 *
 * Design note — why this is delicate.
 * A Linux network namespace is a property of a *thread*, not of a process.
 * Whatever a thread creates (sockets, /proc/sys/net files it opens, new
 * namespaces via unshare) belongs to the namespace that thread is in at that
 * moment, and keeps belonging there afterwards. Node runs all JavaScript on
 * one main thread, so while we have switched that thread into an overlay
 * namespace, *any* socket the process opens from JavaScript — an HTTP
 * connection to Consul, a log transport, a Docker API reply — would silently
 * be created inside the overlay namespace instead of the host's. Therefore:
 *
 *  - a switch is always: enter, do purely synchronous work, leave — with no
 *    `await` (no chance for other JavaScript to run) in between, and leaving
 *    happens in a `finally`, so a throw cannot strand the thread;
 *  - we always return to the exact namespace we came from, held open by fd
 *    (`/proc/thread-self/ns/net`), never to "the host" by guessing;
 *  - rtnetlink sockets are created while switched in and then used
 *    asynchronously from outside: a socket stays bound to the namespace it was
 *    created in for its whole life (see `openRtnetlinkIn`);
 *  - if returning ever failed, the thread would be in an unknown namespace and
 *    every later socket would be wrong, so we terminate the process instead of
 *    carrying on.
 *
 * Libuv's worker threads never switch, so asynchronous fs/dns work elsewhere is
 * unaffected. `/proc/thread-self` is used (rather than `/proc/self`, which
 * names the thread-group leader) so this also works from a worker thread.
 *
 * A *named* namespace is one kept alive by a bind mount of its nsfs file onto
 * an ordinary file (exactly what `ip netns add` does), so it survives without
 * any process inside it and can be re-opened by path after a restart.
 */
import fs from "node:fs";
import path from "node:path";
import { createRtNetlink, type RtNetlinkSocket } from "netlink";
import { messageOf } from "../../lib/errors.js";
import { errno, errnoName, libc } from "../../lib/libc.js";

const CLONE_NEWNET = 0x40000000;
const MS_BIND = 0x1000;
const MNT_DETACH = 0x2;
/** statfs f_type of the nsfs pseudo-filesystem (namespace files). */
const NSFS_MAGIC = 0x6e736673;
const EINVAL = 22;
const ENOENT = 2;

const SELF_NETNS = "/proc/thread-self/ns/net";

/** A failed namespace operation; `errno` is set when a syscall failed. */
export class NetnsError extends Error {
  constructor(
    message: string,
    readonly nsPath: string,
    readonly errno?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "NetnsError";
  }
}

function syscallError(op: string, nsPath: string, detail = ""): NetnsError {
  const n = errno();
  return new NetnsError(`netns ${nsPath}: ${op}${detail} failed: ${errnoName(n)}`, nsPath, n);
}

/**
 * Returns the thread to the namespace held by `selfFd`. Failure leaves the
 * thread (and every socket it opens later) in the wrong namespace, which we
 * cannot recover from safely.
 */
function switchBack(selfFd: number, nsPath: string): void {
  if (libc().setns(selfFd, CLONE_NEWNET) === 0) return;
  const err = syscallError("setns back to the original namespace", nsPath);
  fs.writeSync(2, `FATAL tsoverlay: ${err.message}; terminating rather than run in the wrong namespace\n`);
  process.abort();
}

/** True if `p` is a bind-mounted network namespace file (nsfs). */
export function isNetnsMount(p: string): boolean {
  try {
    return fs.statfsSync(p).type === NSFS_MAGIC;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

/**
 * Creates a new, empty network namespace and keeps it alive by bind-mounting
 * it at `nsPath` (parent directories are created). Idempotent: if `nsPath` is
 * already a namespace mount, it is left alone.
 */
export function createNamedNetns(nsPath: string): void {
  if (isNetnsMount(nsPath)) return;
  try {
    fs.mkdirSync(path.dirname(nsPath), { recursive: true });
    // The mount target must exist; a left-over plain file from a crash is fine.
    fs.closeSync(fs.openSync(nsPath, fs.constants.O_RDONLY | fs.constants.O_CREAT, 0o444));
  } catch (err) {
    throw new NetnsError(`netns ${nsPath}: preparing mount point failed: ${messageOf(err)}`, nsPath, undefined, {
      cause: err,
    });
  }

  const c = libc();
  const selfFd = fs.openSync(SELF_NETNS, "r");
  try {
    if (c.unshare(CLONE_NEWNET) !== 0) throw syscallError("unshare(CLONE_NEWNET)", nsPath);
    try {
      // The calling thread is now alone in a fresh namespace; pin it by path.
      if (c.mount(SELF_NETNS, nsPath, "none", MS_BIND, null) !== 0) {
        throw syscallError("bind mount", nsPath, ` of ${SELF_NETNS}`);
      }
    } finally {
      switchBack(selfFd, nsPath);
    }
  } catch (err) {
    try {
      tryUnlink(nsPath);
    } catch {
      // Keep the original error; a stray empty file is harmless and reused.
    }
    throw err;
  } finally {
    fs.closeSync(selfFd);
  }
}

/**
 * Binds the namespace mounted at `from` at `to` as well (parent directories
 * are created), so that either mount keeps it alive. Idempotent: a `to` that
 * is already a namespace mount is left alone.
 */
export function pinNetnsAt(from: string, to: string): void {
  if (isNetnsMount(to)) return;
  if (!isNetnsMount(from)) throw new NetnsError(`netns ${from}: not a network namespace mount (pinning it at ${to})`, from);
  try {
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.closeSync(fs.openSync(to, fs.constants.O_RDONLY | fs.constants.O_CREAT, 0o444));
  } catch (err) {
    throw new NetnsError(`netns ${to}: preparing mount point failed: ${messageOf(err)}`, to, undefined, { cause: err });
  }
  if (libc().mount(from, to, "none", MS_BIND, null) !== 0) throw syscallError("bind mount", to, ` of ${from}`);
}

/** Whether two namespace mounts hold the same namespace. */
export function sameNetns(a: string, b: string): boolean {
  const sa = fs.statSync(a);
  const sb = fs.statSync(b);
  return sa.dev === sb.dev && sa.ino === sb.ino;
}

/**
 * Unmounts and removes a named namespace. The namespace itself disappears
 * (with every link in it) once nothing else holds it: open sockets into it
 * must be closed first. Idempotent: a missing path succeeds.
 */
export function deleteNamedNetns(nsPath: string): void {
  const c = libc();
  // Loop in case the same path was (wrongly) mounted more than once.
  while (isNetnsMount(nsPath)) {
    if (c.umount2(nsPath, MNT_DETACH) !== 0) {
      const n = errno();
      if (n === EINVAL || n === ENOENT) break;
      throw syscallError("umount2", nsPath);
    }
  }
  tryUnlink(nsPath);
}

function tryUnlink(p: string): void {
  try {
    fs.unlinkSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new NetnsError(`netns ${p}: unlink failed: ${messageOf(err)}`, p, undefined, { cause: err });
    }
  }
}

/** Opens a namespace file (for `setns`, or to pass as IFLA_NET_NS_FD). Caller closes it. */
export function openNetnsFd(nsPath: string): number {
  if (!isNetnsMount(nsPath)) {
    throw new NetnsError(`netns ${nsPath}: not a network namespace mount`, nsPath);
  }
  return fs.openSync(nsPath, "r");
}

/** Runs `fn` with the namespace open as an fd (e.g. for IFLA_NET_NS_FD), closing it afterwards. */
export function withNetnsFd<T>(nsPath: string, fn: (fd: number) => Promise<T>): Promise<T> {
  const fd = openNetnsFd(nsPath);
  return fn(fd).finally(() => fs.closeSync(fd));
}

function isAsyncFunction(fn: unknown): boolean {
  return typeof fn === "function" && fn.constructor?.name === "AsyncFunction";
}

/**
 * Runs `fn` with the calling thread inside the namespace at `nsPath`, then
 * returns to the original namespace — also when `fn` throws. `fn` must be
 * synchronous: code after an `await` would run wherever the thread happens
 * to be, so async functions and promise results are refused.
 */
export function runInNetns<T>(nsPath: string, fn: () => T): T {
  if (isAsyncFunction(fn)) {
    throw new NetnsError(`netns ${nsPath}: runInNetns needs a synchronous function`, nsPath);
  }
  const targetFd = openNetnsFd(nsPath);
  let selfFd: number | undefined;
  let result: T;
  try {
    selfFd = fs.openSync(SELF_NETNS, "r");
    if (libc().setns(targetFd, CLONE_NEWNET) !== 0) throw syscallError("setns", nsPath);
    try {
      result = fn();
    } finally {
      switchBack(selfFd, nsPath);
    }
  } finally {
    if (selfFd !== undefined) fs.closeSync(selfFd);
    fs.closeSync(targetFd);
  }
  if (result !== null && typeof result === "object" && typeof (result as { then?: unknown }).then === "function") {
    // Too late to undo what it did, but the caller must learn it was wrong;
    // its eventual rejection is ours to absorb, not an unhandled one.
    (result as unknown as Promise<unknown>).then(undefined, () => undefined);
    throw new NetnsError(`netns ${nsPath}: runInNetns callback returned a promise`, nsPath);
  }
  return result;
}

/**
 * Opens an rtnetlink socket that operates inside the namespace at `nsPath`
 * for its whole life. Close it (`sock.socket.close()`) when done, or the
 * namespace stays alive after `deleteNamedNetns`.
 */
export function openRtnetlinkIn(nsPath: string): RtNetlinkSocket {
  try {
    return runInNetns(nsPath, () => createRtNetlink());
  } catch (err) {
    if (err instanceof NetnsError) throw err;
    throw new NetnsError(`netns ${nsPath}: opening rtnetlink socket failed: ${messageOf(err)}`, nsPath, undefined, {
      cause: err,
    });
  }
}

/**
 * `key` is a path under `<procRoot>/sys`, e.g. `net/ipv4/conf/br0/proxy_arp`.
 * Only `net/` keys are namespace-scoped, so anything else is refused: it would
 * change the whole host.
 */
function sysctlPath(nsPath: string, key: string, procRoot: string): string {
  const parts = key.split("/");
  if (parts[0] !== "net" || parts.length < 2 || parts.some((p) => p === "" || p === "." || p === "..")) {
    throw new NetnsError(`netns ${nsPath}: refusing sysctl key ${JSON.stringify(key)} (must be net/...)`, nsPath);
  }
  return path.join(procRoot, "sys", ...parts);
}

/**
 * Writes a sysctl inside a namespace. /proc/sys/net resolves against the
 * namespace of the thread that *opens* the file, so the whole open/write
 * happens while switched in. `procRoot` lets a containerised plugin use a
 * writable mount of the host's /proc/sys/net (at `/host/proc/sys/net`) when
 * its own /proc/sys is read-only: only `<procRoot>/sys/net` is ever opened.
 */
export function writeSysctlIn(nsPath: string, key: string, value: string, procRoot = "/proc"): void {
  const file = sysctlPath(nsPath, key, procRoot);
  try {
    runInNetns(nsPath, () => fs.writeFileSync(file, value));
  } catch (err) {
    if (err instanceof NetnsError) throw err;
    throw new NetnsError(`netns ${nsPath}: writing ${file}=${value} failed: ${messageOf(err)}`, nsPath, undefined, {
      cause: err,
    });
  }
}

/** Reads a sysctl inside a namespace (see `writeSysctlIn`); returns it trimmed. */
export function readSysctlIn(nsPath: string, key: string, procRoot = "/proc"): string {
  const file = sysctlPath(nsPath, key, procRoot);
  try {
    return runInNetns(nsPath, () => fs.readFileSync(file, "utf8").trim());
  } catch (err) {
    if (err instanceof NetnsError) throw err;
    throw new NetnsError(`netns ${nsPath}: reading ${file} failed: ${messageOf(err)}`, nsPath, undefined, {
      cause: err,
    });
  }
}
