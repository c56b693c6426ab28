/**
 * One forwarded query to one upstream, over UDP or TCP: the reply is relayed
 * as raw bytes, and only a response with the query's id is accepted.
 */
import dgram from "node:dgram";
import net from "node:net";
import { FrameReader, frame, isReplyTo } from "./dns-wire.js";
import type { HostPort } from "./upstreams.js";

/** Settles once: with the reply, an error, the timeout or the listener's abort; `close` then releases the socket. */
type Finish = (err: Error | undefined, reply?: Buffer) => void;

function exchange(timeoutMs: number, signal: AbortSignal, start: (finish: Finish) => () => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let done = false;
    let close = (): void => undefined;
    const finish: Finish = (err, reply) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      close();
      if (err !== undefined) reject(err);
      else resolve(reply!);
    };
    const onAbort = (): void => finish(new Error("listener closed"));
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    signal.addEventListener("abort", onAbort, { once: true });
    close = start(finish);
    if (done) close();
  });
}

/** One query to one upstream over UDP: a fresh connected socket, the first reply with the query's id, within timeoutMs. */
export function udpExchange(query: Buffer, to: HostPort, timeoutMs: number, signal: AbortSignal): Promise<Buffer> {
  const id = query.readUInt16BE(0);
  return exchange(timeoutMs, signal, (finish) => {
    const sock = dgram.createSocket(net.isIPv6(to.host) ? "udp6" : "udp4");
    let closed = false;
    sock.on("error", (err) => finish(err));
    // A connected socket takes datagrams from that upstream only.
    sock.on("message", (msg) => {
      if (isReplyTo(msg, id)) finish(undefined, msg);
    });
    sock.connect(to.port, to.host, () => {
      if (closed) return;
      sock.send(query, (err) => {
        if (err) finish(err);
      });
    });
    return () => {
      closed = true;
      try {
        sock.close();
      } catch {
        // not open
      }
    };
  });
}

/** One query to one upstream over TCP: connect, send, the first message with the query's id, within timeoutMs in all. */
export function tcpExchange(query: Buffer, to: HostPort, timeoutMs: number, signal: AbortSignal): Promise<Buffer> {
  const id = query.readUInt16BE(0);
  return exchange(timeoutMs, signal, (finish) => {
    const reader = new FrameReader();
    const sock = net.connect({ host: to.host, port: to.port });
    sock.setNoDelay(true);
    sock.on("connect", () => sock.write(frame(query)));
    sock.on("data", (chunk: Buffer) => {
      const frames = reader.push(chunk);
      if (!frames.ok) return finish(new Error(frames.reason));
      const reply = frames.messages.find((m) => isReplyTo(m, id));
      if (reply !== undefined) finish(undefined, reply);
    });
    sock.on("error", (err) => finish(err));
    sock.on("close", () => finish(new Error("connection closed without an answer")));
    return () => sock.destroy();
  });
}
