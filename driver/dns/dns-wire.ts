/**
 * The DNS wire format as the listener needs it: dns-packet decodes questions
 * and encodes our answers; the few bytes read by hand (the 12-byte header,
 * TCP's 2-byte length) are here and nowhere else. See dns-listener.ts for why
 * those bytes are read by hand.
 *
 * Design note (screening). A client's message is screened on its header and
 * size before dns-packet sees it: dns-packet decodes every record of every
 * section before anything can look at the question count, so a 64 KB "query"
 * with 4,077 answer records cost 35 ms of the one event loop that also serves
 * Docker's calls. A query has one question, no answer or authority records
 * and at most one additional record (EDNS's OPT), and fits in 512 bytes
 * without EDNS and in MAX_QUERY_SIZE with it: anything else is answered
 * FORMERR (NOTIMP for another opcode) from its header alone, or dropped when
 * it is no query at all. What passes is small, so decoding it is cheap.
 */
import dnsPacket from "dns-packet";
import type { Answer, DecodedPacket, OptAnswer, Packet, Question } from "dns-packet";
import type { QueryType } from "../contracts/names.js";

/** RFC 1035: a UDP answer without EDNS fits in 512 bytes. */
export const CLASSIC_UDP_SIZE = 512;
/** The largest EDNS UDP size we honour (and advertise). */
export const MAX_UDP_SIZE = 4096;
/** A TCP message's length is 16 bits. */
export const MAX_TCP_SIZE = 65535;
/**
 * The largest query accepted, over UDP (with EDNS) and TCP: one question (a
 * name is at most 255 bytes) and an OPT record with its options (a cookie,
 * RFC 8467's padding to a multiple of 128) fit many times over.
 */
export const MAX_QUERY_SIZE = 4096;
export const HEADER_BYTES = 12;
export const QR_BIT = 0x8000;
/** The opcode's four bits in dns-packet's `flags` (which holds the whole second header word but QR). */
export const OPCODE_BITS = 0x7800;
/** The rcode sits in the low four bits of `flags`. */
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = (typeof RCODE)[keyof typeof RCODE];

export type Transport = "udp" | "tcp";

/** What dns-packet's decode returns at run time (its types leave out opcode and rcode). */
export interface DecodedMessage extends DecodedPacket {
  opcode: string;
  rcode: string;
}

/** A message as its header and size show it: a query worth decoding, one to answer from its header, or none to answer at all. */
export type Screened =
  | { kind: "query"; id: number; flags: number }
  | { kind: "reject"; rcode: typeof RCODE.FORMERR | typeof RCODE.NOTIMP; id: number; flags: number; reason: string }
  | { kind: "drop"; reason: string };

/** The opcode QUERY (0); any other is answered NOTIMP. */
const OPCODE_QUERY = 0;

/** Reads the header and the size only, never the records (see the design note). */
export function screenQuery(raw: Buffer, transport: Transport): Screened {
  const header = readHeader(raw);
  if (header === undefined) return { kind: "drop", reason: "shorter than a DNS header" };
  if (header.response) return { kind: "drop", reason: "a response, not a query" };
  const reject = (rcode: typeof RCODE.FORMERR | typeof RCODE.NOTIMP, reason: string): Screened => ({
    kind: "reject",
    rcode,
    id: header.id,
    flags: header.flags,
    reason,
  });
  if ((header.flags & OPCODE_BITS) >> 11 !== OPCODE_QUERY) return reject(RCODE.NOTIMP, "an opcode other than QUERY");
  const [qd, an, ns, ar] = [raw.readUInt16BE(4), raw.readUInt16BE(6), raw.readUInt16BE(8), raw.readUInt16BE(10)];
  // Constant reasons: a flood of these must not cost a string each.
  if (qd !== 1) return reject(RCODE.FORMERR, "not one question");
  if (an !== 0 || ns !== 0 || ar > 1) return reject(RCODE.FORMERR, "answer, authority or more than one additional record");
  if (raw.length > MAX_QUERY_SIZE) return reject(RCODE.FORMERR, "larger than any query");
  if (transport === "udp" && ar === 0 && raw.length > CLASSIC_UDP_SIZE) return reject(RCODE.FORMERR, "over 512 bytes over UDP without EDNS");
  return { kind: "query", id: header.id, flags: header.flags };
}

