import { createConnection } from "node:net";
import { mkdir, lstat, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import type { Server } from "node:http";
import type express from "express";

export interface Listener {
  path: string;
  close(): Promise<void>;
}

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
 * Serves the app on a unix socket. A socket file left by a dead process is
 * replaced; one that still answers belongs to a live plugin and is an error
 * (two plugins on one socket would split the daemon's calls between them).
 */
export async function listenUnix(app: express.Express, path: string): Promise<Listener> {
  await mkdir(dirname(path), { recursive: true });
  const existing = await lstat(path).catch(() => undefined);
  if (existing !== undefined) {
    if (!existing.isSocket()) throw new Error(`cannot listen on ${path}: a non-socket file is in the way`);
    if (await socketAnswers(path)) throw new Error(`cannot listen on ${path}: another process is serving it`);
    await unlink(path);
  }
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(path, () => resolve(s));
    s.once("error", reject);
  });
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }).then(() => unlink(path).catch(() => undefined)),
  };
}
