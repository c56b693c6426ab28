import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../../lib/log.js";
import { Backoff } from "../../lib/retry.js";
import type { ContainerNames } from "../names/container-names.js";
import type { DockerEvent, DockerPort } from "../contracts/docker.js";
import type { Watch } from "../contracts/store.js";
import type { NetworkCatalog } from "./catalog.js";
import type { NetworkPropagation } from "./propagation.js";
import { messageOf } from "../../lib/errors.js";

/**
 * Follows this host's Docker daemon and the cluster catalog, and hands what
 * changes to the propagation of networks and to the names of containers.
 *
 * Design note. Runs beside the driver, never inside a driver call: it waits
 * for the daemon's API (silent while the daemon starts), opens the event
 * stream first, then reconciles once (so that nothing that happened before
 * the stream opened is missed), and starts over when the stream ends (the
 * daemon restarted). Catalog changes and a timer reconcile too; every
 * reconcile is idempotent, so their overlaps are harmless.
 */
/** Anything else that follows the daemon's events, and reads the daemon again each time it answers after being away. */
export interface DaemonListener {
  onEvent(e: DockerEvent): void;
  resync(): void;
}

export interface DockerFollowerDeps {
  docker: DockerPort;
  catalog: NetworkCatalog;
  /** Undefined when propagation is off (per-host networks, as before). */
  propagation: NetworkPropagation | undefined;
  names: ContainerNames;
  log: Logger;
  reconcileMs: number;
  /** Told the daemon's version each time it answers after being away. */
  onDaemon?: (version: string) => Promise<void>;
  listeners?: readonly DaemonListener[];
}

export class DockerFollower {
  private readonly stopped = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private watch: Watch | undefined;
  private loop: Promise<void> | undefined;
  private connected = false;
  private readonly log: Logger;

  constructor(private readonly d: DockerFollowerDeps) {
    this.log = d.log.child({ component: "docker-follower" });
  }

  start(): void {
    this.loop = this.run();
    const propagation = this.d.propagation;
    if (propagation === undefined) return;
    this.watch = this.d.catalog.watch(
      () => {
        if (this.connected) void this.reconcile(propagation, "catalog changed");
      },
      (err) => this.log.warn({ err: err.message }, "watching the network catalog failed; retrying"),
    );
    this.timer = setInterval(() => {
      if (this.connected) void this.reconcile(propagation, "periodic");
    }, this.d.reconcileMs);
    this.timer.unref();
  }

  /** Whether the daemon's event stream is open (for the status endpoint). */
  get following(): boolean {
    return this.connected;
  }

  async stop(): Promise<void> {
    this.stopped.abort();
    clearInterval(this.timer);
    this.watch?.stop();
    this.d.propagation?.stop();
    await this.loop;
  }

  private async run(): Promise<void> {
    const signal = this.stopped.signal;
    const backoff = new Backoff(1_000, 15_000);
    while (!signal.aborted) {
      try {
        await this.d.docker.waitReady(signal);
        if (this.d.onDaemon !== undefined) {
          const told = this.d.onDaemon;
          void this.d.docker
            .daemonFacts()
            .then((f) => told(f.version))
            .catch((err: unknown) => this.log.warn({ err: messageOf(err) }, "reading the daemon's version failed"));
        }
        const stream = this.d.docker.events((e) => {
          this.d.propagation?.onEvent(e);
          this.d.names.onEvent(e);
          for (const l of this.d.listeners ?? []) l.onEvent(e);
        }, signal);
        stream.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
        this.connected = true;
        this.log.info("following the Docker daemon");
        for (const l of this.d.listeners ?? []) l.resync();
        if (this.d.propagation !== undefined) await this.reconcile(this.d.propagation, "daemon answers");
        await this.d.names.refreshAll().catch((err: unknown) => this.log.warn({ err: messageOf(err) }, "reading container names failed"));
        await stream;
        backoff.reset();
        if (!signal.aborted) this.log.info("the Docker daemon's event stream ended; following it again");
      } catch (err) {
        if (signal.aborted) break;
        this.log.warn({ err: messageOf(err) }, "following the Docker daemon failed; retrying");
      } finally {
        this.connected = false;
      }
      await sleep(backoff.next(), undefined, { signal }).catch(() => undefined);
    }
  }

  private reconcile(p: NetworkPropagation, why: string): Promise<void> {
    return p.reconcile(why).catch((err: unknown) => this.log.warn({ why, err: messageOf(err) }, "reconciling networks with the cluster failed"));
  }
}
