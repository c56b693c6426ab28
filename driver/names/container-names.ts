import type { Logger } from "../../lib/log.js";
import type { DockerEvent, DockerPort } from "../contracts/docker.js";
import { messageOf } from "../../lib/errors.js";

/**
 * Keeps each local endpoint's names (the container's name and its network
 * aliases) as the Docker API reports them. Docker 29 names the container to
 * the IPAM already; aliases, and names on older Docker, only come this way.
 * A container's names are read when it starts or joins a network, and for
 * every local endpoint when the daemon (re)appears.
 */
export interface ContainerNamesDeps {
  docker: DockerPort;
  /** Records the names of a local endpoint; false if this host has no such endpoint. */
  setNames: (endpointId: string, names: string[]) => Promise<boolean>;
  /** The Docker network ids of this host's tsoverlay networks that have endpoints here. */
  localNetworkIds: () => Promise<string[]>;
  log: Logger;
}

export class ContainerNames {
  private readonly log: Logger;

  constructor(private readonly d: ContainerNamesDeps) {
    this.log = d.log.child({ component: "names" });
  }

  onEvent(e: DockerEvent): void {
    const containerId = e.kind === "container-started" || e.kind === "network-connected" ? e.containerId : undefined;
    if (containerId === undefined || containerId === "") return;
    void this.refresh(containerId).catch((err: unknown) =>
      this.log.warn({ container: containerId, err: messageOf(err) }, "reading a container's names failed"),
    );
  }

  /** Reads one container's names and records them on its endpoints here. */
  async refresh(containerId: string): Promise<void> {
    const c = await this.d.docker.container(containerId);
    if (c === undefined) return;
    for (const ep of c.endpoints) {
      if (await this.d.setNames(ep.endpointId, ep.names)) this.log.debug({ container: c.name, endpointId: ep.endpointId, names: ep.names }, "names recorded");
    }
  }

  /** Every container on this host's tsoverlay networks. */
  async refreshAll(): Promise<void> {
    const containers = new Set<string>();
    for (const id of await this.d.localNetworkIds()) for (const c of await this.d.docker.networkContainers(id)) containers.add(c);
    for (const c of containers) await this.refresh(c);
  }
}
