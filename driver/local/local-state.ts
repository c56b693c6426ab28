import { z } from "zod";
import type { PortRequest } from "../publish/port-publisher.js";
import type { Store } from "../store/store.js";

/**
 * What this host must remember across plugin restarts (Docker replays neither
 * CreateNetwork nor CreateEndpoint): its Docker network IDs and endpoints.
 * Kept in a host-private store (never in the cluster store: network IDs are
 * per daemon).
 */
export const LocalNetwork = z.object({ networkId: z.string(), subnet: z.string() });
export type LocalNetwork = z.infer<typeof LocalNetwork>;

export const LocalEndpoint = z.object({
  endpointId: z.string(),
  networkId: z.string(),
  subnet: z.string(),
  addressCidr: z.string(),
  mac: z.string(),
});
export type LocalEndpoint = z.infer<typeof LocalEndpoint>;

const NET = "local/networks/";
const EP = "local/endpoints/";
const SLOT = "local/egress-slots/";
const PORTS = "local/ports/";
const KEYSAFE = (subnet: string): string => subnet.replace("/", "_");

export class LocalState {
  constructor(private readonly store: Store) {}

  async putNetwork(n: LocalNetwork): Promise<void> {
    await this.store.put(NET + n.networkId, JSON.stringify(n));
  }

  async getNetwork(networkId: string): Promise<LocalNetwork | undefined> {
    const kv = await this.store.get(NET + networkId);
    return kv === undefined ? undefined : LocalNetwork.parse(JSON.parse(kv.value));
  }

  async deleteNetwork(networkId: string): Promise<void> {
    await this.store.delete(NET + networkId);
  }

  async networks(): Promise<LocalNetwork[]> {
    return (await this.store.list(NET)).map((kv) => LocalNetwork.parse(JSON.parse(kv.value)));
  }

  async putEndpoint(e: LocalEndpoint): Promise<void> {
    await this.store.put(EP + e.endpointId, JSON.stringify(e));
  }

  async getEndpoint(endpointId: string): Promise<LocalEndpoint | undefined> {
    const kv = await this.store.get(EP + endpointId);
    return kv === undefined ? undefined : LocalEndpoint.parse(JSON.parse(kv.value));
  }

  async deleteEndpoint(endpointId: string): Promise<void> {
    await this.store.delete(EP + endpointId);
  }

  async endpoints(): Promise<LocalEndpoint[]> {
    return (await this.store.list(EP)).map((kv) => LocalEndpoint.parse(JSON.parse(kv.value)));
  }

  /** This host's uplink slot for a network: the one it has, or the lowest free (from 1). */
  async egressSlot(subnet: string): Promise<number> {
    for (;;) {
      const taken = await this.store.list(SLOT);
      const mine = taken.find((kv) => kv.key === SLOT + KEYSAFE(subnet));
      if (mine !== undefined) return Number(mine.value);
      const used = new Set(taken.map((kv) => Number(kv.value)));
      let slot = 1;
      while (used.has(slot)) slot++;
      if (await this.store.cas(SLOT + KEYSAFE(subnet), String(slot), 0)) return slot;
    }
  }

  async existingEgressSlot(subnet: string): Promise<number | undefined> {
    const kv = await this.store.get(SLOT + KEYSAFE(subnet));
    return kv === undefined ? undefined : Number(kv.value);
  }

  async releaseEgressSlot(subnet: string): Promise<void> {
    await this.store.delete(SLOT + KEYSAFE(subnet));
  }

  /** The ports an endpoint publishes, with the host ports actually bound (so a restart rebinds the same ones). */
  async putPorts(endpointId: string, ports: PortRequest[]): Promise<void> {
    await this.store.put(PORTS + endpointId, JSON.stringify(ports));
  }

  async getPorts(endpointId: string): Promise<PortRequest[] | undefined> {
    const kv = await this.store.get(PORTS + endpointId);
    return kv === undefined ? undefined : (JSON.parse(kv.value) as PortRequest[]);
  }

  async deletePorts(endpointId: string): Promise<void> {
    await this.store.delete(PORTS + endpointId);
  }
}
