import net from "node:net";
import type { Logger } from "../lib/log.js";
import { describeBinding, type Binding } from "./binding.js";
import { newCounters, type ProxyCounters } from "./counters.js";
import { Admission, CONN_DEFAULTS, LimitNotice, SlotCounter, sourceOf, type ConnLimits, type Refusal, type SlotPool } from "./limits.js";
import { encodeProxyHeader, endpointsOf } from "./proxy-header.js";
import { Pump } from "./pump.js";
import { ReadBufferPool } from "./read-buffers.js";
import { withReadBuffers } from "./rewrap.js";

export interface TcpProxyOptions extends Partial<ConnLimits> {
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
  /** Shared slots beyond maxConns / maxConnsPerSource (the plugin's pool, when accept workers share the port). */
  pool?: SlotPool;
  /**
   * A connection with no byte either way for this long is closed on both sides (default 5 days,
   * conntrack's established timeout, which the same port's DNATed traffic gets; 0 = never).
   * Dead peers go much sooner: both sockets keep TCP keepalive on, as docker-proxy's (Go) do.
   */
  idleTimeoutMs?: number;
}

export const TCP_IDLE_DEFAULT_MS = 5 * 24 * 3600 * 1000;

/** TCP keepalive probes after 15 s idle: Go's default, so docker-proxy's. */
const KEEPALIVE = { keepAlive: true, keepAliveInitialDelay: 15_000 } as const;

/** Node's read size for sockets without `onread`: a read this large means more was waiting. */
const BULK_READ = 64 * 1024;

interface Conn {
  /** The accepted socket, or its re-wrapped successor (rewrap.ts). */
  readonly client: net.Socket;
  readonly backend: net.Socket;
  /** With an error, or "idle" when the idle timeout closes it. */
  close(reset: boolean, why?: Error | "idle"): void;
}

/**
 * The TCP data path of one binding: for every accepted client (delivered paused, see
 * listener.ts) open a backend connection, optionally send a PROXY header, then copy both ways.
 *
 * - Backend → client reads into adaptive user buffers (read-buffers.ts); client → backend does
 *   too once a full 64 KiB read shows a bulk transfer (the accepted socket is re-wrapped for
 *   it, rewrap.ts), and uses Node's ordinary reads until then or if it cannot be re-wrapped.
 * - Half-close: both sockets are allowHalfOpen; a FIN from one side becomes `end()` (SHUT_WR)
 *   on the other while the opposite direction keeps flowing (moby #27539). The pair is torn down
 *   when both sockets have closed.
 * - Backpressure: a direction stops reading while its last read is still being written.
 *   User-space buffering is bounded per connection.
 * - Failure: an error on either side destroys both; a backend failure resets the client by default.
 * - TCP_NODELAY on both sockets, as Go (docker-proxy) sets by default.
 *
 * No module state: a cluster worker can host its own TcpProxy instances.
 */
