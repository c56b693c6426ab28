/**
 * The network driver's behaviour, protocol-free: the HTTP edge validates
 * Docker's requests and calls OverlayDriver. Work on one network is
 * serialized; everything is idempotent so a retried or replayed call is
 * harmless. Every operation returns an Outcome (driver/errors.ts); nothing
 * escapes as an exception.
 *
 * Design note.
 *  - What needs the cluster store and what does not. Creating a network or an
 *    endpoint writes the cluster (and first waits for earlier teardown to
 *    reach it, so that nothing released late undoes it); when the store stays
 *    away the call fails with words that say so. Everything else is served
 *    from this host's own state: Join, Leave, port publishing and every
 *    teardown, whose cluster part goes to the outbox and is finished when the
 *    store is back. A plugin restart restores the datapath from the same state.
 *  - Where the kernel work happens: CreateNetwork only has the network's NAT
 *    wanted (EgressPort.prepare: one iptables process per network and host,
 *    none on a container's start); CreateEndpoint makes the veth pair (one
 *    end on the network's br0, the other left in the host namespace), and the
 *    network's namespace and uplink with its first endpoint; Join only names
 *    that end for Docker, which moves it into the container (libnetwork's own
 *    overlay does the veth work in Join instead).
 *  - All of Docker's driver calls in one class. Each is short, and they are
 *    read best side by side: what each one writes (cluster store, kernel,
 *    outbox, local state) and in which order, and how teardown undoes it in
 *    the reverse order (a failed CreateEndpoint is rolled back by the same
 *    withdrawEndpoint that DeleteEndpoint uses). They share the lock per
 *    network and the turning of failures into Outcomes. What does not depend
 *    on that order lives elsewhere: membership of the cluster network
 *    (network/cluster-networks.ts), one endpoint's published ports
 *    (publish/endpoint-ports.ts), peers (peers/), the queued teardown
 *    (local/outbox.ts, cluster/teardown.ts).
 */
import type { EndpointRecords } from "./cluster/endpoint-records.js";
import type { EndpointRecord, NetworkRecord, RecordPort } from "./cluster/records.js";
import { fromThrown, kernelStep, refuse, within, type Outcome } from "./errors.js";
import type { HostRegistry } from "./hosts/host-registry.js";
import { ADDRESS_SPACE, POOL_OVERLAP } from "./ipam/pool-records.js";
import type { LocalEndpoint, LocalNetwork, LocalState } from "./local/local-state.js";
import type { Outbox } from "./local/outbox.js";
import type { ClusterNetworks } from "./network/cluster-networks.js";
import { parseNetworkOptions, VXLAN_OVERHEAD, WIREGUARD_OVERHEAD } from "./network/network-options.js";
import type { WireGuardPeers } from "./encryption/wireguard-peers.js";
import type { PeerSync } from "./peers/peer-sync.js";
import { endpointIfNames, type Datapath, type EgressPort, type NetworkSpec } from "./contracts/datapath.js";
import type { Store } from "./contracts/store.js";
import { EndpointPorts } from "./publish/endpoint-ports.js";
import type { PortPublisher, PortRequest, PublishedPort } from "./publish/port-publisher.js";
import { addressOf, macFromIpv4, normalizeMac } from "../lib/net.js";
import { KeyedMutex } from "../lib/keyed-mutex.js";
import type { Logger } from "../lib/log.js";
import { success } from "../lib/result.js";
import { messageOf } from "../lib/errors.js";

/** Docker's prefix for container interfaces (eth0, eth1, …). */
const DEFAULT_IFACE_PREFIX = "eth";

export interface DriverSettings {
  hostId: string;
  vtep: string;
  underlayMtu: number;
  /** How long a call that needs the cluster store waits for earlier teardown to reach it (ms). */
  storeBudgetMs: number;
  /** How long a teardown call waits for its cluster part before answering anyway (ms). */
  teardownWaitMs: number;
  /**
   * The name service's address (the gateway bridge's), when it runs. An
   * --internal network then gets a host-only uplink and its containers a
   * route to this one address, so their names resolve too.
   */
  nameServer?: string;
}

