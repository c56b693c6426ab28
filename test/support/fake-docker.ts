import { randomUUID } from "node:crypto";
import { refuse, type Outcome } from "../../driver/errors.js";
import type { ContainerEndpoint, DaemonFacts, DockerEvent, DockerNetwork, DockerPort, NetworkSpec, RemoveResult } from "../../driver/contracts/docker.js";
import { success } from "../../lib/result.js";

/**
 * An in-memory Docker daemon for unit tests of the propagation and names
 * logic: networks by name, containers attached to them, and the events a
 * real daemon would emit for each change (delivered synchronously to the
 * subscriber, as the stream would deliver them in order).
 */
export class FakeDocker implements DockerPort {
  readonly nets = new Map<string, DockerNetwork>();
  /** network id → container ids attached. */
  readonly attached = new Map<string, Set<string>>();
  readonly containers = new Map<string, { name: string; endpoints: ContainerEndpoint[] }>();
  private listener: ((e: DockerEvent) => void) | undefined;
  /** Calls made, for assertions ("create foo", "remove <id>"). */
  readonly calls: string[] = [];

  async waitReady(): Promise<void> {}

  async daemonFacts(): Promise<DaemonFacts> {
    return { version: "29.8.1", liveRestore: false, runcVersion: "1.5.1" };
  }

  async networks(drivers: readonly string[]): Promise<DockerNetwork[]> {
    return [...this.nets.values()].filter((n) => drivers.includes(n.driver));
  }

  async network(id: string): Promise<DockerNetwork | undefined> {
    return [...this.nets.values()].find((n) => n.id === id);
  }

  async networkContainers(id: string): Promise<string[]> {
    return [...(this.attached.get(id) ?? [])];
  }

  async createNetwork(spec: NetworkSpec): Promise<Outcome<string>> {
    this.calls.push(`create ${spec.name}`);
    if (this.nets.has(spec.name)) return refuse("conflict", `creating network ${spec.name}: network with name ${spec.name} already exists`);
    return success(this.userCreates(spec));
  }

  async removeNetwork(id: string): Promise<Outcome<RemoveResult>> {
    this.calls.push(`remove ${id}`);
    const net = await this.network(id);
    if (net === undefined) return success("gone");
    if ((this.attached.get(id)?.size ?? 0) > 0) return success("in-use");
    this.userRemoves(net.name);
    return success("removed");
  }

  async container(id: string): Promise<{ name: string; endpoints: ContainerEndpoint[] } | undefined> {
    return this.containers.get(id);
  }

  async events(onEvent: (e: DockerEvent) => void, signal: AbortSignal): Promise<void> {
    this.listener = onEvent;
    await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    this.listener = undefined;
  }

  /** Subscribes without the stream's promise (for tests that drive handlers directly). */
  subscribe(onEvent: (e: DockerEvent) => void): void {
    this.listener = onEvent;
  }

  /** As `docker network create` by a user on this host. */
  userCreates(spec: NetworkSpec): string {
    const id = randomUUID().replace(/-/g, "");
    this.nets.set(spec.name, { ...spec, id });
    this.emit({ kind: "network-created", networkId: id, name: spec.name, driver: spec.driver });
    return id;
  }

  /** As `docker network rm` by a user (no check for containers: use removeNetwork for that). */
  userRemoves(name: string): void {
    const net = this.nets.get(name);
    if (net === undefined) return;
    this.nets.delete(name);
    this.emit({ kind: "network-destroyed", networkId: net.id, name, driver: net.driver });
  }

  /** As `docker network rm`, with the destroy event still on its way: the returned function delivers it. */
  userRemovesEventLater(name: string): () => void {
    const net = this.nets.get(name);
    if (net === undefined) throw new Error(`no network ${name}`);
    this.nets.delete(name);
    return () => this.emit({ kind: "network-destroyed", networkId: net.id, name, driver: net.driver });
  }

  /** As `docker network prune`: every network without containers goes, then one prune event. */
  userPrunes(): void {
    for (const net of [...this.nets.values()]) if ((this.attached.get(net.id)?.size ?? 0) === 0) this.userRemoves(net.name);
    this.emit({ kind: "networks-pruned" });
  }

  attach(name: string, containerId: string): void {
    const net = this.nets.get(name);
    if (net === undefined) throw new Error(`no network ${name}`);
    const set = this.attached.get(net.id) ?? new Set();
    set.add(containerId);
    this.attached.set(net.id, set);
    this.emit({ kind: "network-connected", networkId: net.id, containerId, driver: net.driver });
  }

  detach(name: string, containerId: string): void {
    const net = this.nets.get(name);
    if (net === undefined) return;
    this.attached.get(net.id)?.delete(containerId);
    this.emit({ kind: "network-disconnected", networkId: net.id, containerId, driver: net.driver });
  }

  private emit(e: DockerEvent): void {
    this.listener?.(e);
  }
}

/** A spec as `docker network create -d tsoverlay --ipam-driver tsoverlay --subnet S NAME` gives it. */
export function tsoverlaySpec(name: string, subnet: string, extra: Partial<NetworkSpec> = {}): NetworkSpec {
  const gateway = subnet.replace(/\.0\/\d+$/, ".1");
  return {
    name,
    driver: "tsoverlay",
    subnet,
    gateway,
    options: {},
    labels: {},
    ipamDriver: "tsoverlay",
    ipamOptions: {},
    internal: false,
    attachable: false,
    ...extra,
  };
}
