import { createConnection } from "node:net";
import { chmod, chown, lstat, mkdir, readFile, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import type { Server } from "node:http";
import type express from "express";
import { messageOf } from "../../lib/errors.js";

export interface Listener {
  path: string;
  close(): Promise<void>;
}

/** Who may connect besides root: nobody (0600), or the members of one group (0660). */
export interface SocketAccess {
  /** The group that may connect too; undefined: root only. */
  gid?: number;
}

/** Mode of a socket nobody but its owner may connect to (connecting needs write permission). */
const OWNER_ONLY = 0o600;
const OWNER_AND_GROUP = 0o660;
/** The umask the socket is created under: 0600 from its first moment, whatever the process's umask. */
const SOCKET_UMASK = 0o177;

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
}

/**
 * Binds under a umask that leaves the socket 0600: `listen` on a path creates
 * the socket file with 0777 minus the umask (0777 under umask 000, so anyone
 * could drive the plugin), and a chmod afterwards would leave a moment in
 * which it is open. The bind happens synchronously inside `app.listen`, so
 * the umask is ours only for that call (no other JavaScript runs meanwhile).
 */
function listenRestricted(app: express.Express, path: string): Promise<Server> {
  const previous = process.umask(SOCKET_UMASK);
  let server: Server;
  try {
    server = app.listen(path);
  } finally {
    process.umask(previous);
  }
  // Both are emitted on a later tick: listening to them now misses neither.
  return new Promise((resolve, reject) => {
    server.once("listening", () => resolve(server));
    server.once("error", reject);
  });
}

/**
 * Serves the app on a unix socket, mode 0600 (root only), or 0660 with
 * `access.gid` as its group. A socket file left by a dead process is
 * replaced; one that still answers belongs to a live plugin and is an error
 * (two plugins on one socket would split the daemon's calls between them).
 */
export async function listenUnix(app: express.Express, path: string, access: SocketAccess = {}): Promise<Listener> {
  await mkdir(dirname(path), { recursive: true });
  const existing = await lstat(path).catch(() => undefined);
  if (existing !== undefined) {
    if (!existing.isSocket()) throw new Error(`cannot listen on ${path}: a non-socket file is in the way`);
    if (await socketAnswers(path)) throw new Error(`cannot listen on ${path}: another process is serving it`);
    await unlink(path);
  }
  const server = await listenRestricted(app, path);
  const close = (): Promise<void> =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }).then(() => unlink(path).catch(() => undefined));
  try {
    // Group first, then the mode: the group's members get in only once both are set.
    if (access.gid !== undefined) await chown(path, -1, access.gid);
    await chmod(path, access.gid === undefined ? OWNER_ONLY : OWNER_AND_GROUP);
  } catch (e) {
    await close();
    throw new Error(`cannot restrict ${path} to ${access.gid === undefined ? "root" : `group ${access.gid}`}: ${messageOf(e)}`, { cause: e });
  }
  return { path, close };
}

/**
 * The id of a group given by name (looked up in `groupFile`, /etc/group's
 * format) or as a number. Undefined when the name is not there: the caller
 * says which setting named it. Inside a managed plugin /etc/group is the
 * image's, not the host's: give the host group's number there.
 */
export async function groupId(nameOrId: string, groupFile = "/etc/group"): Promise<number | undefined> {
  if (/^\d+$/.test(nameOrId)) return Number(nameOrId);
  const text = await readFile(groupFile, "utf8").catch(() => "");
  for (const line of text.split("\n")) {
    const [name, , gid] = line.split(":");
    if (name === nameOrId && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return undefined;
}
