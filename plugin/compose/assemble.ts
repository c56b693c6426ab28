/**
 * The composition root of one host's domain, shared by the plugin process and
 * the unit tests (which pass fakes for the adapters), so that a test host is
 * wired exactly as a real one.
 *
 * Design note. The wiring order is the dependency order, and it is spelled
 * out in one function on purpose: store resilience first (every other part
 * talks to the cluster through it), then IPAM and networks, the outbox (which
 * needs them to run queued teardown), the host registry, peers and the VXLAN
 * admission (which follow the registry), the driver, and last the collector,
 * the catalog and the name service, which read what the others write. Split
 * over several files this order, and the stop order that mirrors it, would
 * have to be read in pieces; the adapters and settings interfaces at the top
 * are the contract between this module and plugin/compose/host.ts.
 */
import { RecordCollector } from "../../driver/cluster/collector.js";
import { teardownRunner } from "../../driver/cluster/teardown.js";
import type { Datapath, EgressPort, VxlanAdmission } from "../../driver/contracts/datapath.js";
import { HostRegistry } from "../../driver/hosts/host-registry.js";
import { VtepAdmission } from "../../driver/hosts/vtep-admission.js";
import { ClusterIpam } from "../../driver/ipam/cluster-ipam.js";
import { HostIpam } from "../../driver/ipam/host-ipam.js";
import type { IpamConfig } from "../../driver/ipam/ipam-config.js";
import { LocalState, type LocalEndpoint, type LocalNetwork } from "../../driver/local/local-state.js";
import { Outbox } from "../../driver/local/outbox.js";
import type { Logger } from "../../lib/log.js";
import { ClusterNetworks, type VniAllocator } from "../../driver/network/cluster-networks.js";
import { OverlayDriver } from "../../driver/overlay-driver.js";
import { peerReportOf, PeerSync, type PeerReport } from "../../driver/peers/peer-sync.js";
import type { PortPublisher } from "../../driver/publish/port-publisher.js";
import { ResilientStore } from "../../driver/cluster/resilient-store.js";
import type { Store } from "../../driver/contracts/store.js";
import { addressOf } from "../../lib/net.js";
import { NetworkCatalog } from "../../driver/catalog/catalog.js";
import { DockerFollower, type DaemonListener } from "../../driver/catalog/docker-follower.js";
import { NetworkPropagation } from "../../driver/catalog/propagation.js";
import { ContainerNames } from "../../driver/names/container-names.js";
import { NameService } from "../../driver/names/name-service.js";
import type { DockerPort } from "../../driver/contracts/docker.js";
import { ClusterView } from "../../driver/cluster/cluster-view.js";
import { onScrape } from "../../lib/metrics.js";
import { domainGauges, ProgrammedPeers } from "./metric-sources.js";
import { ClusterAsk } from "../../driver/cluster/cluster-ask.js";

/** How long a teardown call waits for its cluster part before answering Docker anyway. */
const TEARDOWN_WAIT_MS = 3_000;
/** Removed network names are remembered this long, so hosts that were down still remove their copies. */
const TOMBSTONE_TTL_MS = 24 * 3600_000;
/** Networks are reconciled with the catalog on every event and change, and at least this often. */
const CATALOG_RECONCILE_MS = 30_000;
/** How long `tsoverlay peers` waits for every live host's answer. */
const PEERS_ASK_MS = 5_000;
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
  /** This host's Docker daemon; without it, networks stay per host and names come from Docker 29's IPAM only. */
  docker?: DockerPort;
  /** Others that follow the daemon's events beside the domain's own. */
  daemonListeners?: readonly DaemonListener[];
  /** Who may send this host VXLAN (the kernel's guard); absent: nobody is filtered (tests with a fake datapath). */
  vxlanAdmission?: VxlanAdmission;
}

