import type { EgressPort } from "../../contracts/datapath.js";
import { networkNetnsPath } from "../datapath/context.js";
import type { EgressGateway } from "./egress-gateway.js";

/**
 * The domain's EgressPort over the gateway. The domain names a network by its
 * subnet and VNI; the gateway needs the network's namespace, which the kernel
 * datapath made under `runDir` for that VNI — so the two adapters meet here,
 * not in the composition root.
 */
export function egressPortOf(gateway: EgressGateway, runDir: string): EgressPort {
  return {
    ensure: (subnet, vni, slot, opts) => gateway.ensureNetwork({ subnet, nsPath: networkNetnsPath(runDir, vni), slot, hostOnly: opts?.hostOnly === true }),
    remove: (subnet, slot) => gateway.removeNetwork({ subnet, slot }),
    prepare: (subnet, opts) => gateway.setNat(subnet, opts.nat),
    release: (subnet) => gateway.setNat(subnet, false),
  };
}
