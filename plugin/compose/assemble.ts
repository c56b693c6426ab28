/**
 * A host's domain, put together: every part built in the order of what it
 * needs (layout gate → store resilience → IPAM and networks → outbox → host
 * registry → peers and VXLAN admission → driver → collector → the previous layout's copies →
 * names, catalog, questions), then started and stopped in the order that
 * keeps the cluster's view of this host consistent. Design note: it is one
 * function, over the usual size, on purpose: the wiring is the only thing it
 * holds, and its value is that the order of construction, of start and of
 * stop can be read top to bottom in one place; split, each half would have to
 * know the other's order. Each part's behaviour lives in its own module.
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
import { messageOf } from "../../lib/errors.js";
import { onScrape } from "../../lib/metrics.js";
import { domainGauges, ProgrammedPeers } from "./metric-sources.js";
import { ClusterAsk } from "../../driver/cluster/cluster-ask.js";
import { LayoutGate, type LayoutState } from "../../driver/cluster/layout.js";
import { RecordFeed } from "../../driver/cluster/record-feed.js";
import { RejectionLog } from "../../driver/cluster/record-checks.js";
import { EndpointRecords } from "../../driver/cluster/endpoint-records.js";
import { PreviousLayout } from "../../driver/cluster/previous-layout.js";
import { WireGuardPeers } from "../../driver/encryption/wireguard-peers.js";
import type { TunnelSubnet } from "../../driver/encryption/tunnel-address.js";
import type { WireGuardPort } from "../../driver/contracts/wireguard.js";

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
  /** This host's WireGuard interface; absent: encrypted networks are refused here. */
  wireguard?: WireGuardPort;
}

