import type { OverlayDriver } from "../domain/overlay-driver.js";
import type { PublishedPort } from "../domain/publish/port-publisher.js";
import type { ClusterIpamPort } from "./routes/ipam-routes.js";

/**
 * The plugin opens its sockets before it has reached the cluster store (a
 * managed plugin has ~10 s to answer). Until the domain is up, driver calls
 * are answered with the reason it is not.
 */
export type Readiness =
  | { ready: false; reason: string }
  | { ready: true; driver: OverlayDriver; ipam: ClusterIpamPort; ports: () => PublishedPort[]; cluster: () => Promise<Record<string, unknown>> };

export class ReadinessGate {
  private state: Readiness = { ready: false, reason: "starting" };

  get current(): Readiness {
    return this.state;
  }

  notReady(reason: string): void {
    this.state = { ready: false, reason };
  }

  ready(driver: OverlayDriver, ipam: ClusterIpamPort, ports: () => PublishedPort[], cluster: () => Promise<Record<string, unknown>>): void {
    this.state = { ready: true, driver, ipam, ports, cluster };
  }
}
