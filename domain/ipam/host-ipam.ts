import type { Outbox } from "../local/outbox.js";
import { failure, type Result } from "../../lib/result.js";
import { StoreError } from "../ports/store.js";
import type { ClusterIpam } from "./cluster-ipam.js";
import type { AddressResponse } from "./addresses.js";
import type { PoolResponse } from "./pools.js";

export interface HostIpamSettings {
  hostId: string;
  /** How long an allocation waits for earlier teardown to reach the store (ms). */
  storeBudgetMs: number;
  /** How long a release waits for the store before answering anyway (ms). */
  teardownWaitMs: number;
}

/**
 * This host's view of the cluster IPAM, as the IpamDriver calls it.
 * Allocations need the cluster store, and first let any queued release reach
 * it (so that a late release never frees what was just handed out again);
 * releases always succeed here and reach the cluster through the outbox.
 */
export class HostIpam {
  constructor(
    private readonly ipam: ClusterIpam,
    private readonly outbox: Outbox,
    private readonly s: HostIpamSettings,
  ) {}

  requestPool(a: { pool: string; subPool: string; options: Record<string, string>; v6: boolean }): Promise<Result<PoolResponse>> {
    return this.allocating(() => this.ipam.requestPool({ hostId: this.s.hostId, pool: a.pool, subPool: a.subPool, options: a.options, v6: a.v6 }));
  }

  requestAddress(a: { poolId: string; address: string; options: Record<string, string>; name?: string }): Promise<Result<AddressResponse>> {
    return this.allocating(() =>
      this.ipam.requestAddress({ hostId: this.s.hostId, poolId: a.poolId, address: a.address, options: a.options, ...(a.name === undefined ? {} : { name: a.name }) }),
    );
  }

  async releasePool(poolId: string): Promise<Result<void>> {
    const seq = await this.outbox.add({ kind: "release-pool", poolId });
    await this.outbox.settle(seq, this.s.teardownWaitMs);
    return { ok: true, value: undefined };
  }

  async releaseAddress(poolId: string, address: string): Promise<Result<void>> {
    const seq = await this.outbox.add({ kind: "release-address", poolId, address });
    await this.outbox.settle(seq, this.s.teardownWaitMs);
    return { ok: true, value: undefined };
  }

  private async allocating<T>(call: () => Promise<Result<T>>): Promise<Result<T>> {
    try {
      await this.outbox.flush(this.s.storeBudgetMs);
      return await call();
    } catch (e) {
      if (e instanceof StoreError) return failure(e.message);
      throw e;
    }
  }
}
