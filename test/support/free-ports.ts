/**
 * Ports that are free right now, for a process a test starts on fixed ports.
 * All `count` are held open at once before any is released, so they are
 * distinct (asking one at a time can hand back the same port twice: Consul
 * refused to start when its serf WAN port came back equal to its HTTP port).
 * `udp: true` also checks each is free for UDP (serf listens on both). A port
 * can still be taken between release and use; callers that start a server
 * retry on "address in use".
 */
import { createSocket } from "node:dgram";
import { createServer, type AddressInfo, type Server } from "node:net";

export async function freePorts(count: number, opts: { host?: string; udp?: boolean } = {}): Promise<number[]> {
  const host = opts.host ?? "127.0.0.1";
  const held: Server[] = [];
  const ports: number[] = [];
  try {
    while (ports.length < count) {
      const server = createServer();
      await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, host, resolve));
      held.push(server);
      const port = (server.address() as AddressInfo).port;
      if (opts.udp === true && !(await udpFree(host, port))) continue;
      ports.push(port);
    }
    return ports;
  } finally {
    await Promise.all(held.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

/** A port that is free right now (bound and released). */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const [port] = await freePorts(1, { host });
  return port!;
}

async function udpFree(host: string, port: number): Promise<boolean> {
  const socket = createSocket(host.includes(":") ? "udp6" : "udp4");
  const bound = await new Promise<boolean>((resolve) => {
    socket.once("error", () => resolve(false));
    socket.bind(port, host, () => resolve(true));
  });
  if (bound) await new Promise<void>((resolve) => socket.close(resolve));
  return bound;
}