export interface DriverDeps {
  /** The cluster store without retries, for record updates made under a network's lock beside Docker's calls (names, ports). */
  recordStore: Store;
  /** Where this host's endpoint records go (over `store`). */
  endpointRecords: EndpointRecords;
  local: LocalState;
  outbox: Outbox;
  datapath: Datapath;
  egress: EgressPort;
  hosts: HostRegistry;
  peers: PeerSync;
  networks: ClusterNetworks;
  publisher: PortPublisher;
  /** This host's WireGuard peers (encrypted networks); absent: this host cannot encrypt, and refuses encrypted networks. */
  encryption?: WireGuardPeers;
  /** The container name the IPAM recorded with an address (Docker 29+), if any. */
  nameOf: (subnet: string, ip: string) => Promise<string | undefined>;
  settings: DriverSettings;
  log: Logger;
}

export interface CreateNetworkInput {
  networkId: string;
  addressSpace: string;
  pool: string;
  gatewayCidr: string | undefined;
  options: Record<string, string>;
  /** `--internal`. */
  internal: boolean;
  /** `--aux-address` name → CIDR. */
  auxAddresses: Record<string, string>;
}

export interface CreateEndpointInput {
  networkId: string;
  endpointId: string;
  addressCidr: string;
  mac: string;
}

export interface JoinInfo {
  srcName: string;
  dstPrefix: string;
  /** Absent on an internal network: containers get no default route through it. */
  gateway?: string;
  /** Routes the container gets through this network besides (an internal network's route to the name service). */
  routes?: { destination: string; nextHop: string }[];
}

/** Docker's network driver calls, one network at a time (see the note at the top). */
export class OverlayDriver {
  private readonly mutex = new KeyedMutex();
  readonly ports: EndpointPorts;

  constructor(private readonly d: DriverDeps) {
    this.ports = new EndpointPorts({ local: d.local, publisher: d.publisher, recordOf: (net) => this.recordOf(net), log: d.log });
  }

  async createNetwork(req: CreateNetworkInput): Promise<Outcome<void>> {
    const what = `network ${req.networkId}`;
    if (req.addressSpace !== ADDRESS_SPACE) {
      return refuse(
        "bad-request",
        `${what}: tsoverlay needs its own IPAM so addresses are unique across hosts: add --ipam-driver tsoverlay (address space was ${JSON.stringify(req.addressSpace)})`,
      );
    }
    if (req.gatewayCidr === undefined) return refuse("bad-request", `${what}: no gateway was allocated for pool ${req.pool}`);
    const aux = Object.entries(req.auxAddresses);
    if (aux.length > 0) {
      return refuse(
        "bad-request",
        `${what}: --aux-address is not supported: tsoverlay hands out addresses cluster-wide; keep addresses out of its hands with --ip-range instead (got ${aux.map(([k, v]) => `${k}=${v}`).join(", ")})`,
      );
    }
    const opts = parseNetworkOptions(req.options);
    if (!opts.ok) return { ok: false, error: within(what, opts.error) };
    if (opts.value.encrypted === true && this.d.encryption === undefined) {
      return refuse("bad-request", `${what}: -o encrypted needs WireGuard, and this host has none set up (the plugin's log at start says why)`);
    }
    const gatewayCidr = req.gatewayCidr;
    return this.guard(what, req.pool, async () => {
      const known = await this.d.local.getNetwork(req.networkId);
      if (known !== undefined && known.subnet !== req.pool) return refuse("conflict", `${what} already exists for subnet ${known.subnet}`);
      const twin = await this.d.local.networkOn(req.pool);
      if (twin !== undefined && twin.networkId !== req.networkId) {
        return refuse("conflict", `${what}: ${POOL_OVERLAP} (${req.pool} is already network ${twin.networkId.slice(0, 12)} on this host)`);
      }
      await this.d.outbox.flush(this.d.settings.storeBudgetMs, req.pool);
      const joined = await this.d.networks.join(req.pool, gatewayCidr, { ...opts.value, ...(req.internal ? { internal: true } : {}) }, req.networkId);
      if (!joined.ok) return joined;
      await this.d.local.putNetwork({ networkId: req.networkId, subnet: req.pool, record: joined.value });
      await this.prepareEgress(joined.value);
      this.d.log.info({ networkId: req.networkId, subnet: req.pool, vni: joined.value.vni, internal: req.internal }, "network created");
      return success(undefined);
    });
  }

