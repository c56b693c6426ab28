import { setTimeout as sleep } from "node:timers/promises";
import { backoffMs } from "../../lib/retry.js";

/**
 * How cluster-store contention is ridden out: every read → decide → CAS loop
 * of the IPAM and of the network records goes round at most MAX_ATTEMPTS
 * times, pausing between rounds with the project's one backoff (lib/retry.ts),
 * then reports the contention in words.
 */

/**
 * How many rounds of read → decide → CAS a cluster operation gets before it
 * gives up with an error. A round re-reads the store; losing a create-only CAS
 * on one candidate (address, block, VNI) and moving to the next is not a round.
 */
export const MAX_ATTEMPTS = 20;

/**
 * A record left half-way (claiming/releasing) by a host that died is taken
 * over after this long. Far above any real operation, and above clock skew.
 */
export const STALE_AFTER_MS = 30_000;

/** Random, growing pause between rounds (1 ms doubling to 50 ms) so contending hosts stop retrying in lockstep. */
export async function backoff(attempt: number): Promise<void> {
  await sleep(backoffMs(attempt, 1, 50));
}

export function giveUp(what: string): string {
  return `${what}: the cluster store stayed contended for ${MAX_ATTEMPTS} attempts, try again`;
}
