import dgram from "node:dgram";
import net from "node:net";
import { failure, success, type Result } from "../lib/result.js";
import { formatAddress, type Binding, type Proto } from "./binding.js";

/**
 * Host-side sockets of a binding, bound before anything else happens so a busy port is
 * reported at `add()` time.
 *
 * Dual-stack choice: hostIp "" opens TWO sockets, 0.0.0.0 and [::] with IPV6_V6ONLY, on the same
 * port — what Docker does for `-p 8080:80` (two proxies, `needSamePort`). Compared with one
 * `::` socket accepting v4-mapped addresses it keeps client addresses native (no ::ffff:),
 * does not depend on net.ipv6.bindv6only (libuv only sets V6ONLY for UDP when asked), and
 * degrades to IPv4 only when the host has no IPv6. For hostPort 0 the kernel picks the port
 * on the IPv4 socket and the IPv6 one must get the same; on a clash both are retried
 * (up to 10 attempts, Docker's maxAllocateAttempts).
 *
 * "0.0.0.0" is IPv4 only and "::" IPv6 only, as Docker binds them.
 *
 * With `deferIpv6Ms` the [::] half of "" is bound that long after the IPv4 half, if the port
 * is free on IPv6 then (see Binding.deferIpv6Ms); such a late socket is not handed to accept
 * workers: IPv6 connections are served by this process.
 *
 * TCP listeners deliver sockets paused (`pauseOnConnect`) and half-open capable; Node sets
 * SO_REUSEADDR on TCP listeners, so a port whose old connections sit in TIME_WAIT can be
 * listened on again at once. UDP sockets are bound `exclusive` and never shared with accept
 * workers: a shared one would split a client's flow across processes.
 */

export interface ListenAddress {
  address: string;
  family: 4 | 6;
  port: number;
}

export interface BoundListener {
  /** The port actually bound (the kernel's pick when hostPort was 0). */
  port: number;
  addresses: ListenAddress[];
  /** TCP: the listening servers, so that accept workers can share them (accept-workers.ts). */
  servers: net.Server[];
  /** Stops accepting / receiving and releases the port. */
  close(): Promise<void>;
}

export interface TcpListenOptions {
  backlog?: number;
  onConnection: (socket: net.Socket) => void;
  onError?(err: Error): void;
  onLateLeg?: (outcome: LateLegOutcome) => void;
}

export interface UdpListenOptions {
  /** Called once per bound socket, before it receives anything. */
  onSocket(socket: dgram.Socket): void;
  onError?(err: Error): void;
  onLateLeg?: (outcome: LateLegOutcome) => void;
}

interface Leg {
  address: string;
  family: 4 | 6;
  ipv6Only: boolean;
  /** The [::] half of "": skipped when the host has no IPv6. */
  optional: boolean;
}

/** What happened to a deferred [::] half (see Binding.deferIpv6Ms). */
export type LateLegOutcome = { ok: true; address: ListenAddress } | { ok: false; error: string };

interface Opened {
  port: number;
  server?: net.Server;
  close(): Promise<void>;
}

type BindError = NodeJS.ErrnoException;

const MAX_ATTEMPTS = 10;

function legsFor(hostIp: string): Leg[] {
  if (hostIp === "") {
    return [
      { address: "0.0.0.0", family: 4, ipv6Only: false, optional: false },
      { address: "::", family: 6, ipv6Only: true, optional: true },
    ];
  }
  const family = net.isIPv6(hostIp) ? 6 : 4;
  return [{ address: hostIp, family, ipv6Only: family === 6, optional: false }];
}

export function listenTcp(binding: Binding, opts: TcpListenOptions): Promise<Result<BoundListener>> {
  return openLegs(binding, (leg, port) => openTcp(leg, port, opts), opts.onLateLeg);
}

export function listenUdp(binding: Binding, opts: UdpListenOptions): Promise<Result<BoundListener>> {
  return openLegs(binding, (leg, port) => openUdp(leg, port, opts), opts.onLateLeg);
}