export interface DomainSettings {
  hostId: string;
  /** This plugin's version (package.json), shown in its host record. */
  pluginVersion?: string;
  vtep: string;
  underlayMtu: number;
  ipam: IpamConfig;
  /** Retry budget of a store call made while serving Docker (ms). */
  storeRetryMs: number;
  reconcileMs: number;
  gcIntervalMs: number;
  gcGraceMs: number;
  /** The name service's address, when it runs (see DriverSettings.nameServer). */
  nameServer?: string;
  /** Create once: networks made on one host appear on all (needs `docker`). */
  propagate: boolean;
  /** The driver names that are tsoverlay on this daemon. */
  driverNames: readonly string[];
  /** How often the catalog is reconciled with the daemon, besides events (ms). */
  catalogReconcileMs?: number;
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
  /** Answers the DNS listener: names of containers across hosts. */
  names: NameService;
  catalog: NetworkCatalog;
  propagation: NetworkPropagation | undefined;
  /** The whole cluster as the store has it (`tsoverlay ps|networks|hosts|ports`). */
  view: ClusterView;
  localEndpoints(): Promise<LocalEndpoint[]>;
  /** This host's networks that have endpoints here (with their cluster records as last seen). */
  localNetworks(): Promise<LocalNetwork[]>;
  /** Questions to every live host through the store ("peers", "clock"). */
  asks: ClusterAsk;
  /** Every live host's peer tables against what it should program, read now (`tsoverlay peers`). */
  peerReport(): Promise<PeerReport>;
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
  const catalog = new NetworkCatalog(store);
  const outbox = await Outbox.open(a.local, teardownRunner({ store, ipam, networks, catalog, hostId: s.hostId, log }), { log });
  const hosts = new HostRegistry(
    store,
    { hostId: s.hostId, vtep: s.vtep, ...(s.pluginVersion === undefined ? {} : { pluginVersion: s.pluginVersion }) },
    log,
    s.hostTtlSeconds,
  );
  const localOf = async (subnet: string): Promise<{ ip: string; mac: string }[]> =>
    (await local.endpoints()).filter((e) => e.subnet === subnet).map((e) => ({ ip: addressOf(e.addressCidr), mac: e.mac }));
  const programmed = new ProgrammedPeers();
  const datapath = programmed.around(a.datapath);
  const peers = new PeerSync(store, datapath, hosts, localOf, log, s.reconcileMs);
  const admission = a.vxlanAdmission === undefined ? undefined : new VtepAdmission(hosts, a.vxlanAdmission, log, s.reconcileMs);
  const teardownWaitMs = s.teardownWaitMs ?? TEARDOWN_WAIT_MS;
  const driver = new OverlayDriver({
    store,
    recordStore: store.withBudget(0),
    local,
    outbox,
    datapath,
    egress: a.egress,
    hosts,
    peers,
    networks,
    publisher: a.publisher,
    nameOf: (subnet, ip) => ipam.nameOf(subnet, ip),
    settings: {
      hostId: s.hostId,
      vtep: s.vtep,
      underlayMtu: s.underlayMtu,
      storeBudgetMs: s.storeRetryMs,
      teardownWaitMs,
      ...(s.nameServer === undefined ? {} : { nameServer: s.nameServer }),
    },
    log,
  });
  // The collector works under the driver's locks: through a store that fails at once when away (see withBudget).
  const background = store.withBudget(0);
  const collector = new RecordCollector(
    {
      store: background,
      local,
      outbox,
      hosts,
      ipam: new ClusterIpam(background, s.ipam, log),
      networks: new ClusterNetworks(background, vnis, s.hostId, log),
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
  const names = new NameService({ local, recordsOf: (subnet) => peers.records(subnet) });
  const docker = a.docker;
  const propagation =
    docker !== undefined && s.propagate
      ? new NetworkPropagation({
          docker,
          catalog,
          hostId: s.hostId,
          drivers: s.driverNames,
          log,
          tombstoneTtlMs: TOMBSTONE_TTL_MS,
          removeName: async (name, subnet) => void (await outbox.add({ kind: "remove-name", name, subnet })),
          pending: local.pendingDestroys,
        })
      : undefined;
  const follower =
    docker === undefined
      ? undefined
      : new DockerFollower({
          docker,
          catalog,
          propagation,
          names: new ContainerNames({
            docker,
            setNames: (endpointId, n) => driver.setNames(endpointId, n),
            localNetworkIds: async () => [...new Set((await local.endpoints()).map((e) => e.networkId))],
            log,
          }),
          log,
          reconcileMs: s.catalogReconcileMs ?? CATALOG_RECONCILE_MS,
          onDaemon: (version) => hosts.describeDocker(version),
          ...(a.daemonListeners === undefined ? {} : { listeners: a.daemonListeners }),
        });

  let unscrape: (() => void) | undefined;
  // An operator's question fails at once while the store is away (the answer says why) rather than after the retry budget.
  const asks = new ClusterAsk(store.withBudget(0), hosts, log.child({ component: "asks" }));
  asks.handle("peers", () => peers.check());
  asks.handle("clock", async () => ({ now: Date.now() }));

  return {
    driver,
    ipam: hostIpam,
    clusterIpam: ipam,
    store,
    outbox,
    hosts,
    peers,
    collector,
    names,
    catalog,
    propagation,
    view: new ClusterView(store, hosts),
    start: async () => {
      hosts.start();
      await driver.restore();
      collector.start();
      outbox.kick();
      follower?.start();
      unscrape = onScrape(domainGauges({ local, peers, programmed, hosts, store, outbox }));
      asks.start();
    },
    localEndpoints: () => local.endpoints(),
    localNetworks: async () => {
      const used = new Set((await local.endpoints()).map((e) => e.networkId));
      return (await local.networks()).filter((n) => used.has(n.networkId));
    },
    peerReport: async () => peerReportOf(await asks.ask("peers", PEERS_ASK_MS)),
    asks,
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
        docker: follower === undefined ? { following: false, reason: "no Docker API socket configured" } : { following: follower.following },
        ...(propagation === undefined ? {} : { propagation: propagation.status() }),
        networks: peers.followed().map((f) => ({
          subnet: f.subnet,
          names:
            propagation
              ?.status()
              .networks.filter((n) => n.subnet === f.subnet)
              .map((n) => n.name) ?? [],
          endpoints: peers.records(f.subnet).map((r) => ({ host: r.hostId, ip: r.ip, name: r.names?.[0] ?? r.name ?? null, names: r.names ?? [] })),
        })),
      };
    },
    stop: async () => {
      unscrape?.();
      asks.stop();
      await follower?.stop();
      await collector.stop();
      await outbox.close();
      peers.stopAll();
      admission?.stop();
      hosts.stop();
    },
  };
}
