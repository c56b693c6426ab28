/**
 * What a route handler gives back. Failures carry the HTTP status and a message
 * that names what failed and for which network/endpoint.
 */
export type Answer = { ok: true; body: Record<string, unknown> } | { ok: false; status: number; error: string };

export const ok = (body: Record<string, unknown> = {}): Answer => ({ ok: true, body });

export const fail = (error: string, status = 500): Answer => ({ ok: false, status, error });

/**
 * libnetwork reads `Err` for the network driver and `Error` for IPAM (a 200 with
 * only `Err` counts as IPAM success), so every failure carries both, with a
 * non-200 status.
 */
export function errorBody(message: string): { Err: string; Error: string } {
  return { Err: message, Error: message };
}
