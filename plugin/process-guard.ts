import type { Logger } from "../lib/log.js";
import { metrics } from "../lib/metrics.js";
import { messageOf } from "../lib/errors.js";

/**
 * What the process does with an error nothing handled. Node's default is to
 * die, and a plugin that dies takes the userland proxy's connections with it
 * and comes back only to meet the same condition again (a crash loop). So:
 *
 *  - an unhandled rejection (a promise nobody awaited: one piece of
 *    background work that failed) is logged with its stack, counted
 *    (tsoverlay_unhandled_errors_total{kind="rejection"}), and survived: the
 *    rest of the process is intact;
 *  - an uncaught exception (a throw out of a callback) is logged, counted and
 *    survived too, unless they come in a burst (more than `burst` within
 *    `windowMs`): a process throwing in a loop is broken, and exiting lets the
 *    supervisor (dockerd, systemd) start a clean one, which rebuilds its state
 *    from the host-private store.
 *
 * Faults that are not exceptions — the thread stranded in another network
 * namespace (netns.ts aborts), out of memory — still end the process.
 */

/** The part of `process` this needs (a fake in tests). */
export interface GuardedProcess {
  on(event: "unhandledRejection", listener: (reason: unknown) => void): unknown;
  on(event: "uncaughtException", listener: (err: Error, origin: string) => void): unknown;
  exit(code: number): void;
}

export interface GuardOptions {
  /** Uncaught exceptions tolerated within `windowMs`; one more ends the process. */
  burst?: number;
  windowMs?: number;
  now?: () => number;
}

function stackOf(e: unknown): string | undefined {
  return e instanceof Error ? e.stack : undefined;
}

/** `logger` is asked at each error: the process replaces its first logger once the configuration (and the secrets to scrub) is known. */
export function guardProcess(logger: Logger | (() => Logger), proc: GuardedProcess = process, opts: GuardOptions = {}): void {
  const current = typeof logger === "function" ? logger : (): Logger => logger;
  const burst = opts.burst ?? 10;
  const windowMs = opts.windowMs ?? 60_000;
  const now = opts.now ?? Date.now;
  const recent: number[] = [];

  proc.on("unhandledRejection", (reason) => {
    metrics.unhandledErrors.inc({ kind: "rejection" });
    current().error({ err: messageOf(reason), stack: stackOf(reason) }, "unhandled promise rejection; carrying on");
  });

  proc.on("uncaughtException", (err, origin) => {
    metrics.unhandledErrors.inc({ kind: "exception" });
    const t = now();
    recent.push(t);
    while (recent.length > 0 && recent[0]! <= t - windowMs) recent.shift();
    if (recent.length > burst) {
      current().fatal(
        { err: messageOf(err), stack: stackOf(err), origin, inLastMs: windowMs, count: recent.length },
        "uncaught exceptions in a burst; exiting to be restarted clean",
      );
      proc.exit(1);
      return;
    }
    current().error({ err: messageOf(err), stack: stackOf(err), origin }, "uncaught exception; carrying on");
  });
}
