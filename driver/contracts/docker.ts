/**
 * This host's Docker daemon, as the domain sees it: the tsoverlay networks it
 * has, the containers' names on them, and the events that change either. The
 * adapter (driver/docker) speaks Docker's HTTP API; nothing of its JSON
 * reaches the domain.
 *
 * Never called from inside a driver or IPAM call: the daemon waits on the
 * plugin there, and its API does not answer at all while it starts.
 */
import type { Outcome } from "../errors.js";

/** A tsoverlay network as `docker network create` takes it, the name included. */
export interface NetworkSpec {
  name: string;
  /** The driver as the user named it ("tsoverlay", "tsoverlay:latest", …). */
  driver: string;
  subnet: string;
  /** Without prefix ("10.10.0.1"). */
  gateway: string;
  ipRange?: string;
  /** `-o` options. */
  options: Record<string, string>;
  /** `--label`s. */
  labels: Record<string, string>;
  ipamDriver: string;
  /** `--ipam-opt`s. */
  ipamOptions: Record<string, string>;
  internal: boolean;
  attachable: boolean;
}

export interface DockerNetwork extends NetworkSpec {
  id: string;
}

/** A container's names on one of its networks: its name and its network aliases. */
export interface ContainerEndpoint {
  networkId: string;
  endpointId: string;
  names: string[];
}

export type DockerEvent =
  | { kind: "network-created"; networkId: string; name: string; driver: string }
  | { kind: "network-destroyed"; networkId: string; name: string; driver: string }
  /** `docker network prune` ran: the destroys just before it were a prune, not a removal. */
  | { kind: "networks-pruned" }
  | { kind: "network-connected" | "network-disconnected"; networkId: string; containerId: string; driver: string }
  | { kind: "container-started"; containerId: string };

export type RemoveResult = "removed" | "in-use" | "gone";

/** What `tsoverlay doctor` checks of the daemon. */
export interface DaemonFacts {
  version: string;
  liveRestore: boolean;
  /** The runc the daemon runs containers with, when it says. */
  runcVersion: string | undefined;
}

export interface DockerPort {
  /** Resolves once the daemon answers (its API is silent while it starts); rejects when `signal` aborts. */
  waitReady(signal: AbortSignal): Promise<void>;
  /** The daemon's version, live-restore setting and runc (GET /version and /info). */
  daemonFacts(): Promise<DaemonFacts>;
  /** The daemon's networks of the given drivers. */
  networks(drivers: readonly string[]): Promise<DockerNetwork[]>;
  network(id: string): Promise<DockerNetwork | undefined>;
  /** Creates the network; a name already taken here is a conflict (its words say so). */
  createNetwork(spec: NetworkSpec): Promise<Outcome<string>>;
  removeNetwork(id: string): Promise<Outcome<RemoveResult>>;
  /** The containers attached to a network (their ids). */
  networkContainers(id: string): Promise<string[]>;
  /** The container's endpoints and names on each of its networks; undefined if it is gone. */
  container(id: string): Promise<{ name: string; endpoints: ContainerEndpoint[] } | undefined>;
  /** Streams events until the stream ends (daemon restart) or `signal` aborts; then resolves. */
  events(onEvent: (e: DockerEvent) => void, signal: AbortSignal): Promise<void>;
}
