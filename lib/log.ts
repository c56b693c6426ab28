import { pino, type DestinationStream, type Logger } from "pino";
import type { LogRing } from "./log-ring.js";

export type { Logger };

/**
 * Where a secret could ride along into a log line, for the redaction safety
 * net: ACL tokens in request headers and `token` fields, and whole HTTP
 * request/response objects that client errors carry (a Node request keeps its
 * raw header block, token included). Code should never log these; this catches
 * the case that does.
 */
const REDACT_PATHS = [
  "token",
  "*.token",
  "headers.authorization",
  "*.headers.authorization",
  'headers["x-consul-token"]',
  '*.headers["x-consul-token"]',
  "err.response",
  "err.request",
  "err.req",
  "err.res",
  "err.config",
  "err.headers",
];
/** Fields of a thrown object that hold transport state rather than words about the failure. */
const TRANSPORT_FIELDS = ["response", "request", "req", "res", "headers", "config", "options", "agent", "socket", "client"];
const REDACTED = "[redacted]";

export interface LoggerOptions {
  /** Where lines go (default stdout). */
  destination?: DestinationStream;
  /** Values (an ACL token) replaced by "[redacted]" wherever they appear in a line, whatever carried them there. */
  secrets?: readonly string[];
  /** Also keeps every line, as written (secrets already scrubbed), in this ring (`tsoverlay support-bundle`). */
  ring?: LogRing;
}

/** Structured JSON-lines logger shared by every layer; one line per event. */
export function createLogger(level: string, opts: LoggerOptions = {}): Logger {
  const secrets = (opts.secrets ?? []).filter((s) => s !== "");
  const options = {
    level,
    base: { svc: "tsoverlay", pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
    serializers: { err: serializeError },
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    ...(secrets.length === 0 ? {} : { hooks: { streamWrite: (line: string) => scrubSecrets(line, secrets) } }),
  };
  const ring = opts.ring;
  if (ring === undefined) return opts.destination === undefined ? pino(options) : pino(options, opts.destination);
  // pino hands a destination each line after the streamWrite hook: the ring keeps what stdout gets.
  const out = opts.destination ?? pino.destination(1);
  return pino(options, {
    write(line: string): void {
      ring.push(line);
      out.write(line);
    },
  });
}

/** pino's error serializer (type, message and stack with causes, own fields) without transport objects. */
function serializeError(err: unknown): unknown {
  const out: unknown = pino.stdSerializers.err(err as Error);
  if (out === err || typeof out !== "object" || out === null) return out;
  for (const field of TRANSPORT_FIELDS) delete (out as Record<string, unknown>)[field];
  return out;
}

/** The text with every secret value replaced by "[redacted]", as it is given and as it appears inside a JSON string. */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    if (secret === "") continue;
    // As it appears inside a JSON string, and as given.
    for (const form of new Set([JSON.stringify(secret).slice(1, -1), secret])) {
      if (out.includes(form)) out = out.split(form).join(REDACTED);
    }
  }
  return out;
}