  /** Always succeeds on this host but for the kernel; leaving the cluster network is finished through the outbox. */
  async deleteNetwork(networkId: string): Promise<Outcome<void>> {
    const what = `network ${networkId}`;
    const net = await this.caught(what, async () => success(await this.d.local.getNetwork(networkId)));
    if (!net.ok) return net;
    if (net.value === undefined) return refuse("not-found", `${what} not found`);
    const { subnet } = net.value;
    return this.guard(what, subnet, async () => {
      await this.d.local.deleteNetwork(networkId);
      const seq = await this.d.outbox.add({ kind: "leave-network", subnet });
      try {
        const left = (await this.d.local.endpoints()).filter((e) => e.subnet === subnet);
        if (left.length === 0) {
          await this.teardownDatapath(subnet);
          await this.d.egress.release(subnet).catch((e: unknown) => this.egressLater(subnet, "removing", e));
        }
      } finally {
        await this.d.outbox.settle(seq, this.d.settings.teardownWaitMs);
      }
      this.d.log.info({ networkId, subnet }, "network deleted");
      return success(undefined);
    });
  }

  async createEndpoint(req: CreateEndpointInput): Promise<Outcome<{ mac?: string }>> {
    const what = `endpoint ${req.endpointId} of network ${req.networkId}`;
    const found = await this.caught(what, async () => success(await this.d.local.getNetwork(req.networkId)));
    if (!found.ok) return found;
    const net = found.value;
    if (net === undefined) return refuse("not-found", `${what}: network not found`);
    if (req.addressCidr === "") return refuse("bad-request", `${what}: no IPv4 address given`);
    let mac = macFromIpv4(addressOf(req.addressCidr));
    if (req.mac !== "") {
      const given = normalizeMac(req.mac);
      if (given === undefined) return refuse("bad-request", `${what}: invalid MAC address ${req.mac}`);
      mac = given;
    }
    return this.guard(what, net.subnet, async () => {
      const rec = await this.recordOf(net);
      if (!rec.ok) return { ok: false, error: within(what, rec.error) };
      const ep: LocalEndpoint = { endpointId: req.endpointId, networkId: req.networkId, subnet: net.subnet, addressCidr: req.addressCidr, mac };
      try {
        await this.d.outbox.flush(this.d.settings.storeBudgetMs, net.subnet);
        const name = await this.d.nameOf(net.subnet, addressOf(req.addressCidr));
        if (name !== undefined) ep.name = name;
        await this.ensureDatapath(rec.value, true);
        await kernelStep("creating the veth pair", () =>
          this.d.datapath.ensureEndpoint(net.subnet, { endpointId: ep.endpointId, addressCidr: ep.addressCidr, mac }, this.mtuOf(rec.value)),
        );
        await this.d.local.putEndpoint(ep);
        await this.d.endpointRecords.put(ep.subnet, ep.endpointId, JSON.stringify(this.endpointRecord(ep)));
      } catch (e) {
        await this.withdrawEndpoint(ep, false).catch((undo: unknown) =>
          this.d.log.error(
            { endpointId: ep.endpointId, subnet: ep.subnet, err: String(undo), left: "its veth pair or its local record" },
            "rolling back a failed endpoint failed",
          ),
        );
        return { ok: false, error: fromThrown(e, what) };
      }
      // Peers that were waiting for this address to become local drop it now.
      void this.d.peers.resync(net.subnet, "local endpoint added");
      this.d.log.info({ endpointId: ep.endpointId, subnet: ep.subnet, ip: addressOf(ep.addressCidr), mac, name: ep.name }, "endpoint created");
      return success(req.mac === "" ? { mac } : {});
    });
  }

  async endpointInfo(networkId: string, endpointId: string): Promise<Outcome<Record<string, string>>> {
    const ep = await this.localEndpoint(networkId, endpointId);
    if (!ep.ok) return ep;
    const e = ep.value;
    return success({ address: e.addressCidr, mac: e.mac, host: this.d.settings.hostId, ...(e.name === undefined ? {} : { name: e.name }) });
  }

  /** Names the veth end made by CreateEndpoint for Docker, and says which gateway to route through. */
  async join(networkId: string, endpointId: string, sandbox?: string): Promise<Outcome<JoinInfo>> {
    const what = `endpoint ${endpointId} of network ${networkId}`;
    const ep = await this.localEndpoint(networkId, endpointId);
    if (!ep.ok) return ep;
    // Which container this endpoint belongs to: the name service scopes a query by it.
    if (sandbox !== undefined && ep.value.sandbox !== sandbox) {
      const kept = await this.caught(what, async () => success(await this.d.local.putEndpoint({ ...ep.value, sandbox })));
      if (!kept.ok) return kept;
    }
    const net = await this.caught(what, async () => success(await this.d.local.getNetwork(networkId)));
    if (!net.ok) return net;
    if (net.value === undefined) return refuse("not-found", `${what}: network not found`);
    const rec = await this.recordOf(net.value);
    if (!rec.ok) return { ok: false, error: within(what, rec.error) };
    const info: JoinInfo = { srcName: endpointIfNames(endpointId).hostIfName, dstPrefix: rec.value.ifacePrefix ?? DEFAULT_IFACE_PREFIX };
    // Docker's own bridge gives an internal network's containers no gateway either.
    if (rec.value.internal !== true) info.gateway = addressOf(rec.value.gatewayCidr);
    else if (this.d.settings.nameServer !== undefined) {
      info.routes = [{ destination: `${this.d.settings.nameServer}/32`, nextHop: addressOf(rec.value.gatewayCidr) }];
    }
    return success(info);
  }

