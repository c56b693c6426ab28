/**
 * The domain's one error contract. Every driver and IPAM operation returns
 * an Outcome: its value, or a DomainError whose `cause` says what kind of
 * failure it is and whose `message` says, in words, what failed for which
 * network, endpoint or address. The HTTP edge maps causes to statuses in one
 * place (plugin/http/answer.ts); the message is what `docker` prints.
 *
 *   bad-request        the request cannot be right (an invalid subnet, an unknown option)
 *   not-found          it names a network, endpoint or pool this host does not have
 *   conflict           it collides with the cluster's state (in use, overlapping, mismatching)
 *   store-unavailable  the cluster store did not answer within the retry budget
 *   kernel             programming the kernel failed (a link, a route, an iptables rule)
 *   internal           anything else: a bug, or a store that refused the request
 */
import { failure, type Result } from "../lib/result.js";
import { StoreError } from "./contracts/store.js";
import { messageOf } from "../lib/errors.js";

export type Cause = "bad-request" | "not-found" | "conflict" | "store-unavailable" | "kernel" | "internal";

export interface DomainError {
  readonly cause: Cause;
  readonly message: string;
}

export type Outcome<T> = Result<T, DomainError>;

export function refuse(cause: Cause, message: string): Result<never, DomainError> {
  return failure({ cause, message });
}

/** The same error with what it happened to in front ("endpoint e1 of network n: …"). */
export function within(context: string, err: DomainError): DomainError {
  return { cause: err.cause, message: `${context}: ${err.message}` };
}

/** A lib-level Result<T, string> (a parser's) as a bad request. */
export function asBadRequest<T>(r: Result<T, string>, context?: string): Outcome<T> {
  return r.ok ? r : refuse("bad-request", context === undefined ? r.error : `${context}: ${r.error}`);
}

/** Thrown by a step that programs the kernel, so that its failure is reported as one. */
class KernelStepError extends Error {
  constructor(step: string, cause: unknown) {
    super(`${step}: ${messageOf(cause)}`, { cause });
    this.name = "KernelStepError";
  }
}

/** Runs a kernel step; whatever it throws becomes a KernelStepError naming the step. */
export async function kernelStep<T>(step: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    throw e instanceof KernelStepError ? e : new KernelStepError(step, e);
  }
}

/** What an exception thrown during an operation means for the caller. */
export function fromThrown(e: unknown, context?: string): DomainError {
  const message = messageOf(e);
  let cause: Cause = "internal";
  if (e instanceof StoreError) cause = e.transient ? "store-unavailable" : "internal";
  else if (e instanceof KernelStepError) cause = "kernel";
  // An unavailable store's words stand alone: they already say what and where.
  if (context === undefined || cause === "store-unavailable") return { cause, message };
  return { cause, message: `${context}: ${message}` };
}
