/** The listener's sockets: binding with errors that say what to check, and closing that never throws. */
import dgram from "node:dgram";
import net from "node:net";
import { failure, success, type Result } from "../../lib/result.js";
import type { HostPort } from "./upstreams.js";
import { messageOf } from "../../lib/errors.js";

export interface BindError {
  code: string | undefined;
  text: string;
}

export function bindError(err: unknown): BindError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case "EADDRINUSE":
      return { code, text: "address in use (another DNS server on the host?)" };
    case "EADDRNOTAVAIL":
      return { code, text: "address not available (is it on an interface of this host?)" };
    case "EACCES":
    case "EPERM":
      return { code, text: "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)" };
    default:
      return { code, text: messageOf(err) };
  }
}

export function bindUdp(address: HostPort, type: "udp4" | "udp6"): Promise<Result<dgram.Socket, string>> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket(type);
    const onError = (err: Error): void => {
      void closeUdp(sock);
      resolve(failure(bindError(err).text));
    };
    sock.once("error", onError);
    sock.bind(address.port, address.host, () => {
      sock.off("error", onError);
      resolve(success(sock));
    });
  });
}

export function listenTcp(address: HostPort): Promise<Result<net.Server, BindError>> {
  return new Promise((resolve) => {
    // Half-open: a client may send FIN right after its query and still wait for the answer.
    const server = net.createServer({ allowHalfOpen: true });
    const onError = (err: Error): void => {
      server.close(() => undefined);
      resolve(failure(bindError(err)));
    };
    server.once("error", onError);
    server.listen({ host: address.host, port: address.port }, () => {
      server.off("error", onError);
      resolve(success(server));
    });
  });
}

export function closeUdp(sock: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      sock.close(() => resolve());
    } catch {
      resolve(); // not open
    }
  });
}

export function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
}
