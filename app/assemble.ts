import { RecordCollector } from "../domain/cluster/collector.js";
import { teardownRunner } from "../domain/cluster/teardown.js";
import type { Datapath, EgressPort } from "../domain/ports/datapath.js";
import { HostRegistry } from "../domain/hosts/host-registry.js";
import { ClusterIpam } from "../domain/ipam/cluster-ipam.js";
import { HostIpam } from "../domain/ipam/host-ipam.js";
import type { IpamConfig } from "../domain/ipam/ipam-config.js";
import { LocalState } from "../domain/local/local-state.js";
import { Outbox } from "../domain/local/outbox.js";
import type { Logger } from "../lib/log.js";
import { ClusterNetworks, type VniAllocator } from "../domain/network/cluster-networks.js";
import { OverlayDriver } from "../domain/overlay-driver.js";
import { PeerSync } from "../domain/peers/peer-sync.js";
import type { PortPublisher } from "../domain/publish/port-publisher.js";
import { ResilientStore } from "../domain/cluster/resilient-store.js";
import type { Store } from "../domain/ports/store.js";
import { addressOf } from "../lib/net.js";

/** How long a teardown call waits for its cluster part before answering Docker anyway. */
const TEARDOWN_WAIT_MS = 3_000;
/** Address and pool records of this host younger than this are never collected (Docker allocates them just before use). */
const OWN_RECORD_GRACE_MS = 60_000;

/** The adapters a host's domain runs on: the kernel (or a fake), the stores, the publisher. */
export interface DomainAdapters {
  /** The cluster store as opened (Consul, embedded, or a test's). */
  cluster: Store;
  /** The host-private store. */
  local: Store;
  datapath: Datapath;
  egress: EgressPort;
  publisher: PortPublisher;
}

export interface DomainSettings {
  hostId: string;
  vtep: string;
  underlayMtu: number;
  ipam: IpamConfig;
  /** Retry budget of a store call made while serving Docker (ms). */
  storeRetryMs: number;
  reconcileMs: number;
  gcIntervalMs: number;
  gcGraceMs: number;
  /** Overrides for tests. */
  teardownWaitMs?: number;
  ownRecordGraceMs?: number;
  hostTtlSeconds?: number;
}

/** One host's domain, wired: what the HTTP edge calls, and what the status endpoint shows. */
export interface AssembledDomain {
  driver: OverlayDriver;
  ipam: HostIpam;
  clusterIpam: ClusterIpam;
  store: ResilientStore;
  outbox: Outbox;
  hosts: HostRegistry;
  peers: PeerSync;
  collector: RecordCollector;
  /** Restores the datapath from local state, then starts the background work (collector, queued teardown). */
  start(): Promise<void>;
  status(): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/**
 * The one place where a host's domain is put together, for the plugin process
 * and for the unit tests alike: store resilience → IPAM and networks →
 * outbox → host registry → peers → driver → collector. Nothing here waits for
 * the cluster store (see OverlayDriver's design note).
 */
export async function assembleDomain(a: DomainAdapters, s: DomainSettings, log: Logger): Promise<AssembledDomain> {
  const store = new ResilientStore(a.cluster, { budgetMs: s.storeRetryMs, log: log.child({ component: "store" }) });
  const local = new LocalState(a.local);
  const ipam = new ClusterIpam(store, s.ipam, log);
  const vnis: VniAllocator = {
    claim: (subnet, requested) => ipam.claimVni(subnet, requested),
    release: async (vni, subnet) => {
      await ipam.releaseVni(vni, subnet);
    },
  };
  const networks = new ClusterNetworks(store, vnis, s.hostId, log);
  const outbox = await Outbox.open(a.local, teardownRunner({ store, ipam, networks, hostId: s.hostId, log }), { log });
  const hosts = new HostRegistry(store, { hostId: s.hostId, vtep: s.vtep }, log, s.hostTtlSeconds);
  const localOf = async (subnet: string): Promise<{ ip: string; mac: string }[]> =>
    (await local.endpoints()).filter((e) => e.subnet === subnet).map((e) => ({ ip: addressOf(e.addressCidr), mac: e.mac }));
  const peers = new PeerSync(store, a.datapath, hosts, localOf, log, s.reconcileMs);
  const teardownWaitMs = s.teardownWaitMs ?? TEARDOWN_WAIT_MS;
  const driver = new OverlayDriver({
    store,
    local,
    outbox,
    datapath: a.datapath,
    egress: a.egress,
    hosts,
    peers,
    networks,
    publisher: a.publisher,
    nameOf: (subnet, ip) => ipam.nameOf(subnet, ip),
    settings: { hostId: s.hostId, vtep: s.vtep, underlayMtu: s.underlayMtu, storeBudgetMs: s.storeRetryMs, teardownWaitMs },
    log,
  });
  const collector = new RecordCollector(
    {
      store,
      local,
      outbox,
      hosts,
      ipam,
      networks,
      endpointRecord: (ep) => driver.endpointRecord(ep),
      exclusive: (subnet, work) => driver.exclusive(subnet, work),
      log: log.child({ component: "collector" }),
    },
    {
      hostId: s.hostId,
      periodMs: s.gcIntervalMs,
      deadHostGraceMs: s.gcGraceMs,
      ownGraceMs: s.ownRecordGraceMs ?? OWN_RECORD_GRACE_MS,
    },
  );
  const hostIpam = new HostIpam(ipam, outbox, { hostId: s.hostId, storeBudgetMs: s.storeRetryMs, teardownWaitMs });

  return {
    driver,
    ipam: hostIpam,
    clusterIpam: ipam,
    store,
    outbox,
    hosts,
    peers,
    collector,
    start: async () => {
      hosts.start();
      await driver.restore();
      collector.start();
      outbox.kick();
    },
    status: async () => {
      const health = store.health();
      return {
        hostId: s.hostId,
        endpoints: (await local.endpoints()).map((e) => ({
          endpointId: e.endpointId,
          name: e.name ?? null,
          subnet: e.subnet,
          ip: addressOf(e.addressCidr),
          mac: e.mac,
        })),
        store: { ...health, ...(health.available ? {} : { error: `tsoverlay: cluster store unavailable: ${health.condition ?? "unknown"}` }) },
        pendingTeardown: outbox.status(),
        hosts: {
          ready: hosts.ready,
          alive: hosts
            .hosts()
            .map((h) => h.hostId)
            .sort(),
        },
        peers: peers.followed(),
        collector: collector.status(),
      };
    },
    stop: async () => {
      await collector.stop();
      await outbox.close();
      peers.stopAll();
      hosts.stop();
    },
  };
}
