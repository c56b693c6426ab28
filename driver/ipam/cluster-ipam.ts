import type { Logger } from "../../lib/log.js";
import { asBadRequest, type Outcome } from "../errors.js";
import type { Store } from "../contracts/store.js";
import { AddressAllocator, type AddressResponse, type HeldAddress, type ReleaseAddressArgs, type RequestAddressArgs } from "./addresses.js";
import { Subnet } from "../../lib/net.js";
import type { IpamConfig } from "./ipam-config.js";
import { PoolAllocator, type PoolResponse, type ReleasePoolArgs, type RequestPoolArgs } from "./pools.js";
import { claimVni, releaseVni } from "./vnis.js";

/**
 * The cluster-wide IPAM the IpamDriver endpoints call: pools, addresses and
 * VNIs, all kept in the cluster store. Domain refusals come back as failures
 * whose text is meant for `docker network create`; store errors throw.
 */
export class ClusterIpam {
  private readonly pools: PoolAllocator;
  private readonly addresses: AddressAllocator;

  constructor(
    private readonly store: Store,
    readonly cfg: IpamConfig,
    log: Logger,
    now: () => number = Date.now,
  ) {
    this.pools = new PoolAllocator(store, cfg, log, now);
    this.addresses = new AddressAllocator(store, log, now);
  }

  requestPool(req: RequestPoolArgs): Promise<Outcome<PoolResponse>> {
    return this.pools.requestPool(req);
  }

  releasePool(req: ReleasePoolArgs): Promise<Outcome<void>> {
    return this.pools.releasePool(req);
  }

  requestAddress(req: RequestAddressArgs): Promise<Outcome<AddressResponse>> {
    return this.addresses.requestAddress(req);
  }

  releaseAddress(req: ReleaseAddressArgs): Promise<Outcome<void>> {
    return this.addresses.releaseAddress(req);
  }

  // What the collector needs: every record, and re-taking or dropping one.

  /** The container name recorded with an address (Docker 29+ gives it), if any. */
  async nameOf(pool: string, ip: string): Promise<string | undefined> {
    return (await this.addresses.record(pool, ip))?.name;
  }

  addressRecords(): Promise<HeldAddress[]> {
    return this.addresses.held();
  }

  dropAddressRecord(a: HeldAddress): Promise<boolean> {
    return this.addresses.drop(a);
  }

  reclaimAddress(pool: string, ip: string, hostId: string, kind: "endpoint" | "gateway"): Promise<Outcome<"kept" | "restored">> {
    return this.addresses.reclaim(pool, ip, hostId, kind);
  }

  poolReferences(): Promise<{ subnet: string; hostId: string; at: string }[]> {
    return this.pools.references();
  }

  reclaimPool(subnet: string, hostId: string): Promise<Outcome<void>> {
    const parsed = asBadRequest(Subnet.parse(subnet));
    return parsed.ok ? this.pools.reclaim(parsed.value, hostId) : Promise.resolve(parsed);
  }

  /** Drops `hostId`'s reference on the pool (idempotent); the last one out deletes the pool. */
  dropPoolReference(subnet: string, hostId: string): Promise<Outcome<void>> {
    const parsed = asBadRequest(Subnet.parse(subnet));
    return parsed.ok ? this.pools.release(parsed.value, hostId) : Promise.resolve(parsed);
  }

  /** A VNI for the network with this subnet: `requested` (`-o vni=…`) or the lowest free in the configured range. */
  claimVni(subnet: string, requested?: number): Promise<Outcome<number>> {
    return claimVni(this.store, { subnet, requested, range: this.cfg.vniRange });
  }

  releaseVni(vni: number, subnet: string): Promise<boolean> {
    return releaseVni(this.store, vni, subnet);
  }
}