/** A screened query decoded; undefined when dns-packet cannot decode it (answered FORMERR). */
export function decodeQuery(raw: Buffer): DecodedMessage | undefined {
  try {
    return dnsPacket.decode(raw) as DecodedMessage;
  } catch {
    return undefined;
  }
}

/** The header's id and flags (QR apart), read directly (see the design note). */
export function readHeader(buf: Buffer): { id: number; flags: number; response: boolean } | undefined {
  if (buf.length < HEADER_BYTES) return undefined;
  const word = buf.readUInt16BE(2);
  return { id: buf.readUInt16BE(0), flags: word & ~QR_BIT, response: (word & QR_BIT) !== 0 };
}

export function queryTypeOf(q: Question): QueryType {
  return q.type === "A" || q.type === "AAAA" ? q.type : "other";
}

/** How large an answer may be: 512 bytes over UDP, or the client's EDNS size (512 to 4096); TCP's 16-bit length. */
export function sizeLimit(transport: Transport, opt: OptAnswer | undefined): number {
  if (transport === "tcp") return MAX_TCP_SIZE;
  if (opt === undefined) return CLASSIC_UDP_SIZE;
  return Math.min(Math.max(opt.udpPayloadSize, CLASSIC_UDP_SIZE), MAX_UDP_SIZE);
}

export interface ReplySpec {
  id: number;
  queryFlags: number;
  rcode: Rcode;
  question?: Question;
  authoritative?: boolean;
  answers?: Answer[];
  /** The query had an OPT record: the answer carries one too (RFC 6891). */
  edns?: boolean;
  /** Answers that do not fit are dropped and TC is set. */
  limit?: number;
}

/** Our own answer: the query's id, opcode, RD and CD; RA set; AA when authoritative; truncated to the limit (TC). */
export function encodeReply(r: ReplySpec): { bytes: Buffer; truncated: boolean } {
  let flags = (r.queryFlags & (OPCODE_BITS | dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED)) | dnsPacket.RECURSION_AVAILABLE | r.rcode;
  if (r.authoritative === true) flags |= dnsPacket.AUTHORITATIVE_ANSWER;
  const answers = [...(r.answers ?? [])];
  const packet: Packet = {
    type: "response",
    id: r.id,
    flags,
    questions: r.question === undefined ? [] : [r.question],
    answers,
    additionals: r.edns === true ? [ourOpt()] : [],
  };
  const limit = r.limit ?? MAX_TCP_SIZE;
  const truncated = dnsPacket.encodingLength(packet) > limit;
  if (truncated) {
    while (answers.length > 0 && dnsPacket.encodingLength(packet) > limit) answers.pop();
    packet.flags = flags | dnsPacket.TRUNCATED_RESPONSE;
  }
  return { bytes: dnsPacket.encode(packet), truncated };
}

export function ourOpt(): OptAnswer {
  return { type: "OPT", name: ".", udpPayloadSize: MAX_UDP_SIZE, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] };
}

/** True for a response (QR) with this id: the only reply a forward accepts. */
export function isReplyTo(buf: Buffer, id: number): boolean {
  const header = readHeader(buf);
  return header !== undefined && header.response && header.id === id;
}

// ---- TCP framing ----

/** A message with TCP's 2-byte length in front. */
export function frame(msg: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(msg.length);
  return Buffer.concat([len, msg]);
}

/** The messages a chunk completed, or why the stream is no DNS (then nothing more is read). */
export type Frames = { ok: true; messages: Buffer[] } | { ok: false; reason: string };

/**
 * Splits a TCP stream into messages. A length of 0, or above `maxLength`, is
 * refused as soon as its 2-byte prefix is in: an oversized message is never
 * buffered.
 */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly maxLength = MAX_TCP_SIZE) {}

  push(chunk: Buffer): Frames {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const messages: Buffer[] = [];
    while (this.pending.length >= 2) {
      const len = this.pending.readUInt16BE(0);
      if (len === 0) return { ok: false, reason: "a message of length 0" };
      if (len > this.maxLength) return { ok: false, reason: `a message of ${len} bytes, more than ${this.maxLength}` };
      if (this.pending.length < 2 + len) break;
      messages.push(this.pending.subarray(2, 2 + len));
      this.pending = this.pending.subarray(2 + len);
    }
    return { ok: true, messages };
  }

  /** Bytes of a message not yet complete are waiting. */
  get partial(): boolean {
    return this.pending.length > 0;
  }
}
