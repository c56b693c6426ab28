import { retry } from "../../lib/retry.js";

/**
 * How cluster-store contention is ridden out. Every read → decide → CAS of
 * the IPAM and of the network records runs in `casRounds`: a round re-reads
 * what it needs and either settles (returns a value) or, having lost a CAS to
 * another host, returns undefined to go round again. Rounds pause with the
 * project's one backoff (lib/retry.ts: random, 1 ms doubling to 50 ms, so
 * contending hosts stop retrying in lockstep); after MAX_ROUNDS the caller
 * reports the contention in words (`contended`).
 *
 * Losing a create-only CAS on one candidate (an address, a block, a VNI) and
 * moving on to the next one within a round is not a new round.
 */
const MAX_ROUNDS = 20;

/**
 * A record left half-way (claiming/releasing) by a host that died is taken
 * over after this long. Far above any real operation, and above clock skew.
 */
export const STALE_AFTER_MS = 30_000;

/** The first value a round settles on, or undefined when all MAX_ROUNDS lost their CAS. */
export function casRounds<T>(round: () => Promise<T | undefined>): Promise<T | undefined> {
  return retry({ attempts: MAX_ROUNDS, minMs: 1, maxMs: 50 }, round);
}

export function contended(what: string): string {
  return `${what}: the cluster store stayed contended for ${MAX_ROUNDS} attempts, try again`;
}