export interface DomainSettings {
  hostId: string;
  /** This plugin's version (package.json), shown in its host record. */
  pluginVersion?: string;
  /** This host's WireGuard public key, published in its host record; absent when it could not be made. */
  wireguardKey?: string;
  /** The tunnel subnet and WireGuard's port (encrypted networks). */
  encryption?: { subnet: TunnelSubnet; port: number };
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
  /** This host's WireGuard peers; undefined when it has no key or no WireGuard port (tests). */
  encryption: WireGuardPeers | undefined;
  /** Questions to every live host through the store ("peers", "clock"). */
  asks: ClusterAsk;
  /** Every live host's peer tables against what it should program, read now (`tsoverlay peers`). */
  peerReport(): Promise<PeerReport>;
  /** The cluster store's layout revision as this host found it (a newer one is refused: see driver/cluster/layout.ts). */
  layout(): LayoutState;
  /** Hosts of the previous layout, and this host's copies for them (driver/cluster/previous-layout.ts). */
  previousLayout: PreviousLayout;
  /** Restores the datapath from local state, then starts the background work (collector, queued teardown). */
  start(): Promise<void>;
  status(): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/**
 * The one place where a host's domain is put together, for the plugin process
 * and for the unit tests alike: layout gate → store resilience → IPAM and
 * networks → outbox → host registry → peers → driver → collector. Nothing
 * here waits for the cluster store (see OverlayDriver's design note). The
 * cluster part (registration, peers, collector, questions, the daemon's
 * follower) starts once the store's layout marker was found fine, and stops
 * if it names a newer layout (driver/cluster/layout.ts); its first step
 * writes this host's own records before the host shows itself alive, so that
 * a host upgraded from the previous layout is never seen alive without its
 * endpoints.
 */
export async function assembleDomain(a: DomainAdapters, s: DomainSettings, log: Logger): Promise<AssembledDomain> {
  const gate = new LayoutGate(a.cluster, s.hostId, log.child({ component: "layout" }));
  const store = new ResilientStore(gate.guard(a.cluster), { budgetMs: s.storeRetryMs, log: log.child({ component: "store" }) });
  const rejections = new RejectionLog(log.child({ component: "records" }));
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
  // previousLayout is made below, with the driver it needs; it is only asked once Docker's calls come.
  const endpointRecords = new EndpointRecords(store, s.hostId, (): boolean => previousLayout.active(), log);
  const outbox = await Outbox.open(a.local, teardownRunner({ endpointRecords, ipam, networks, catalog, hostId: s.hostId, log }), { log });
  const feed = new RecordFeed(store, log);
  const hosts = new HostRegistry(
    store,
    feed,
    {
      hostId: s.hostId,
      vtep: s.vtep,
      ...(s.pluginVersion === undefined ? {} : { pluginVersion: s.pluginVersion }),
      ...(s.wireguardKey === undefined ? {} : { wireguardKey: s.wireguardKey }),
    },
    log,
    s.hostTtlSeconds,
    rejections,
  );
  const localOf = async (subnet: string): Promise<{ ip: string; mac: string }[]> =>
    (await local.endpoints()).filter((e) => e.subnet === subnet).map((e) => ({ ip: addressOf(e.addressCidr), mac: e.mac }));
  const programmed = new ProgrammedPeers();
  const datapath = programmed.around(a.datapath);
  const peers = new PeerSync(feed, datapath, hosts, localOf, log, s.reconcileMs, rejections);
  const admission = a.vxlanAdmission === undefined ? undefined : new VtepAdmission(hosts, a.vxlanAdmission, log, s.reconcileMs);
  const teardownWaitMs = s.teardownWaitMs ?? TEARDOWN_WAIT_MS;
  const encryption =
    a.wireguard === undefined || s.encryption === undefined
      ? undefined
      : new WireGuardPeers(
          hosts,
          a.wireguard,
          { ...s.encryption, ...(s.wireguardKey === undefined ? {} : { publicKey: s.wireguardKey }) },
          log.child({ component: "wireguard" }),
          s.reconcileMs,
        );
  const driver = new OverlayDriver({
    recordStore: store.withBudget(0),
    endpointRecords,
    local,
    outbox,
    datapath,
    egress: a.egress,
    hosts,
    peers,
    networks,
    publisher: a.publisher,
    ...(encryption === undefined ? {} : { encryption }),
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
  const previousLayout: PreviousLayout = new PreviousLayout(
    {
      store: background,
      hosts,
      local,
      endpointRecord: (ep) => driver.endpointRecord(ep),
      exclusive: (subnet, work) => driver.exclusive(subnet, work),
      log: log.child({ component: "previous-layout" }),
    },
    s.reconcileMs,
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

  let stopping = false;
  const startCluster = async (): Promise<void> => {
    if (stopping) return;
    feed.start();
    outbox.kick();
    await collector.pass(); // this host's own records (the host list is not read yet: no dead-host half)
    if (stopping) return;
    hosts.start();
    collector.start();
    follower?.start();
    asks.start();
    previousLayout.start();
  };
  const stopCluster = async (): Promise<void> => {
    asks.stop();
    await follower?.stop();
    await collector.stop();
    await previousLayout.stop();
    peers.stopAll();
    admission?.stop();
    encryption?.stop();
    hosts.stop();
    feed.stop();
  };

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
    layout: () => gate.status(),
    previousLayout,
    start: async () => {
      await driver.restore();
      unscrape = onScrape(domainGauges({ local, peers, programmed, hosts, store, outbox }));
      gate.start({
        ready: () => void startCluster().catch((err: unknown) => log.error({ err: messageOf(err) }, "starting the cluster part failed")),
        refused: () => void stopCluster(),
      });
    },
    localEndpoints: () => local.endpoints(),
    localNetworks: async () => {
      const used = new Set((await local.endpoints()).map((e) => e.networkId));
      return (await local.networks()).filter((n) => used.has(n.networkId));
    },
    peerReport: async () => peerReportOf(await asks.ask("peers", PEERS_ASK_MS)),
    asks,
    encryption,
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
        layout: gate.status(),
        rejectedRecords: rejections.recent(),
        hosts: {
          ready: hosts.ready,
          alive: hosts
            .hosts()
            .map((h) => h.hostId)
            .sort(),
          previousLayout: hosts.previousOnly(),
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
      stopping = true;
      unscrape?.();
      gate.stop();
      await stopCluster();
      await outbox.close();
    },
  };
}