export class TcpProxy {
  readonly counters: ProxyCounters = newCounters();
  private readonly conns = new Set<Conn>();
  private readonly admission: Admission;
  private readonly idleTimeoutMs: number;
  private readonly notice: LimitNotice;
  private closed = false;
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
    this.admission = new Admission(
      new SlotCounter(opts.maxConns ?? CONN_DEFAULTS.maxConns, opts.maxConnsPerSource ?? CONN_DEFAULTS.maxConnsPerSource),
      opts.pool,
    );
    this.idleTimeoutMs = opts.idleTimeoutMs ?? TCP_IDLE_DEFAULT_MS;
    this.notice = new LimitNotice(this.log);
  }

  /** Snapshot of the counters, with the bytes currently buffered in user space. */
  snapshot(): ProxyCounters {
    let buffered = 0;
    for (const { client, backend } of this.conns) {
      buffered += client.writableLength + client.readableLength + backend.writableLength + backend.readableLength;
    }
    return { ...this.counters, bufferedBytes: buffered };
  }

  /** Destroys every open connection (FIN, or RST where unread data is pending); the binding is gone. */
  closeAll(): void {
    this.closed = true;
    for (const c of [...this.conns]) c.close(false);
  }

  /**
   * Takes over an accepted client socket; it must be paused (`pauseOnConnect`). Over the
   * limits it is reset at once: the client sees a refused connection, not a hang.
   */
  handle(accepted: net.Socket): void {
    if (this.closed) return void accepted.destroy();
    accepted.on("error", ignore); // a client reset while the pool answers
    this.admission.admit(
      sourceOf(accepted.remoteAddress),
      (release) => {
        accepted.off("error", ignore);
        if (!this.closed && !accepted.destroyed) return this.open(accepted, release);
        release();
        accepted.destroy();
      },
      (why) => this.refuse(accepted, why),
    );
  }

  private refuse(accepted: net.Socket, why: Refusal): void {
    if (why === "port") this.counters.refusedPortLimit++;
    else this.counters.refusedSourceLimit++;
    const { refusedPortLimit, refusedSourceLimit } = this.counters;
    const what = why === "port" ? "the port's" : "a source's";
    this.notice.warn({ connections: this.conns.size, refusedPortLimit, refusedSourceLimit }, `${what} tcp connection limit reached: new connections reset`);
    kill(accepted, true);
  }

  /** Proxies an admitted connection; `release` gives its slot back when it closes. */
  private open(accepted: net.Socket, release: () => void): void {
    const counters = this.counters;
    const { backendIp, backendPort } = this.binding;
    counters.connectionsTotal++;
    counters.connectionsActive++;

    let client = accepted;
    let closedSockets = 0;
    let done = false;
    // Closures below clear it before it is set: not a const (no TDZ).
    // eslint-disable-next-line prefer-const
    let timer: NodeJS.Timeout | undefined;
    const idle = this.idleTimeoutMs > 0 ? setTimeout(() => conn.close(false, "idle"), this.idleTimeoutMs).unref() : undefined;
    const countIn = (n: number): void => {
      counters.bytesIn += n;
      idle?.refresh();
    };
    const countOut = (n: number): void => {
      counters.bytesOut += n;
      idle?.refresh();
    };
    const toClient = new Pump(
      this.buffers,
      () => backend,
      () => client,
      countOut,
      () => done,
    );
    const toBackend = new Pump(
      this.buffers,
      () => client,
      () => backend,
      countIn,
      () => done,
    );
    accepted.setKeepAlive(true, KEEPALIVE.keepAliveInitialDelay);
    const backend = this.dial({ host: backendIp, port: backendPort, allowHalfOpen: true, noDelay: true, ...KEEPALIVE, onread: toClient.onread });

    const conn: Conn = {
      get client() {
        return client;
      },
      backend,
      close: (reset, why) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearTimeout(idle);
        this.conns.delete(conn);
        counters.connectionsActive--;
        release();
        if (why === "idle") counters.idleTimeouts++;
        else if (why) {
          counters.errors++;
          this.log?.debug({ err: why.message, client: `${client.remoteAddress}:${client.remotePort}` }, "tcp connection failed");
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

    const onClose = (): void => {
      if (++closedSockets === 2) conn.close(false);
    };
    const onClientError = (err: Error): void => conn.close(true, err);
    const onClientClose = (): void => {
      toBackend.release();
      onClose();
    };
    const watch = (s: net.Socket): void => {
      s.on("error", onClientError);
      s.on("close", onClientClose);
    };
    watch(accepted);
    backend.on("close", () => {
      toClient.release();
      if (!done && !backend.readableEnded) conn.close(this.resetOnBackendFailure); // closed without EOF
      onClose();
    });

    const onClientEnd = (): void => void backend.end(); // client SHUT_WR → backend SHUT_WR
    const resumeClient = (): void => void client.resume();
    const onClientData = (chunk: Buffer): void => {
      countIn(chunk.length);
      if (!backend.write(chunk)) client.pause();
      if (chunk.length >= BULK_READ) toReadBuffers();
    };
    // A full 64 KiB read: this is a bulk transfer, worth its own read buffers (rewrap.ts). Short
    // exchanges never pay for the re-wrap (a dup, a second socket object, a close).
    const toReadBuffers = (): void => {
      if (client !== accepted || done) return;
      accepted.pause();
      if (accepted.readableLength > 0) return void accepted.resume(); // bytes already taken off the socket: stay as is
      for (const [event, fn] of [
        ["error", onClientError],
        ["close", onClientClose],
        ["data", onClientData],
        ["end", onClientEnd],
      ] as const) {
        accepted.off(event, fn);
      }
      const wrapped = withReadBuffers(accepted, toBackend.onread);
      if (wrapped === undefined) {
        watch(accepted);
        accepted.on("data", onClientData).on("end", onClientEnd).resume();
        return;
      }
      // The Pump has its own backpressure; a drain from an earlier write must not resume it.
      backend.off("drain", resumeClient);
      client = wrapped;
      watch(wrapped);
      wrapped.setNoDelay(true);
      wrapped.on("end", onClientEnd).resume();
    };

    backend.once("connect", () => {
      clearTimeout(timer);
      if (done) return;
      client.setNoDelay(true);
      if (this.binding.proxyProtocol) backend.write(encodeProxyHeader(this.binding.proxyProtocol, endpointsOf(client)));
      client.on("data", onClientData).on("end", onClientEnd);
      backend.on("drain", resumeClient);
      backend.on("end", () => client.end()); // and the reverse, after queued writes
      client.resume();
    });
  }
}

function ignore(): void {
  // an error with nobody to tell
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