  async leave(networkId: string, endpointId: string): Promise<Outcome<void>> {
    const ep = await this.localEndpoint(networkId, endpointId);
    return ep.ok ? success(undefined) : ep;
  }

  /** Succeeds on this host even while the cluster store is away; its record is withdrawn through the outbox. */
  async deleteEndpoint(networkId: string, endpointId: string): Promise<Outcome<void>> {
    const ep = await this.localEndpoint(networkId, endpointId);
    if (!ep.ok) return ep;
    return this.guard(`endpoint ${endpointId} of network ${networkId}`, ep.value.subnet, async () => {
      await this.withdrawEndpoint(ep.value);
      this.d.log.info({ endpointId, subnet: ep.value.subnet }, "endpoint deleted");
      return success(undefined);
    });
  }

  /** See EndpointPorts.program. */
  async programExternalConnectivity(
    networkId: string,
    endpointId: string,
    ports: PortRequest[],
    opts: { ipv6Elsewhere?: boolean } = {},
  ): Promise<Outcome<PublishedPort[]>> {
    const ep = await this.localEndpoint(networkId, endpointId);
    if (!ep.ok) return ep;
    const published = await this.caught(`ports of endpoint ${endpointId} of network ${networkId}`, () => this.ports.program(ep.value, ports, opts));
    if (published.ok && published.value.length > 0) this.recordPorts(endpointId, published.value.map(recordPort));
    return published;
  }

  /**
   * Unpublishes the endpoint's ports. An endpoint this host does not know has
   * nothing published: that is a success (what libnetwork also makes of an
   * answer that the endpoint is unknown here).
   */
  async revokeExternalConnectivity(networkId: string, endpointId: string): Promise<Outcome<void>> {
    return this.caught(`ports of endpoint ${endpointId} of network ${networkId}`, async () => {
      await this.ports.revoke(endpointId);
      // Not only before a delete: a `docker network disconnect` moves a container's ports to another endpoint.
      if (((await this.d.local.getEndpoint(endpointId))?.published?.length ?? 0) > 0) this.recordPorts(endpointId, []);
      return success(undefined);
    });
  }

  /**
   * Shows the endpoint's published ports in its cluster record (for `tsoverlay
   * ps` on other hosts), beside the Docker call rather than inside it: a store
   * that is away must not fail or delay publishing. A record that could not be
   * written keeps its old ports until the next change.
   */
  private recordPorts(endpointId: string, ports: RecordPort[]): void {
    void this.updateRecord(endpointId, (ep) => ({ ...ep, published: ports })).catch((e: unknown) =>
      this.d.log.warn({ endpointId, err: messageOf(e) }, "recording published ports in the cluster store failed"),
    );
  }

  /**
   * After a plugin restart: re-adopt the datapath of every network that still
   * has endpoints here, follow its peers again, and re-publish the endpoints'
   * ports. Needs nothing from the cluster store (its records are re-asserted
   * later, by the collector, once the store answers).
   */
  async restore(): Promise<void> {
    const endpoints = await this.d.local.endpoints();
    const nets = await this.d.local.networks();
    for (const n of nets) if (n.record !== undefined) await this.mutex.run(n.subnet, () => this.prepareEgress(n.record!));
    for (const subnet of new Set(endpoints.map((e) => e.subnet))) {
      await this.mutex.run(subnet, async () => {
        const net = nets.find((n) => n.subnet === subnet);
        const rec = net === undefined ? refuse("not-found", `no network on this host has subnet ${subnet}`) : await this.recordOf(net);
        if (!rec.ok) {
          this.d.log.error({ subnet, err: rec.error.message }, "restore: network unknown; its endpoints stay unprogrammed");
          return;
        }
        await this.ensureDatapath(rec.value, false);
        for (const ep of endpoints.filter((e) => e.subnet === subnet)) await this.ports.restore(ep, rec.value);
      });
    }
    // Only when every network's VNI is known here: a pin of one not known could be the namespace of a live one.
    if (nets.every((n) => n.record !== undefined)) await this.d.datapath.restored(nets.flatMap((n) => (n.record === undefined ? [] : [n.record.vni])));
    this.d.log.info({ networks: nets.length, endpoints: endpoints.length }, "state restored");
  }

