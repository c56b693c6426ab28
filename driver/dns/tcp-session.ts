/**
 * One TCP connection to the DNS listener: length-prefixed queries in, answers
 * out as they are ready (RFC 7766 allows them out of order).
 *
 * Design note. A connection holds a slot of a small table (per client and in
 * all), so it must not be kept for free. Two clocks, neither of which a
 * trickle of bytes can reset:
 *  - a message deadline: a message must be whole messageTimeoutMs after its
 *    first byte (a resolver writes a query in one segment; a client that
 *    sends one byte every few hundred ms is holding the slot, not asking);
 *  - an idle limit: with no message begun, none queued and none in flight,
 *    the connection is closed after idleTimeoutMs. Only a whole message or
 *    the last answer going out starts it again.
 * Before, the idle timer was the socket's, which every byte reset. A message
 * longer than maxMessageBytes closes the connection when its 2-byte length
 * arrives, before anything of it is buffered; at most maxInFlight messages
 * of a connection are served at once (reading pauses beyond), and reading
 * also pauses (and serving stops) while our answers wait in the socket for a
 * client that does not read them, so a connection holds at most a few
 * answers in memory. While reading is paused a message's clock does not run
 * (the rest of it waits unread in the kernel; slow upstreams must not cost
 * a pipelining client its connection), but the idle clock runs whenever only
 * the client can move things on, and a client that reads none of its answers
 * is closed after idleTimeoutMs.
 */
import type net from "node:net";
import { FrameReader, frame } from "./dns-wire.js";

export interface TcpSessionOptions {
  /** With nothing to do (no message begun, none queued or in flight), the connection is closed after this long. */
  idleTimeoutMs: number;
  /** A message must be whole this long after its first byte, or the connection is closed. */
  messageTimeoutMs: number;
  /** Messages of this connection served at once. */
  maxInFlight: number;
  /** Messages received and not yet served: beyond this the client is not a resolver, and the connection is closed. */
  maxQueued: number;
  /** A message announced longer than this closes the connection. */
  maxMessageBytes: number;
}

export interface TcpSessionHandlers {
  /** The answer to one message (undefined: none). Never rejects. */
  serve(msg: Buffer): Promise<Buffer | undefined>;
  /** Whole messages received (before they are served). */
  received(n: number): void;
  /** The connection was closed because of what the client did: why, and how many messages went unanswered with it. */
  closedFor(reason: string, unanswered: number): void;
}

export function serveTcpSession(sock: net.Socket, opts: TcpSessionOptions, h: TcpSessionHandlers): void {
  const reader = new FrameReader(opts.maxMessageBytes);
  const queue: Buffer[] = [];
  let inFlight = 0;
  /** Reading the socket (not paused for queries in flight, or for a client that does not read its answers). */
  let reading = true;
  /** The client has sent FIN: answer what it asked, then close our side. */
  let ended = false;
  let idleTimer: NodeJS.Timeout | undefined;
  let messageTimer: NodeJS.Timeout | undefined;

  const closeFor = (reason: string, unanswered: number): void => {
    if (sock.destroyed) return;
    queue.length = 0;
    h.closedFor(reason, unanswered);
    sock.destroy();
  };
  const startMessageClock = (): void => {
    clearTimeout(messageTimer);
    messageTimer = setTimeout(() => closeFor(`a message not whole ${opts.messageTimeoutMs} ms after its first byte`, 0), opts.messageTimeoutMs);
  };
  const stopMessageClock = (): void => {
    clearTimeout(messageTimer);
    messageTimer = undefined;
  };
  /**
   * Starts the idle clock when only the client can move things on: it does
   * not read its answers, or nothing is queued or in flight and no message
   * of it is arriving; stops it otherwise.
   */
  const checkIdle = (): void => {
    const idle = sock.writableNeedDrain || (queue.length === 0 && inFlight === 0 && !(reader.partial && reading));
    if (!idle || sock.destroyed) {
      clearTimeout(idleTimer);
      idleTimer = undefined;
    } else if (idleTimer === undefined) {
      idleTimer = setTimeout(() => closeFor(`idle for ${opts.idleTimeoutMs} ms`, 0), opts.idleTimeoutMs);
    }
  };
  /** While we do not read, a message's clock does not run: what it sent meanwhile waits in the kernel, unread; it gets its whole deadline again. */
  const setReading = (on: boolean): void => {
    if (on === reading || sock.destroyed) return;
    reading = on;
    if (on) {
      sock.resume();
      if (reader.partial) startMessageClock();
    } else {
      sock.pause();
      stopMessageClock();
    }
  };
  const endIfDone = (): void => {
    if (ended && inFlight === 0 && queue.length === 0 && !sock.destroyed) sock.end();
  };
  const pump = (): void => {
    // Answers waiting in the socket for the client to read them: nothing more is served until it does.
    while (inFlight < opts.maxInFlight && queue.length > 0 && !sock.writableNeedDrain && !sock.destroyed) {
      const query = queue.shift()!;
      inFlight++;
      void h.serve(query).then((reply) => {
        inFlight--;
        if (reply !== undefined && !sock.destroyed) sock.write(frame(reply));
        pump();
        checkIdle();
        endIfDone();
      });
    }
    setReading(!(queue.length > 0 || inFlight >= opts.maxInFlight || sock.writableNeedDrain));
  };

  sock.setNoDelay(true);
  sock.on("close", () => {
    clearTimeout(idleTimer);
    stopMessageClock();
  });
  sock.on("drain", () => {
    pump();
    checkIdle();
  });
  sock.on("data", (chunk: Buffer) => {
    const wasPartial = reader.partial;
    const frames = reader.push(chunk);
    // The message that is no DNS counts as unanswered too.
    if (!frames.ok) return closeFor(frames.reason, queue.length + 1);
    const messages = frames.messages;
    // A message that began in this chunk gets a deadline of its own; one still arriving keeps the one it had.
    if (!reader.partial) stopMessageClock();
    else if (!wasPartial || messages.length > 0 || messageTimer === undefined) startMessageClock();
    if (messages.length > 0) {
      h.received(messages.length);
      queue.push(...messages);
      if (queue.length > opts.maxQueued) return closeFor(`${queue.length} messages sent without waiting for answers`, queue.length);
      pump();
    }
    checkIdle();
  });
  sock.on("end", () => {
    ended = true;
    endIfDone();
  });
  checkIdle();
}
