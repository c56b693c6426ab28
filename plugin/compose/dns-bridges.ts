import type { DaemonListener } from "../../driver/catalog/docker-follower.js";
import type { DockerEvent, DockerPort } from "../../driver/contracts/docker.js";
import { Mutex } from "../../lib/keyed-mutex.js";
import type { Logger } from "../../lib/log.js";
import { messageOf } from "../../lib/errors.js";

/** Docker's option that gives a bridge network's interface a name of its own. */
const BRIDGE_NAME_OPTION = "com.docker.network.bridge.name";

/**
 * Keeps the name service's guard open to Docker bridges with names of their
 * own. The daemon's `dns` setting is theirs too, so their containers' lookups
 * reach the name service like any other container's; the guard's fixed rules
 * know only docker* and br-*. Read again on every bridge network's create and
 * destroy, and each time the daemon answers after being away.
 */
export class DockerBridgeGuard implements DaemonListener {
  private ready = false;
  private readonly mutex = new Mutex();

  constructor(
    private readonly d: {
      docker: DockerPort;
      /** Sets exactly these bridges as allowed (allowDockerBridges). */
      allow: (bridges: readonly string[]) => Promise<void>;
      log: Logger;
    },
  ) {}

  /** Once the guard's chain exists: until then there is nothing to add rules to. */
  start(): void {
    this.ready = true;
    this.resync();
  }

  onEvent(e: DockerEvent): void {
    if ((e.kind === "network-created" || e.kind === "network-destroyed") && e.driver === "bridge") this.resync();
  }

  resync(): void {
    if (!this.ready) return;
    void this.mutex
      .run(async () => {
        const bridges = (await this.d.docker.networks(["bridge"])).flatMap((n) => n.options[BRIDGE_NAME_OPTION] ?? []);
        await this.d.allow(bridges);
      })
      .catch((err: unknown) => this.d.log.warn({ err: messageOf(err) }, "letting Docker's named bridges ask the name service failed"));
  }

  /** Waits for the reads under way (tests). */
  settled(): Promise<void> {
    return this.mutex.run(async () => undefined);
  }
}
