import type { HostIpam } from "./ipam/host-ipam.js";
import type { OverlayDriver } from "./overlay-driver.js";
import type { PublishedPort } from "./publish/port-publisher.js";

/** What a running host offers the HTTP edge: the routes call these once the domain is up. */
export interface DomainApi {
  driver: OverlayDriver;
  ipam: HostIpam;
  /** Published ports with their counters (docker ps cannot show a remote driver's ports). */
  ports(): PublishedPort[];
  /** What the status endpoint shows about the cluster side. */
  cluster(): Promise<Record<string, unknown>>;
}
