import { StoreError } from "../contracts/store.js";
import { messageOf } from "../../lib/errors.js";

export function statusCodeOf(err: unknown): number | undefined {
  const response = (err as { response?: { statusCode?: number } } | undefined)?.response;
  return response?.statusCode;
}

/** Network-level failures: the agent could not be reached or the connection broke. */
const UNREACHABLE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN"]);

/**
 * Names the agent and says what went wrong in terms an operator can act on.
 * `unavailable` is set when the failure is Consul not being able to answer
 * (agent down, no leader, no servers, timeouts, 5xx): worth retrying. A 4xx
 * is Consul refusing the request (an ACL, a bad request): not worth it.
 */
function describeConsulError(baseUrl: string, err: unknown): { error: Error; unavailable?: string } {
  const endpoint = baseUrl.replace(/\/v1$/, "").replace(/^https?:\/\//, "");
  const detail = err as { message?: string; code?: string; isTimeout?: boolean; cause?: { code?: string } } | undefined;
  const code = detail?.code ?? detail?.cause?.code;
  const status = statusCodeOf(err);
  // Consul's own words are in the response body (the client shortens long ones to "internal server error").
  const raw = (err as { response?: { body?: unknown } } | undefined)?.response?.body;
  const text = typeof raw === "string" ? raw : Buffer.isBuffer(raw) ? raw.toString("utf8") : (detail?.message ?? "");
  const body = text.trim().replace(/\s+/g, " ").slice(0, 200);
  let unavailable: string | undefined;
  let message: string;
  if (detail?.isTimeout) {
    // A server without a leader holds requests (rpc_hold_timeout, 7 s by default) before it says so.
    unavailable = `Consul at ${endpoint} did not answer in time`;
  } else if (code === "ECONNREFUSED") {
    unavailable = `Consul at ${endpoint} refused the connection (is the agent running?)`;
  } else if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    unavailable = `Consul host in ${endpoint} does not resolve`;
  } else if (code !== undefined && UNREACHABLE_CODES.has(code)) {
    unavailable = `Consul at ${endpoint} is unreachable (${code})`;
  } else if (status !== undefined && status >= 500) {
    if (/no (cluster )?leader/i.test(body)) unavailable = `Consul at ${endpoint} has no leader`;
    else if (/no known consul servers|no servers/i.test(body)) unavailable = `Consul at ${endpoint} has no servers to talk to`;
    else if (/rpc error|no path to datacenter|connection refused|EOF/i.test(body)) unavailable = `Consul at ${endpoint} cannot reach its servers (${body})`;
    else unavailable = `Consul at ${endpoint} answered HTTP ${status}${body ? ` (${body})` : ""}`;
  }
  if (unavailable !== undefined) message = unavailable;
  else if (status !== undefined) message = `Consul at ${endpoint} refused the request: HTTP ${status}${body ? `: ${body}` : ""}`;
  else message = `Consul at ${endpoint}: ${messageOf(err)}`;
  return { error: new Error(message, { cause: err }), ...(unavailable === undefined ? {} : { unavailable }) };
}

/** A store error for `op` on `key`, from whatever the client threw. */
export function consulStoreError(baseUrl: string, op: string, key: string, err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const { error, unavailable } = describeConsulError(baseUrl, err);
  return new StoreError(op, key, error, unavailable === undefined ? {} : { unavailable });
}
