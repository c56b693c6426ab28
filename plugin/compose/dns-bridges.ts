import type { DaemonListener } from "../../driver/catalog/docker-follower.js";
import type { DockerEvent, DockerNetwork, DockerPort } from "../../driver/contracts/docker.js";
import { Mutex } from "../../lib/keyed-mutex.js";
import type { Logger } from "../../lib/log.js";
import { Backoff } from "../../lib/retry.js";
import { messageOf } from "../../lib/errors.js";

/** Docker's option that gives a bridge network's interface a name of its own (the default network has docker0 there). */
const BRIDGE_NAME_OPTION = "com.docker.network.bridge.name";
/** Docker's option that marks the default bridge network. */
const DEFAULT_BRIDGE_OPTION = "com.docker.network.bridge.default_bridge";

/**
 * The interface of a Docker bridge network, as the bridge driver names it:
 * the name given with `-o com.docker.network.bridge.name` (docker0 for the
 * default network), else `br-` and the first 12 characters of the network's ID.
 */
export function bridgeInterface(n: Pick<DockerNetwork, "id" | "options">): string {
  const named = n.options[BRIDGE_NAME_OPTION];
  if (named !== undefined && named !== "") return named;
  if (n.options[DEFAULT_BRIDGE_OPTION] === "true") return "docker0";
  return `br-${n.id.slice(0, 12)}`;
}

/**
 * Keeps the name service's guard open to exactly this daemon's bridge
 * networks, by their interfaces' names (the daemon's `dns` setting is their
 * containers' too, so their lookups reach the name service like any other
 * container's). Read when the guard is set up, on every bridge network's
 * create and destroy, and each time the daemon answers after being away; a
 * read that fails is tried again (1 s doubling to 1 min) until one works. Until
 * the first read works (the daemon still starting), the guard keeps what the
 * previous run allowed, and refuses everything on a fresh boot.
 */
export class DockerBridgeGuard implements DaemonListener {
  private ready = false;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly backoff = new Backoff(1_000, 60_000);
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

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
  }

  onEvent(e: DockerEvent): void {
    if ((e.kind === "network-created" || e.kind === "network-destroyed") && e.driver === "bridge") this.resync();
  }

  resync(): void {
    if (!this.ready || this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    void this.mutex.run(async () => {
      if (this.stopped) return;
      try {
        const bridges = (await this.d.docker.networks(["bridge"])).map(bridgeInterface);
        await this.d.allow(bridges);
        this.backoff.reset();
        this.d.log.debug({ bridges }, "Docker's bridges may ask the name service");
      } catch (err) {
        if (this.stopped) return;
        const retryMs = this.backoff.next();
        this.d.log.warn({ err: messageOf(err), retryMs }, "letting Docker's bridges ask the name service failed; trying again");
        this.retryTimer = setTimeout(() => this.resync(), retryMs);
        this.retryTimer.unref();
      }
    });
  }

  /** Waits for the reads under way (tests). */
  settled(): Promise<void> {
    return this.mutex.run(async () => undefined);
  }
}
