import type { NetworkCatalog } from "../catalog/catalog.js";
import type { ClusterIpam } from "../ipam/cluster-ipam.js";
import type { TeardownOp } from "../local/outbox.js";
import type { Logger } from "../../lib/log.js";
import type { ClusterNetworks } from "../network/cluster-networks.js";
import type { EndpointRecords } from "./endpoint-records.js";

/**
 * What each queued teardown step does to the cluster, on behalf of `hostId`.
 * Every step is idempotent (the outbox runs them at least once). A refusal
 * from the domain (an address another host holds by now) is logged and the
 * step counts as done; a store error is thrown so the outbox retries.
 */
export function teardownRunner(d: {
  endpointRecords: EndpointRecords;
  ipam: ClusterIpam;
  networks: ClusterNetworks;
  catalog: NetworkCatalog;
  hostId: string;
  log: Logger;
}): (op: TeardownOp) => Promise<void> {
  return async (op) => {
    switch (op.kind) {
      case "withdraw-endpoint":
        await d.endpointRecords.delete(op.subnet, op.endpointId);
        return;
      case "leave-network":
        await d.networks.leave(op.subnet);
        return;
      case "release-address": {
        const r = await d.ipam.releaseAddress({ hostId: d.hostId, poolId: op.poolId, address: op.address });
        if (!r.ok) d.log.warn({ op, err: r.error }, "releasing an address was refused; nothing to do");
        return;
      }
      case "remove-name": {
        const removed = await d.catalog.removeName(op.name, op.subnet === "" ? undefined : op.subnet, d.hostId);
        d.log.info({ network: op.name, subnet: op.subnet || undefined, removed }, "network name removed from the cluster");
        return;
      }
      case "release-pool": {
        const r = await d.ipam.releasePool({ hostId: d.hostId, poolId: op.poolId });
        if (!r.ok) d.log.warn({ op, err: r.error }, "releasing a pool was refused; nothing to do");
        return;
      }
    }
  };
}
