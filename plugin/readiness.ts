import type { HostIpam } from "../domain/ipam/host-ipam.js";
import type { OverlayDriver } from "../domain/overlay-driver.js";
import type { PublishedPort } from "../domain/publish/port-publisher.js";

/** What the routes call once the domain is up. */
export interface DomainApi {
  driver: OverlayDriver;
  ipam: HostIpam;
  /** Published ports with their counters (docker ps cannot show a remote driver's ports). */
  ports(): PublishedPort[];
  /** What the status endpoint shows about the cluster side. */
  cluster(): Promise<Record<string, unknown>>;
}

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
