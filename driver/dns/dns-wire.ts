/**
 * The DNS wire format as the listener needs it: dns-packet decodes questions
 * and encodes our answers; the few bytes read by hand (the header's id and QR
 * bit, TCP's 2-byte length) are here and nowhere else. See dns-listener.ts
 * for why those bytes are read by hand.
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

export type Parsed = { kind: "query"; msg: DecodedMessage } | { kind: "malformed"; id: number; flags: number } | { kind: "drop"; reason: string };

export function parseMessage(raw: Buffer): Parsed {
  let msg: DecodedMessage;
  try {
    msg = dnsPacket.decode(raw) as DecodedMessage;
  } catch {
    const header = readHeader(raw);
    if (header === undefined) return { kind: "drop", reason: "shorter than a DNS header" };
    if (header.response) return { kind: "drop", reason: "an undecodable response" };
    return { kind: "malformed", id: header.id, flags: header.flags };
  }
  if (msg.type === "response") return { kind: "drop", reason: "a response, not a query" };
  return { kind: "query", msg };
}

/** The header's id and flags, read directly: for what dns-packet cannot decode (see the design note). */
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

/** Splits a TCP stream into messages. undefined: a zero-length message, i.e. not DNS. */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] | undefined {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: Buffer[] = [];
    while (this.pending.length >= 2) {
      const len = this.pending.readUInt16BE(0);
      if (len === 0) return undefined;
      if (this.pending.length < 2 + len) break;
      out.push(this.pending.subarray(2, 2 + len));
      this.pending = this.pending.subarray(2 + len);
    }
    return out;
  }
}
