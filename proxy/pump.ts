import type net from "node:net";
import type { ReadBufferPool } from "./read-buffers.js";

/**
 * One direction of a connection, read into pooled `onread` buffers (read-buffers.ts): each read
 * is written to the sink; a buffer whose bytes sit in a pending write is not read into again, the
 * source stops reading until that write has flushed (backpressure, at most one read's worth held).
 */
export class Pump {
  readonly onread: net.OnReadOpts;
  private size: number;
  private current: Buffer | undefined; // where the next read lands
  private pending: Buffer | undefined; // held by a write that has not flushed yet
  private pendingSeq = 0;
  private writeSeq = 0;

  constructor(
    private readonly pool: ReadBufferPool,
    private readonly source: () => net.Socket,
    private readonly sink: () => net.Socket,
    private readonly counted: (n: number) => void,
    private readonly finished: () => boolean,
  ) {
    this.size = pool.minSize;
    this.onread = { buffer: () => this.nextBuffer(), callback: (n, buf) => this.onData(n, buf as Buffer) };
  }

  /** The source has closed: its buffer goes back (unless a write still holds it). */
  release(): void {
    if (this.current !== undefined && this.current !== this.pending) this.pool.give(this.current);
    this.current = undefined;
  }

  private nextBuffer(): Buffer {
    const { pool } = this;
    if (this.current === undefined || this.current === this.pending || this.current.length !== this.size) {
      if (this.current !== undefined && this.current !== this.pending) pool.give(this.current);
      this.current = pool.take(this.size);
      this.size = this.current.length; // the budget may have said no
    }
    return this.current;
  }

  private onData(nread: number, b: Buffer): boolean {
    this.counted(nread);
    const sink = this.sink();
    const seq = ++this.writeSeq;
    sink.write(b.subarray(0, nread), (err) => {
      if (seq !== this.pendingSeq) return;
      this.pendingSeq = 0;
      this.pending = undefined;
      if (err) return this.pool.forget(b); // torn down mid-write: libuv may still hold it, leave it to the GC
      this.pool.give(b);
      if (!this.finished()) this.source().resume();
    });
    this.size = this.pool.nextSize(b.length, nread);
    if (sink.writableLength === 0) return true; // flushed synchronously: reuse the buffer
    this.pending = b;
    this.pendingSeq = seq;
    return false; // stop reading until the sink has taken these bytes
  }
}
