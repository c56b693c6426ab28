import net from "node:net";
import type { Logger } from "../driver/log.js";
import { describeBinding, type Binding } from "./binding.js";
import { newCounters, type ProxyCounters } from "./counters.js";
import { encodeProxyHeader, endpointsOf } from "./proxy-header.js";
import { ReadBufferPool } from "./read-buffers.js";

export interface TcpProxyOptions {
  /**
   * Give up on a backend that has not accepted within this many ms (default 5000). docker-proxy
   * has none (the kernel's SYN retries, ~2 min); moby PR #47571 proposed 5 s.
   */
  connectTimeoutMs?: number;
  /**
   * When the backend cannot be reached or fails, reset the client (RST, it sees ECONNRESET)
   * instead of closing it (FIN, it sees an empty reply as with docker-proxy). Default true.
   */
  resetOnBackendFailure?: boolean;
  /** Shared read buffers; one pool per ProxyManager. */
  buffers?: ReadBufferPool;
  log?: Logger;
  /** Opens the backend socket (tests inject one that never connects). */
  dial?: (opts: net.TcpNetConnectOpts) => net.Socket;
}

interface Conn {
  client: net.Socket;
  backend: net.Socket | undefined;
  close(reset: boolean, err?: Error): void;
}

/**
 * The TCP data path of one binding: for every accepted client (delivered paused, see
 * listener.ts) open a backend connection, optionally send a PROXY header, then copy both ways.
 *
 * - Half-close: both sockets are allowHalfOpen; a FIN from one side becomes `end()` (SHUT_WR)
 *   on the other while the opposite direction keeps flowing (moby #27539). The pair is torn down
 *   when both sockets have closed.
 * - Backpressure: client → backend pauses the client while the backend's write buffer is over its
 *   high-water mark; backend → client stops reading the backend while a write to the client is
 *   pending (read-buffers.ts). User-space buffering is bounded per connection.
 * - Failure: an error on either side destroys both; a backend failure resets the client by default.
 * - TCP_NODELAY on both sockets, as Go (docker-proxy) sets by default.
 *
 * No module state: a cluster worker can host its own TcpProxy instances.
 */
export class TcpProxy {
  readonly counters: ProxyCounters = newCounters();
  private readonly conns = new Set<Conn>();
  private readonly connectTimeoutMs: number;
  private readonly resetOnBackendFailure: boolean;
  private readonly buffers: ReadBufferPool;
  private readonly dial: (opts: net.TcpNetConnectOpts) => net.Socket;
  private readonly log: Logger | undefined;
  private readonly name: string;

  constructor(
    readonly binding: Binding,
    opts: TcpProxyOptions = {},
  ) {
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
    this.resetOnBackendFailure = opts.resetOnBackendFailure ?? true;
    this.buffers = opts.buffers ?? new ReadBufferPool();
    this.dial = opts.dial ?? ((o) => net.connect(o));
    this.name = describeBinding(binding);
    this.log = opts.log?.child({ binding: this.name });
  }

  /** Snapshot of the counters, with the bytes currently buffered in user space. */
  snapshot(): ProxyCounters {
    let buffered = 0;
    for (const { client, backend } of this.conns) {
      buffered += client.writableLength + client.readableLength;
      if (backend) buffered += backend.writableLength + backend.readableLength;
    }
    return { ...this.counters, bufferedBytes: buffered };
  }

  /** Destroys every open connection (FIN, or RST where unread data is pending). */
  closeAll(): void {
    for (const c of [...this.conns]) c.close(false);
  }

  /** Takes over an accepted client socket; it must be paused (`pauseOnConnect`). */
  handle(client: net.Socket): void {
    const counters = this.counters;
    const { backendIp, backendPort } = this.binding;
    counters.connectionsTotal++;
    counters.connectionsActive++;

    const pool = this.buffers;
    let size = pool.minSize;
    let current: Buffer | undefined; // where the next backend read lands
    let pending: Buffer | undefined; // held by a client write that has not flushed yet
    let pendingSeq = 0;
    let writeSeq = 0;
    let closedSockets = 0;
    let done = false;
    let timer: NodeJS.Timeout | undefined;

    const nextBuffer = (): Buffer => {
      if (current === undefined || current === pending || current.length !== size) {
        if (current !== undefined && current !== pending) pool.give(current);
        current = pool.take(size);
        size = current.length; // the budget may have said no
      }
      return current;
    };

    const onBackendData = (nread: number, buf: Uint8Array): boolean => {
      counters.bytesOut += nread;
      const b = buf as Buffer;
      const seq = ++writeSeq;
      client.write(b.subarray(0, nread), (err) => {
        if (seq !== pendingSeq) return;
        pendingSeq = 0;
        pending = undefined;
        if (err) return pool.forget(b); // torn down mid-write: libuv may still hold it, leave it to the GC
        pool.give(b);
        if (!done) backend.resume();
      });
      size = pool.nextSize(b.length, nread);
      if (client.writableLength === 0) return true; // flushed synchronously: reuse the buffer
      pending = b;
      pendingSeq = seq;
      return false; // stop reading until the client has taken these bytes
    };

    const backend = this.dial({
      host: backendIp,
      port: backendPort,
      allowHalfOpen: true,
      noDelay: true,
      onread: { buffer: nextBuffer, callback: onBackendData },
    });

    const conn: Conn = {
      client,
      backend,
      close: (reset, err) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.conns.delete(conn);
        counters.connectionsActive--;
        if (err) {
          counters.errors++;
          this.log?.debug({ err: err.message, client: `${client.remoteAddress}:${client.remotePort}` }, "tcp connection failed");
        }
        kill(client, reset);
        kill(backend, reset);
      },
    };
    this.conns.add(conn);

    const backendFailed = (err: Error): void => conn.close(this.resetOnBackendFailure, err);
    timer = setTimeout(
      () => backendFailed(new Error(`connect to ${backendIp}:${backendPort} timed out after ${this.connectTimeoutMs} ms`)),
      this.connectTimeoutMs,
    );
    backend.on("error", backendFailed);
    client.on("error", (err) => conn.close(true, err));

    const onClose = (): void => {
      if (++closedSockets === 2) conn.close(false);
    };
    client.on("close", onClose);
    backend.on("close", () => {
      if (current !== undefined && current !== pending) pool.give(current);
      current = undefined;
      if (!done && !backend.readableEnded) conn.close(this.resetOnBackendFailure); // closed without EOF
      onClose();
    });

    backend.once("connect", () => {
      clearTimeout(timer);
      if (done) return;
      client.setNoDelay(true);
      if (this.binding.proxyProtocol) backend.write(encodeProxyHeader(this.binding.proxyProtocol, endpointsOf(client)));

      client.on("data", (chunk: Buffer) => {
        counters.bytesIn += chunk.length;
        if (!backend.write(chunk)) client.pause();
      });
      backend.on("drain", () => client.resume());
      client.on("end", () => backend.end()); // client SHUT_WR → backend SHUT_WR
      backend.on("end", () => client.end()); // and the reverse, after queued writes
      client.resume();
    });
  }
}

function kill(s: net.Socket, reset: boolean): void {
  if (s.destroyed) return;
  if (reset && !s.connecting && s.readyState !== "closed") {
    try {
      s.resetAndDestroy();
      return;
    } catch {
      // fall through to a plain destroy
    }
  }
  s.destroy();
}
