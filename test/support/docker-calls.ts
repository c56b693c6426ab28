/**
 * Docker's calls to one host's domain for a command, in Docker's order, for
 * tests that drive the domain as dockerd would (simulated hosts, or the real
 * kernel adapters under the real domain).
 */
import { ADDRESS_SPACE } from "../../driver/ipam/pool-records.js";
import type { AssembledDomain } from "../../plugin/compose/assemble.js";
import { value } from "./store-helpers.js";

/** `docker network create -d tsoverlay --ipam-driver tsoverlay --subnet <subnet>`: RequestPool, RequestAddress (the gateway), CreateNetwork. Returns the pool's id. */
export async function createNetworkOn(d: Pick<AssembledDomain, "ipam" | "driver">, networkId: string, subnet: string): Promise<string> {
  const pool = value(await d.ipam.requestPool({ pool: subnet, subPool: "", v6: false }));
  const gw = value(await d.ipam.requestAddress({ poolId: pool.poolId, address: "", gateway: true }));
  value(
    await d.driver.createNetwork({
      networkId,
      addressSpace: ADDRESS_SPACE,
      pool: subnet,
      gatewayCidr: gw.address,
      options: {},
      internal: false,
      auxAddresses: {},
    }),
  );
  return pool.poolId;
}
