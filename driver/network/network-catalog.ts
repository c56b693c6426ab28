import { failure, success, type Result } from "../result.js";

/** What the domain knows about a network Docker created on this host. */
export interface NetworkRecord {
  networkId: string;
  pool: string;
  gateway: string;
  options: Record<string, string>;
}

/**
 * The networks this host's daemon has created. Docker sends the same
 * CreateNetwork again for swarm-scoped networks, so creation is idempotent for
 * identical records.
 */
export class NetworkCatalog {
  private readonly networks = new Map<string, NetworkRecord>();

  create(rec: NetworkRecord): Result<NetworkRecord> {
    const existing = this.networks.get(rec.networkId);
    if (existing !== undefined) {
      if (JSON.stringify(existing) === JSON.stringify(rec)) return success(existing);
      return failure(`network ${rec.networkId} already exists with different settings`);
    }
    this.networks.set(rec.networkId, rec);
    return success(rec);
  }

  delete(networkId: string): Result<void> {
    if (!this.networks.delete(networkId)) return failure(`network ${networkId} not found`);
    return success(undefined);
  }

  get(networkId: string): NetworkRecord | undefined {
    return this.networks.get(networkId);
  }
}
