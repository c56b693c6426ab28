/**
 * What every rtnetlink request shares (links.ts, neighbors.ts, routes.ts and
 * their callers): a deadline, errors that name the operation and what it was
 * done to, and the encodings of attributes, addresses and MACs. Addresses and
 * MACs are parsed by lib/net.ts; here they only become Buffers.
 */
import { inspect } from "node:util";
import { AttrStream, FlagsNew, type StreamData } from "netlink";
import { ipFamilyOf, ipToBytes, macToBytes } from "../../lib/net.js";

/** Every request gets a deadline: a lost reply must not hang the plugin. */
const REQUEST_TIMEOUT_MS = 5_000;

/** Request options: a plain request, create-only (EEXIST if present), create-or-replace. */
export const PLAIN = { timeout: REQUEST_TIMEOUT_MS };
export const CREATE_EXCL = { flags: FlagsNew.CREATE | FlagsNew.EXCL, timeout: REQUEST_TIMEOUT_MS };
export const CREATE_REPLACE = { flags: FlagsNew.CREATE | FlagsNew.REPLACE, timeout: REQUEST_TIMEOUT_MS };

export const AF_INET = 2;
const AF_INET6 = 10;

/** A failed netlink operation, naming what it was done to. */
export class NetlinkError extends Error {
  constructor(
    readonly op: string,
    readonly subject: string,
    /** Kernel error name (e.g. "EEXIST") when the kernel rejected the request. */
    readonly code: string | undefined,
    cause?: unknown,
  ) {
    const detail = cause instanceof Error ? cause.message : cause === undefined ? "" : typeof cause === "string" ? cause : inspect(cause);
    super(`${subject}: ${op} failed${detail ? `: ${detail}` : ""}`, { cause });
    this.name = "NetlinkError";
  }
}

/** node-netlink reports kernel errors only as `Error("Request rejected: EEXIST")`. */
function kernelErrorCode(err: unknown): string | undefined {
  if (err instanceof NetlinkError) return err.code;
  const m = err instanceof Error ? /^Request rejected: (\S+)/.exec(err.message) : null;
  return m?.[1];
}

/** Runs a request; kernel errors whose code is in `ok` resolve to undefined. */
export async function nlCall<T>(op: string, subject: string, fn: () => Promise<T>, ok: readonly string[] = []): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    const code = kernelErrorCode(err);
    if (code !== undefined && ok.includes(code)) return undefined;
    throw new NetlinkError(op, subject, code, err);
  }
}

// ---------------------------------------------------------------- encodings

/** Serialises node-netlink's lazy attribute stream into one Buffer. */
export function encodeAttrs(data: StreamData): Buffer {
  const s = new AttrStream();
  s.emit(data);
  return Buffer.concat(s.bufs);
}

/** An IPv4 or IPv6 address as the 4 or 16 bytes netlink carries (decode with lib/net's ipFromBytes). */
export function ipToBuffer(ip: string): Buffer {
  return Buffer.from(ipToBytes(ip));
}

/** A MAC as 6 bytes (decode with lib/net's macFromBytes). */
export function macToBuffer(mac: string): Buffer {
  return Buffer.from(macToBytes(mac));
}

/** The address family (AF_INET / AF_INET6) of an address. */
export function addressFamily(ip: string): number {
  return ipFamilyOf(ip) === 4 ? AF_INET : AF_INET6;
}
