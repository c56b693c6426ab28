/**
 * Read buffers for both directions of a TCP connection.
 *
 * Why large buffers: Node reads a socket 64 KiB at a time into a fresh buffer; reading into
 * ≥ 1 MiB user buffers (`onread`) means fewer syscalls and JS calls, and measured ~1.2×
 * docker-proxy backend → client where plain `pipe()` reached ~0.7×. Node 20 cannot give an
 * accepted socket an `onread` buffer, so the client side is re-wrapped first (rewrap.ts).
 *
 * Node calls the `onread.buffer` generator when the handle opens and again after every read; the
 * buffer it returns is where the *next* read lands, so:
 * - a buffer whose bytes sit in a pending write must not be read into again — the TCP
 *   proxy pauses that side and the generator hands out another buffer (this is also the
 *   backpressure: at most one read's worth is held in user space per connection);
 * - every connection always owns one buffer, so a fixed 1 MiB would cost up to 1 MiB per
 *   connection once touched. Sizes therefore adapt per connection: start at `minSize`, double
 *   whenever a read fills the buffer, halve when a read uses under a quarter of it;
 * - what connections hold beyond `minSize` is limited by a shared `budget` (default 64 MiB per
 *   pool): when it is spent, connections stay at `minSize` until others shrink or close. Memory
 *   is thus bounded whatever the connection count. A connection that goes idle right after a
 *   bulk transfer keeps its large buffer (and its share of the budget) until its next read or
 *   its close: Node offers no way to swap the buffer of an idle handle.
 * Released buffers go to a small free list so bulk transfers reuse memory. One pool per
 * ProxyManager (no process-global state).
 */
export class ReadBufferPool {
  readonly minSize: number;
  readonly maxSize: number;
  readonly budget: number;
  /** Bytes beyond minSize in buffers handed out and not yet given back. */
  private lent = 0;
  private readonly free = new Map<number, Buffer[]>();

  constructor(
    minSize = 16 * 1024,
    maxSize = 1024 * 1024,
    budget = 64 * 1024 * 1024,
    private readonly keepPerSize = 4,
  ) {
    this.minSize = pow2AtLeast(Math.max(1024, minSize));
    this.maxSize = Math.max(this.minSize, pow2AtLeast(maxSize));
    this.budget = Math.max(0, budget);
  }

  /** A buffer of `size` bytes, or of minSize when the budget does not allow more. */
  take(size: number): Buffer {
    if (size > this.minSize && this.lent + size - this.minSize > this.budget) size = this.minSize;
    this.lent += size - this.minSize;
    return this.free.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size);
  }

  /** Returns a buffer no socket or pending write refers to any more. */
  give(buf: Buffer): void {
    this.lent -= buf.length - this.minSize;
    const list = this.free.get(buf.length);
    if (list === undefined) this.free.set(buf.length, [buf]);
    else if (list.length < this.keepPerSize) list.push(buf);
  }

  /** Settles the account of a buffer left to the garbage collector (a write failed while holding it). */
  forget(buf: Buffer): void {
    this.lent -= buf.length - this.minSize;
  }

  /** The size wanted for the next read after `nread` bytes landed in a buffer of `size`. */
  nextSize(size: number, nread: number): number {
    if (nread >= size) return Math.min(this.maxSize, size * 2);
    if (nread < size / 4) return Math.max(this.minSize, size / 2);
    return size;
  }

  /** Bytes beyond minSize held by connections, and parked in the free list (for tests and status). */
  usage(): { lent: number; pooled: number } {
    let pooled = 0;
    for (const [size, list] of this.free) pooled += size * list.length;
    return { lent: this.lent, pooled };
  }
}

function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}
