import type { DomainApi } from "../driver/api.js";

/**
 * The plugin opens its sockets before its domain is up (a managed plugin has
 * ~10 s to answer). A driver call that arrives while the first start is under
 * way waits for it, up to `startWaitMs`: dockerd sends the teardown of the
 * containers that died with it (Leave, DeleteEndpoint, ReleaseAddress) as soon
 * as the plugin answers, and Docker 20.10 forgets a teardown that failed, so
 * refusing it then would leave the endpoint's records behind for good. The
 * wait stays under Docker's plugin call timeout (30 s, `docker plugin enable
 * --timeout`). Once the first attempt has failed (a bad setting, no underlay
 * address: retried in the background) calls are answered at once, with why.
 */
export type Readiness = { ready: false; reason: string } | ({ ready: true } & DomainApi);

export interface ReadinessOptions {
  /** How long a call waits for the first start to finish (ms). */
  startWaitMs?: number;
}

export const START_WAIT_MS = 20_000;

export class ReadinessGate {
  private state: Readiness = { ready: false, reason: "starting" };
  private firstAttemptDone = false;
  private readonly waiters = new Set<() => void>();
  private readonly startWaitMs: number;

  constructor(opts: ReadinessOptions = {}) {
    this.startWaitMs = opts.startWaitMs ?? START_WAIT_MS;
  }

  get current(): Readiness {
    return this.state;
  }

  /** The state once the first start attempt has finished, or as it is after the start wait. */
  async settled(): Promise<Readiness> {
    if (this.firstAttemptDone || this.startWaitMs <= 0) return this.state;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, this.startWaitMs);
      this.waiters.add(done);
    });
    return this.state;
  }

  notReady(reason: string): void {
    this.state = { ready: false, reason };
    this.attempted();
  }

  ready(api: DomainApi): void {
    this.state = { ready: true, ...api };
    this.attempted();
  }

  private attempted(): void {
    this.firstAttemptDone = true;
    for (const wake of [...this.waiters]) wake();
  }
}
