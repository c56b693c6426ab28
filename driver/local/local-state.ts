import { z } from "zod";
import { casRounds, contended } from "../cluster/cas-rounds.js";
import { subnetKey } from "../cluster/keys.js";
import { NetworkRecord, RecordPort } from "../cluster/records.js";
import type { Store } from "../contracts/store.js";

/**
 * What this host must remember across plugin restarts (Docker replays neither
 * CreateNetwork nor CreateEndpoint): its Docker network IDs, endpoints, uplink
 * slots and published ports. Kept in a host-private store (never in the
 * cluster store: network IDs are per daemon). Each network also keeps a copy
 * of its cluster record (VNI, gateway, MTU, options), so that the datapath can
 * be restored and endpoints served while the cluster store is away.
 */
export const LocalNetwork = z.object({ networkId: z.string(), subnet: z.string(), record: NetworkRecord.optional() });
export type LocalNetwork = z.infer<typeof LocalNetwork>;

export const LocalEndpoint = z.object({
  endpointId: z.string(),
  networkId: z.string(),
  subnet: z.string(),
  addressCidr: z.string(),
  mac: z.string(),
  /** The container's name, when Docker gave it to the IPAM (29 and later). */
  name: z.string().optional(),
  /** The container's names on this network (its name, network aliases), as the Docker API reports them. */
  names: z.array(z.string()).optional(),
  /** Docker's sandbox key (from Join): endpoints with the same one belong to one container. */
  sandbox: z.string().optional(),
  /** Its published ports, as its cluster record shows them. */
  published: z.array(RecordPort).optional(),
});
export type LocalEndpoint = z.infer<typeof LocalEndpoint>;

const PortRequests = z.array(
  z.object({
    // Older records kept Docker's protocol numbers (6, 17).
    proto: z.union([z.enum(["tcp", "udp"]), z.number().transform((n) => (n === 17 ? ("udp" as const) : ("tcp" as const)))]),
    hostIp: z.string(),
    hostPort: z.number(),
    hostPortEnd: z.number(),
    containerPort: z.number(),
  }),
);

/** JSON records of one kind under one key prefix. */
class Records<T> {
  constructor(
    private readonly store: Store,
    private readonly prefix: string,
    private readonly schema: z.ZodType<T, unknown>,
  ) {}

  async put(id: string, value: T): Promise<void> {
    await this.store.put(this.prefix + id, JSON.stringify(value));
  }

  async get(id: string): Promise<T | undefined> {
    const kv = await this.store.get(this.prefix + id);
    return kv === undefined ? undefined : this.schema.parse(JSON.parse(kv.value));
  }

  async delete(id: string): Promise<void> {
    await this.store.delete(this.prefix + id);
  }

  async all(): Promise<T[]> {
    return (await this.store.list(this.prefix)).map((kv) => this.schema.parse(JSON.parse(kv.value)));
  }
}

const SLOTS = "local/egress-slots/";

/** A `docker network rm` seen here and not yet told to the cluster (propagation waits a moment for a prune event). */
const PendingDestroy = z.object({ name: z.string(), subnet: z.string() });
export type PendingDestroy = z.infer<typeof PendingDestroy>;

/** A published port as remembered: the host port actually bound, so a restart binds the same one. */
export type StoredPort = z.output<typeof PortRequests>[number];

export class LocalState {
  private readonly nets: Records<LocalNetwork>;
  private readonly eps: Records<LocalEndpoint>;
  private readonly ports: Records<StoredPort[]>;
  private readonly destroys: Records<PendingDestroy>;

  constructor(private readonly store: Store) {
    this.destroys = new Records(store, "local/pending-destroys/", PendingDestroy);
    this.nets = new Records(store, "local/networks/", LocalNetwork);
    this.eps = new Records(store, "local/endpoints/", LocalEndpoint);
    this.ports = new Records(store, "local/ports/", PortRequests);
  }

  /** Network removals seen here whose fate (cluster-wide rm, or a local prune) is not decided yet: they outlive a restart. */
  readonly pendingDestroys = {
    add: (d: PendingDestroy): Promise<void> => this.destroys.put(encodeURIComponent(d.name), d),
    remove: (name: string): Promise<void> => this.destroys.delete(encodeURIComponent(name)),
    all: (): Promise<PendingDestroy[]> => this.destroys.all(),
  };

  putNetwork(n: LocalNetwork): Promise<void> {
    return this.nets.put(n.networkId, n);
  }

  getNetwork(networkId: string): Promise<LocalNetwork | undefined> {
    return this.nets.get(networkId);
  }

  deleteNetwork(networkId: string): Promise<void> {
    return this.nets.delete(networkId);
  }

  networks(): Promise<LocalNetwork[]> {
    return this.nets.all();
  }

  /** This host's network on `subnet`, if any (one per subnet). */
  async networkOn(subnet: string): Promise<LocalNetwork | undefined> {
    return (await this.nets.all()).find((n) => n.subnet === subnet);
  }

  putEndpoint(e: LocalEndpoint): Promise<void> {
    return this.eps.put(e.endpointId, e);
  }

  getEndpoint(endpointId: string): Promise<LocalEndpoint | undefined> {
    return this.eps.get(endpointId);
  }

  deleteEndpoint(endpointId: string): Promise<void> {
    return this.eps.delete(endpointId);
  }

  endpoints(): Promise<LocalEndpoint[]> {
    return this.eps.all();
  }

  /** This host's uplink slot for a network: the one it has, or the lowest free (from 1). */
  async egressSlot(subnet: string): Promise<number> {
    const key = SLOTS + subnetKey(subnet);
    // Networks are locked one by one, so two of them can race for the lowest slot.
    const slot = await casRounds(async () => {
      const taken = await this.store.list(SLOTS);
      const mine = taken.find((kv) => kv.key === key);
      if (mine !== undefined) return Number(mine.value);
      const used = new Set(taken.map((kv) => Number(kv.value)));
      let free = 1;
      while (used.has(free)) free++;
      return (await this.store.cas(key, String(free), 0)) ? free : undefined;
    });
    if (slot === undefined) throw new Error(`local state: ${contended(`taking an uplink slot for network ${subnet}`)}`);
    return slot;
  }

  async existingEgressSlot(subnet: string): Promise<number | undefined> {
    const kv = await this.store.get(SLOTS + subnetKey(subnet));
    return kv === undefined ? undefined : Number(kv.value);
  }

  async releaseEgressSlot(subnet: string): Promise<void> {
    await this.store.delete(SLOTS + subnetKey(subnet));
  }

  /** The ports an endpoint publishes, with the host ports actually bound (so a restart rebinds the same ones). */
  putPorts(endpointId: string, ports: StoredPort[]): Promise<void> {
    return this.ports.put(endpointId, ports);
  }

  getPorts(endpointId: string): Promise<StoredPort[] | undefined> {
    return this.ports.get(endpointId);
  }

  deletePorts(endpointId: string): Promise<void> {
    return this.ports.delete(endpointId);
  }
}
