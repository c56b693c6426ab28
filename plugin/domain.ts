import path from "node:path";
import type { EgressPort } from "../driver/datapath/datapath.js";
import { EgressGateway } from "../driver/datapath/egress.js";
import { PortDnat } from "../driver/datapath/port-dnat.js";
import { Iptables } from "../driver/kernel/iptables.js";
import { KernelDatapath, networkNetnsPath } from "../driver/datapath/kernel-datapath.js";
import { HostRegistry } from "../driver/host/host-registry.js";
import { resolveUnderlay } from "../driver/host/underlay.js";
import { ClusterIpam } from "../driver/ipam/cluster-ipam.js";
import { ipamConfigFromEnv } from "../driver/ipam/ipam-config.js";
import { LocalState } from "../driver/local/local-state.js";
import type { Logger } from "../driver/log.js";
import { ClusterNetworks, type VniAllocator } from "../driver/network/cluster-networks.js";
import { OverlayDriver } from "../driver/overlay-driver.js";
import { PeerSync } from "../driver/peers/peer-sync.js";
import { failure, success, type Result } from "../driver/result.js";
import { openEmbeddedStore } from "../driver/store/embedded-store.js";
import { openStore } from "../driver/store/open-store.js";
import type { Store } from "../driver/store/store.js";
import { PortPublisher, type PublishedPort } from "../driver/publish/port-publisher.js";
import { AcceptWorkers, ProxyManager } from "../proxy/index.js";
import type { PluginConfig } from "./config.js";
import type { ClusterIpamPort } from "./routes/ipam-routes.js";

export interface Domain {
  driver: OverlayDriver;
  ipam: ClusterIpamPort;
  /** Published ports with their counters (docker ps cannot show a remote driver's ports). */
  ports(): PublishedPort[];
  stop(): Promise<void>;
}

/** This host's view of the cluster IPAM: every call carries its host id. */
function ipamPort(ipam: ClusterIpam, hostId: string): ClusterIpamPort {
  return {
    requestPool: (a) => ipam.requestPool({ hostId, pool: a.pool, subPool: a.subPool, options: a.options, v6: a.v6 }),
    releasePool: (poolId) => ipam.releasePool({ hostId, poolId }),
    requestAddress: (a) => ipam.requestAddress({ hostId, poolId: a.poolId, address: a.address, options: a.options }),
    releaseAddress: (poolId, address) => ipam.releaseAddress({ hostId, poolId, address }),
  };
}

/**
 * Builds the domain from the configuration: underlay → stores → datapath →
 * host registry → peers → driver, then restores what this host had before a
 * restart. Any failure is returned with what failed; nothing is left running.
 */
export async function startDomain(config: PluginConfig, env: NodeJS.ProcessEnv, log: Logger): Promise<Result<Domain>> {
  const underlay = await resolveUnderlay({ advertiseAddr: config.advertiseAddr, advertiseIface: config.advertiseIface });
  if (!underlay.ok) return failure(underlay.error);
  const { vtep, mtu, ifindex } = underlay.value;
  const hostId = vtep;
  const ipamCfg = ipamConfigFromEnv(hostId, env);
  if (!ipamCfg.ok) return failure(ipamCfg.error);

  let store: Store | undefined;
  let local: Store | undefined;
  let workers: AcceptWorkers | undefined;
  try {
    store = await openStore({ consulAddr: config.consulAddr, consulToken: config.consulToken, stateDir: config.stateDir }, log);
    local = await openEmbeddedStore(path.join(config.stateDir, "local"), log);
    const ipam = new ClusterIpam(store, ipamCfg.value, log);
    const vnis: VniAllocator = {
      claim: (subnet, requested) => ipam.claimVni(subnet, requested),
      release: async (vni, subnet) => {
        await ipam.releaseVni(vni, subnet);
      },
    };
    const datapath = new KernelDatapath({ runDir: config.runDir, vtepAddr: vtep, vxlanPort: config.vxlanPort, underlayIfindex: ifindex, log });
    const gateway = new EgressGateway({ bridgeName: config.gatewayBridge, subnet: config.gatewaySubnet, procRoot: config.procRoot, log });
    const egress: EgressPort = {
      ensure: (subnet, vni, slot) => gateway.ensureNetwork({ subnet, nsPath: networkNetnsPath(config.runDir, vni), slot }),
      remove: (subnet, slot) => gateway.removeNetwork({ subnet, slot }),
    };
    const dnat = new PortDnat({ gatewayBridge: config.gatewayBridge, iptables: new Iptables(), log });
    const proxyLog = log.child({ component: "proxy" });
    workers = new AcceptWorkers({ count: config.proxyWorkers, log: proxyLog });
    await workers.start();
    const publisher = new PortPublisher(new ProxyManager({ log: proxyLog, workers }), log, { mode: config.proxyMode, dnat });
    const hosts = new HostRegistry(store, { hostId, vtep }, log);
    await hosts.start();
    const peers = new PeerSync(store, datapath, hosts, log, config.reconcileMs);
    const networks = new ClusterNetworks(store, vnis, hostId, log);
    const driver = new OverlayDriver({
      store,
      local: new LocalState(local),
      datapath,
      egress,
      hosts,
      peers,
      networks,
      publisher,
      settings: { hostId, vtep, underlayMtu: mtu },
      log,
    });
    await driver.restore();
    // After re-publishing: DNAT rules of endpoints gone while we were down, or all of them after a switch to userland.
    await publisher.pruneFastPath(dnat);
    log.info({ hostId, vtep, underlayMtu: mtu, consul: config.consulAddr || "embedded", proxyMode: config.proxyMode }, "tsoverlay ready");
    const [s, l, w] = [store, local, workers];
    return success({
      driver,
      ipam: ipamPort(ipam, hostId),
      ports: () => publisher.list(),
      stop: async () => {
        await publisher.closeAll();
        await w.close();
        peers.stopAll();
        hosts.stop();
        await datapath.close();
        await gateway.close();
        await s.close();
        await l.close();
      },
    });
  } catch (e) {
    await workers?.close().catch(() => undefined);
    await store?.close().catch(() => undefined);
    await local?.close().catch(() => undefined);
    return failure((e as Error).message);
  }
}