  /** Runs `work` under this driver's lock for the network (the collector's checks must not interleave with a create or delete). */
  exclusive<T>(subnet: string, work: () => Promise<T>): Promise<T> {
    return this.mutex.run(subnet, work);
  }

  /** The endpoint record peers program, as this host publishes it. */
  endpointRecord(ep: LocalEndpoint): EndpointRecord {
    return {
      endpointId: ep.endpointId,
      networkId: ep.networkId,
      hostId: this.d.settings.hostId,
      vtep: this.d.settings.vtep,
      ip: addressOf(ep.addressCidr),
      mac: ep.mac,
      ...(ep.name === undefined ? {} : { name: ep.name }),
      ...(ep.names === undefined ? {} : { names: ep.names }),
      ...(ep.published === undefined || ep.published.length === 0 ? {} : { ports: ep.published }),
    };
  }

  /**
   * The container's names on this endpoint's network (its name, its network
   * aliases), as the Docker API reports them: kept with the endpoint and in
   * its cluster record, where every host's name service finds them. Returns
   * false for an endpoint this host does not have.
   */
  async setNames(endpointId: string, names: string[]): Promise<boolean> {
    // In Docker's order: the container's name first (the status endpoint shows it as the endpoint's name).
    const wanted = [...new Set(names.map((n) => n.toLowerCase()))];
    return this.updateRecord(endpointId, (ep) => ({ ...ep, names: wanted }));
  }

  /** Changes a local endpoint and its cluster record together, under the network's lock; false if the endpoint is not (or no longer) here. */
  private async updateRecord(endpointId: string, change: (ep: LocalEndpoint) => LocalEndpoint): Promise<boolean> {
    const found = await this.d.local.getEndpoint(endpointId);
    if (found === undefined) return false;
    return this.mutex.run(found.subnet, async () => {
      const ep = await this.d.local.getEndpoint(endpointId);
      if (ep === undefined) return false;
      const updated = change(ep);
      await this.d.local.putEndpoint(updated);
      const records = this.d.endpointRecords.over(this.d.recordStore);
      const record = JSON.stringify(this.endpointRecord(updated));
      // Under the lock: a store that is away fails this at once (the collector writes the record later), never holding Docker's calls.
      if ((await records.get(ep.subnet, ep.endpointId)) !== record) await records.put(ep.subnet, ep.endpointId, record);
      return true;
    });
  }

  /** Serializes work on a network, and turns anything it throws into a DomainError with context. */
  private guard<T>(what: string, subnet: string, work: () => Promise<Outcome<T>>): Promise<Outcome<T>> {
    return this.mutex.run(subnet, () => this.caught(what, work));
  }

  /** `work`'s outcome, or what it threw (the local state or the kernel failing) as a DomainError about `what`. */
  private async caught<T>(what: string, work: () => Promise<Outcome<T>>): Promise<Outcome<T>> {
    try {
      return await work();
    } catch (e) {
      return { ok: false, error: fromThrown(e, what) };
    }
  }

  private async localEndpoint(networkId: string, endpointId: string): Promise<Outcome<LocalEndpoint>> {
    const what = `endpoint ${endpointId} of network ${networkId}`;
    const ep = await this.caught(what, async () => success(await this.d.local.getEndpoint(endpointId)));
    if (!ep.ok) return ep;
    if (ep.value === undefined || ep.value.networkId !== networkId) return refuse("not-found", `${what} not found`);
    return success(ep.value);
  }

  /** The network's MTU: as asked with -o mtu, else what fits the underlay with VXLAN (and WireGuard, when encrypted) around it. */
  private mtuOf(rec: NetworkRecord): number {
    return rec.mtu ?? this.d.settings.underlayMtu - VXLAN_OVERHEAD - (rec.encrypted === true ? WIREGUARD_OVERHEAD : 0);
  }

  /**
   * The network's cluster record from the local copy; networks created before
   * the copy was kept fetch it once from the store.
   */
  private async recordOf(net: LocalNetwork): Promise<Outcome<NetworkRecord>> {
    if (net.record !== undefined) return success(net.record);
    try {
      const rec = await this.d.networks.get(net.subnet);
      if (rec === undefined) return refuse("not-found", `network ${net.subnet} is missing from the cluster store`);
      await this.d.local.putNetwork({ ...net, record: rec });
      return success(rec);
    } catch (e) {
      return { ok: false, error: fromThrown(e) };
    }
  }