async function openLegs(
  binding: Binding,
  open: (leg: Leg, port: number) => Promise<Result<Opened, BindError>>,
  onLateLeg?: (outcome: LateLegOutcome) => void,
): Promise<Result<BoundListener>> {
  const all = legsFor(binding.hostIp);
  const deferred = binding.hostIp === "" && binding.deferIpv6Ms !== undefined ? all.filter((l) => l.family === 6) : [];
  const legs = all.filter((l) => !deferred.includes(l));
  for (let attempt = 1; ; attempt++) {
    const opened: Opened[] = [];
    const addresses: ListenAddress[] = [];
    let port = binding.hostPort;
    let failed: { leg: Leg; err: BindError } | undefined;
    for (const leg of legs) {
      const r = await open(leg, port);
      if (r.ok) {
        port = r.value.port;
        opened.push(r.value);
        addresses.push({ address: leg.address, family: leg.family, port });
      } else if (leg.optional && noIPv6(r.error)) {
        continue; // host without IPv6: "" means IPv4 only here
      } else {
        failed = { leg, err: r.error };
        break;
      }
    }
    if (failed === undefined) {
      const servers = opened.flatMap((o) => (o.server ? [o.server] : []));
      let closed = false;
      let timer: NodeJS.Timeout | undefined;
      const late = deferred[0];
      if (late !== undefined) {
        timer = setTimeout(() => {
          void open(late, port).then((r) => {
            if (!r.ok) {
              if (!noIPv6(r.error)) onLateLeg?.({ ok: false, error: listenError(binding.proto, late, port, r.error) });
              return;
            }
            if (closed) {
              void r.value.close();
              return;
            }
            opened.push(r.value);
            const address: ListenAddress = { address: late.address, family: late.family, port };
            addresses.push(address);
            onLateLeg?.({ ok: true, address });
          });
        }, binding.deferIpv6Ms);
      }
      const close = async (): Promise<void> => {
        closed = true;
        clearTimeout(timer);
        await Promise.all(opened.map((o) => o.close()));
      };
      return success({ port, addresses, servers, close });
    }
    await Promise.all(opened.map((o) => o.close()));
    const retry = binding.hostPort === 0 && opened.length > 0 && failed.err.code === "EADDRINUSE";
    if (!retry || attempt >= MAX_ATTEMPTS) return failure(listenError(binding.proto, failed.leg, port, failed.err));
  }
}

function noIPv6(err: BindError): boolean {
  return err.code === "EAFNOSUPPORT" || err.code === "EADDRNOTAVAIL" || err.code === "EPROTONOSUPPORT";
}

/** Go's wording, as docker-proxy printed it: "listen tcp4 0.0.0.0:8080: bind: address already in use". */
export function listenError(proto: Proto, leg: { address: string; family: 4 | 6 }, port: number, err: BindError): string {
  return `listen ${proto}${leg.family} ${formatAddress(leg.address, port)}: bind: ${strerror(err)}`;
}

const STRERROR: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "cannot assign requested address",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EAFNOSUPPORT: "address family not supported by protocol",
  EINVAL: "invalid argument",
  EMFILE: "too many open files",
  ENFILE: "too many open files in system",
};

function strerror(err: BindError): string {
  return (err.code !== undefined ? STRERROR[err.code] : undefined) ?? err.message;
}

function openTcp(leg: Leg, port: number, opts: TcpListenOptions): Promise<Result<Opened, BindError>> {
  return new Promise((resolve) => {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, opts.onConnection);
    const onBindError = (err: BindError): void => {
      server.close();
      resolve(failure(err));
    };
    server.once("error", onBindError);
    server.listen({ host: leg.address, port, ipv6Only: leg.ipv6Only, backlog: opts.backlog ?? 511 }, () => {
      server.off("error", onBindError);
      // After listen, 'error' means a failed accept (EMFILE…); the server keeps listening.
      server.on("error", (err) => opts.onError?.(err));
      const bound = (server.address() as net.AddressInfo).port;
      resolve(success({ port: bound, server, close: () => new Promise<void>((r) => server.close(() => r())) }));
    });
  });
}

/**
 * Replies go to client addresses, always IP literals: answering the lookup synchronously spares
 * every datagram dns.lookup's deferred callback (a tick per reply on the hot path).
 */
const literalLookup = (address: string, family: unknown, callback: (err: Error | null, address: string, family: number) => void): void => {
  callback(null, address, net.isIPv6(address) ? 6 : 4);
};

function openUdp(leg: Leg, port: number, opts: UdpListenOptions): Promise<Result<Opened, BindError>> {
  return new Promise((resolve) => {
    let sock: dgram.Socket;
    try {
      sock = dgram.createSocket({ type: leg.family === 6 ? "udp6" : "udp4", ipv6Only: leg.ipv6Only, lookup: literalLookup });
    } catch (err) {
      resolve(failure(err as BindError));
      return;
    }
    const onBindError = (err: BindError): void => {
      sock.close();
      resolve(failure(err));
    };
    sock.once("error", onBindError);
    sock.bind({ address: leg.address, port, exclusive: true }, () => {
      sock.off("error", onBindError);
      sock.on("error", (err) => opts.onError?.(err));
      opts.onSocket(sock);
      const close = (): Promise<void> =>
        new Promise<void>((r) => {
          try {
            sock.close(() => r());
          } catch {
            r(); // already closed
          }
        });
      resolve(success({ port: sock.address().port, close }));
    });
  });
}
