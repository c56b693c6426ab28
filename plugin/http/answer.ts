import type { Cause, DomainError } from "../../driver/errors.js";

/**
 * What a route handler gives back. Failures carry the HTTP status and a message
 * that names what failed and for which network/endpoint.
 */
export type Answer = { ok: true; body: Record<string, unknown> } | { ok: false; status: number; error: string };

export const ok = (body: Record<string, unknown> = {}): Answer => ({ ok: true, body });

export const fail = (error: string, status = 500): Answer => ({ ok: false, status, error });

/**
 * The one place where a domain error's cause becomes an HTTP status; its words
 * go to Docker unchanged. Not-found is not 404: to libnetwork's plugin client
 * a 404 means "method not implemented", and on Program/RevokeExternalConnectivity
 * it counts as success — an unknown endpoint's ports would go unpublished
 * without a word. Docker reads only the words; the statuses are for logs.
 */
const STATUS_OF: Record<Cause, number> = {
  "bad-request": 400,
  "not-found": 500,
  conflict: 409,
  "store-unavailable": 503,
  kernel: 500,
  internal: 500,
};

export function failed(err: DomainError): Answer {
  return fail(err.message, STATUS_OF[err.cause]);
}

/**
 * libnetwork reads `Err` for the network driver and `Error` for IPAM (a 200 with
 * only `Err` counts as IPAM success), so every failure carries both, with a
 * non-200 status.
 */
export function errorBody(message: string): { Err: string; Error: string } {
  return { Err: message, Error: message };
}
