/**
 * What the `consul` client throws, in words an operator can act on — and only
 * those words. A client error carries the HTTP request and response objects,
 * and the request keeps its raw header block, ACL token included; so nothing
 * here passes a client error on, not even as a `cause`: the error made here
 * holds the message, the HTTP status and the system error code, nothing else.
 */
import { StoreError } from "../contracts/store.js";
import { messageOf } from "../../lib/errors.js";

/** A failed Consul request, reduced to safe fields (see the module note). */
export class ConsulError extends Error {
  override readonly name = "ConsulError";

  constructor(
    message: string,
    readonly statusCode: number | undefined,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

export function statusCodeOf(err: unknown): number | undefined {
  const response = (err as { response?: { statusCode?: number } } | undefined)?.response;
  return response?.statusCode;
}

/** Network-level failures: the agent could not be reached or the connection broke. */
const UNREACHABLE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "ENOENT"]);

/** OpenSSL's codes for a certificate of the agent that does not verify against the CAs we trust. */
const UNTRUSTED_CERT_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "INVALID_CA",
]);
const EXPIRED_CERT_CODES = new Set(["CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID"]);

/** The words of a TLS failure, or undefined when `code` is not one. */
function tlsProblem(code: string | undefined, detail: { message?: string; reason?: string } | undefined): string | undefined {
  if (code === undefined) return undefined;
  if (UNTRUSTED_CERT_CODES.has(code)) {
    return `TLS: the agent's certificate is not signed by a CA we trust (${code}): give the CA that signs it in CONSUL_CACERT or CONSUL_CAPATH`;
  }
  if (EXPIRED_CERT_CODES.has(code)) return `TLS: the agent's certificate is outside its validity period (${code})`;
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    const reason = typeof detail?.reason === "string" ? `: ${detail.reason.replace(/:\s*$/, "")}` : "";
    return `TLS: the agent's certificate is not valid for the name we check${reason}; set CONSUL_TLS_SERVER_NAME to a name the certificate holds`;
  }
  if (
    /^ERR_SSL_.*ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|ACCESS_DENIED|HANDSHAKE_FAILURE|CERTIFICATE_EXPIRED|UNSUPPORTED_CERTIFICATE)$/.test(
      code,
    )
  ) {
    return `TLS: the agent refused the connection's client certificate, or wants one (${code}): with verify_incoming, set CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY to a certificate signed by a CA the agent trusts`;
  }
  // Node reports a plain HTTP answer to its TLS hello as EPROTO with OpenSSL's words, or with OpenSSL's code.
  const notTls = code === "EPROTO" && /wrong version number|packet length too long|http request/i.test(detail?.message ?? "");
  if (notTls || code === "ERR_SSL_WRONG_VERSION_NUMBER" || code === "ERR_SSL_PACKET_LENGTH_TOO_LONG" || code === "ERR_SSL_HTTP_REQUEST") {
    return `TLS: the agent does not answer TLS at this address (${code}): is it its HTTP port rather than its HTTPS port (CONSUL_HTTP_SSL, https://)?`;
  }
  if (code === "EPROTO" || code.startsWith("ERR_SSL_") || code.startsWith("ERR_TLS_")) return `TLS: the handshake with the agent failed (${code})`;
  return undefined;
}

/**
 * Names the agent and says what went wrong. `unavailable` is set when the
 * failure is Consul not being able to answer (agent down, no leader, no
 * servers, timeouts, 5xx): worth retrying. A 4xx is Consul refusing the
 * request (an ACL, a bad request), a TLS failure is a setting to fix: not worth it.
 */
function describeConsulError(endpoint: string, err: unknown, context: ErrorContext): { error: ConsulError; unavailable?: string } {
  const scrub = context.scrub ?? ((text: string) => text);
  const detail = err as { message?: string; code?: string; isTimeout?: boolean; reason?: string; cause?: { code?: string } } | undefined;
  const code = typeof detail?.code === "string" ? detail.code : typeof detail?.cause?.code === "string" ? detail.cause.code : undefined;
  const status = statusCodeOf(err);
  // Consul's own words are in the response body (the client shortens long ones to "internal server error").
  const raw = (err as { response?: { body?: unknown } } | undefined)?.response?.body;
  const text = typeof raw === "string" ? raw : Buffer.isBuffer(raw) ? raw.toString("utf8") : status !== undefined ? (detail?.message ?? "") : "";
  const body = scrub(text.trim().replace(/\s+/g, " ").slice(0, 200));
  const tls = tlsProblem(code, detail);
  let unavailable: string | undefined;
  let message: string;
  if (detail?.isTimeout) {
    // A server without a leader holds requests (rpc_hold_timeout, 7 s by default) before it says so.
    unavailable = `Consul at ${endpoint} did not answer in time`;
  } else if (tls !== undefined) {
    unavailable = undefined;
  } else if (code === "ECONNREFUSED") {
    unavailable = `Consul at ${endpoint} refused the connection (is the agent running?)`;
  } else if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    unavailable = `Consul host in ${endpoint} does not resolve`;
  } else if (code === "ENOENT") {
    unavailable = `Consul at ${endpoint}: no such socket (is the agent running?)`;
  } else if (code === "ECONNRESET" && context.tls) {
    // An agent with verify_incoming may close a connection whose client certificate it does not trust, before its TLS alert reaches us.
    unavailable = `Consul at ${endpoint} is unreachable (ECONNRESET); if it persists: an agent with verify_incoming drops TLS connections whose client certificate it does not trust (CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY)`;
  } else if (code !== undefined && UNREACHABLE_CODES.has(code)) {
    unavailable = `Consul at ${endpoint} is unreachable (${code})`;
  } else if (status !== undefined && status >= 500) {
    if (/no (cluster )?leader/i.test(body)) unavailable = `Consul at ${endpoint} has no leader`;
    else if (/no known consul servers|no servers/i.test(body)) unavailable = `Consul at ${endpoint} has no servers to talk to`;
    else if (/rpc error|no path to datacenter|connection refused|EOF/i.test(body)) unavailable = `Consul at ${endpoint} cannot reach its servers (${body})`;
    else unavailable = `Consul at ${endpoint} answered HTTP ${status}${body ? ` (${body})` : ""}`;
  }
  if (tls !== undefined) message = `Consul at ${endpoint}: ${tls}`;
  else if (unavailable !== undefined) message = unavailable;
  else if (status !== undefined) message = `Consul at ${endpoint} refused the request: HTTP ${status}${body ? `: ${body}` : ""}`;
  else message = `Consul at ${endpoint}: ${scrub(messageOf(err))}`;
  return { error: new ConsulError(message, status, code), ...(unavailable === undefined ? {} : { unavailable }) };
}

export interface ErrorContext {
  /** Removes secrets from text taken from the failure (Consul's answer, the client's words). */
  scrub?: (text: string) => string;
  /** The connection is TLS: a reset may be the agent refusing our client certificate. */
  tls?: boolean;
}

/** A store error for `op` on `key`, from whatever the client threw. */
export function consulStoreError(endpoint: string, op: string, key: string, err: unknown, context: ErrorContext = {}): StoreError {
  if (err instanceof StoreError) return err;
  const { error, unavailable } = describeConsulError(endpoint, err, context);
  return new StoreError(op, key, error, unavailable === undefined ? {} : { unavailable });
}
