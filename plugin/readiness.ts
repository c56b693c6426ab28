import type { DomainApi } from "../driver/api.js";

/**
 * The plugin opens its sockets before it has reached the cluster store (a
 * managed plugin has ~10 s to answer). Until the domain is up, driver calls
 * are answered with the reason it is not.
 */
export type Readiness = { ready: false; reason: string } | ({ ready: true } & DomainApi);

export class ReadinessGate {
  private state: Readiness = { ready: false, reason: "starting" };

  get current(): Readiness {
    return this.state;
  }

  notReady(reason: string): void {
    this.state = { ready: false, reason };
  }

  ready(api: DomainApi): void {
    this.state = { ready: true, ...api };
  }
}
