import { teardownScope, type Outbox } from "../local/outbox.js";
import { fromThrown, type Outcome } from "../errors.js";
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

export interface PoolRequest {
  /** --subnet; "" or absent: pick one. */
  pool?: string;
  /** --ip-range. */
  subPool?: string;
  /** --ipam-opt name=…: the same name on several hosts is one network. */
  name?: string;
  v6: boolean;
}

export interface AddressRequest {
  poolId: string;
  /** --ip / --gateway; "" or absent: pick one. */
  address?: string;
  gateway?: boolean;
  mac?: string;
  /** The container's name (Docker 29+). */
  name?: string;
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

  requestPool(a: PoolRequest): Promise<Outcome<PoolResponse>> {
    // Every network's queued teardown first: the pool picked (or named) may be one a queued step still releases.
    return this.allocating(undefined, () => this.ipam.requestPool({ hostId: this.s.hostId, ...a }));
  }

  requestAddress(a: AddressRequest): Promise<Outcome<AddressResponse>> {
    return this.allocating(teardownScope({ kind: "release-pool", poolId: a.poolId }), () => this.ipam.requestAddress({ hostId: this.s.hostId, ...a }));
  }

  async releasePool(poolId: string): Promise<Outcome<void>> {
    const seq = await this.outbox.add({ kind: "release-pool", poolId });
    await this.outbox.settle(seq, this.s.teardownWaitMs);
    return { ok: true, value: undefined };
  }

  async releaseAddress(poolId: string, address: string): Promise<Outcome<void>> {
    const seq = await this.outbox.add({ kind: "release-address", poolId, address });
    await this.outbox.settle(seq, this.s.teardownWaitMs);
    return { ok: true, value: undefined };
  }

  /** `network`: the subnet whose queued teardown must be done first (undefined: every network's). */
  private async allocating<T>(network: string | undefined, call: () => Promise<Outcome<T>>): Promise<Outcome<T>> {
    try {
      await this.outbox.flush(this.s.storeBudgetMs, network);
      return await call();
    } catch (e) {
      return { ok: false, error: fromThrown(e) };
    }
  }
}