  /**
   * What the network needs on this host before any endpoint (its NAT), so
   * that no container's start waits for it. A failure fails nothing: the rule
   * is wanted already (chain.ts), and the RuleKeeper writes it on its next
   * pass, within a reconcile period.
   */
  private async prepareEgress(rec: NetworkRecord): Promise<void> {
    await this.d.egress.prepare(rec.subnet, { nat: rec.internal !== true }).catch((e: unknown) => this.egressLater(rec.subnet, "setting up", e));
  }

  private egressLater(subnet: string, doing: string, e: unknown): void {
    this.d.log.warn({ subnet, err: messageOf(e) }, `${doing} the network's NAT failed; the periodic repair of the plugin's iptables rules catches up`);
  }

  private async ensureDatapath(rec: NetworkRecord, waitForPeers: boolean): Promise<void> {
    const spec: NetworkSpec = { subnet: rec.subnet, gatewayCidr: rec.gatewayCidr, vni: rec.vni, mtu: this.mtuOf(rec) };
    const encryption = this.d.encryption;
    if (rec.encrypted === true) {
      // WireGuard before the VXLAN device that sends through it: an encrypted network is never up without its tunnel.
      if (encryption === undefined)
        throw new Error(`network ${rec.subnet} is encrypted, and this host has no WireGuard set up (the plugin's log at start says why)`);
      await kernelStep("setting up WireGuard", () => encryption.activate());
      spec.tunnelSource = encryption.selfAddress;
    }
    await kernelStep("setting up the network's namespace", () => this.d.datapath.ensureNetwork(spec));
    // An internal network has no way out: no uplink at all, or, when the name
    // service runs, one that reaches nothing but the gateway bridge's address.
    const internal = rec.internal === true;
    if (!internal || this.d.settings.nameServer !== undefined) {
      const slot = await this.d.local.egressSlot(rec.subnet);
      await kernelStep("setting up the network's uplink", () => this.d.egress.ensure(rec.subnet, rec.vni, slot, { hostOnly: internal }));
    }
    const tunnel = rec.encrypted === true && encryption !== undefined ? (vtep: string): string => encryption.addressOf(vtep) : undefined;
    await this.d.peers.start(rec.subnet, rec.gatewayCidr, waitForPeers ? 2_000 : 0, tunnel);
  }

  /**
   * Takes an endpoint out: its published ports, its record in the cluster
   * (through the outbox, so that a store outage loses nothing), its local
   * record, then its links and the network's datapath after the last endpoint.
   * Waits a little for the cluster part, so that peers and the address are
   * usually free by the time Docker hears back; never longer than teardownWaitMs.
   */
  private async withdrawEndpoint(ep: LocalEndpoint, wait = true): Promise<void> {
    await this.ports.revoke(ep.endpointId);
    const seq = await this.d.outbox.add({ kind: "withdraw-endpoint", subnet: ep.subnet, endpointId: ep.endpointId });
    // Forgotten locally before the kernel is touched: a kernel failure must not
    // leave a record that the collector would advertise again.
    await this.d.local.deleteEndpoint(ep.endpointId);
    try {
      await kernelStep("removing the veth pair", () => this.d.datapath.removeEndpoint(ep.subnet, ep.endpointId));
      const left = (await this.d.local.endpoints()).filter((e) => e.subnet === ep.subnet);
      if (left.length === 0) await this.teardownDatapath(ep.subnet);
    } finally {
      if (wait) await this.d.outbox.settle(seq, this.d.settings.teardownWaitMs);
    }
  }

  private async teardownDatapath(subnet: string): Promise<void> {
    this.d.peers.stop(subnet);
    const slot = await this.d.local.existingEgressSlot(subnet);
    if (slot !== undefined) {
      await kernelStep("removing the network's uplink", () => this.d.egress.remove(subnet, slot));
      await this.d.local.releaseEgressSlot(subnet);
    }
    await kernelStep("removing the network's namespace", () => this.d.datapath.removeNetwork(subnet));
  }
}

function recordPort(p: PublishedPort): RecordPort {
  return { proto: p.proto, hostIp: p.hostIp, hostPort: p.hostPort, containerPort: p.containerPort, via: p.kernelDnat ? "dnat" : "proxy" };
}
