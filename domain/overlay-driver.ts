import { keys } from "./cluster/keys.js";
import type { EndpointRecord, NetworkRecord } from "./cluster/records.js";
import { endpointIfNames, type Datapath, type EgressPort, type NetworkSpec } from "./ports/datapath.js";
import type { HostRegistry } from "./hosts/host-registry.js";
import { POOL_OVERLAP } from "./ipam/pools.js";
import type { LocalEndpoint, LocalNetwork, LocalState } from "./local/local-state.js";
import type { Outbox } from "./local/outbox.js";
import type { Logger } from "../lib/log.js";
import type { ClusterNetworks } from "./network/cluster-networks.js";
import { macFromIpv4, normalizeMac } from "../lib/net.js";
import { parseNetworkOptions, VXLAN_OVERHEAD } from "./network/network-options.js";
import type { PeerSync } from "./peers/peer-sync.js";
import type { PortPublisher, PortRequest, PublishedPort } from "./publish/port-publisher.js";
import { failure, success, type Result } from "../lib/result.js";
import { StoreError, type Store } from "./ports/store.js";
import { KeyedMutex } from "../lib/keyed-mutex.js";

/** The address space our IPAM reports; networks from any other IPAM are refused. */
export const ADDRESS_SPACE = "tsoverlay";

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
}

export interface DriverDeps {
  store: Store;
  local: LocalState;
  outbox: Outbox;
  datapath: Datapath;
  egress: EgressPort;
  hosts: HostRegistry;
  peers: PeerSync;
  networks: ClusterNetworks;
  publisher: PortPublisher;
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
}

function ipOf(cidr: string): string {
  return cidr.split("/")[0] ?? cidr;
}

/** A published port as an explicit request for the same host port. */
function boundRequest(p: PublishedPort): PortRequest {
  return { proto: p.proto === "tcp" ? 6 : 17, hostIp: p.hostIp, hostPort: p.hostPort, hostPortEnd: p.hostPort, containerPort: p.containerPort };
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * The network driver's behaviour, protocol-free: the HTTP edge validates
 * requests and calls these. Work on one network is serialized; everything is
 * idempotent so a retried or replayed call is harmless.
 *
 * Design note: what needs the cluster store and what does not. Creating a
 * network or an endpoint writes the cluster (and first waits for earlier
 * teardown to reach it, so that nothing released late undoes it); when the
 * store stays away the call fails with words that say so. Everything else is
 * served from this host's own state: Join, Leave, port publishing and every
 * teardown, whose cluster part goes to the outbox and is finished when the
 * store is back. A plugin restart restores the datapath from the same state.
 */
export class OverlayDriver {
  private readonly mutex = new KeyedMutex();

  constructor(private readonly d: DriverDeps) {}

  async createNetwork(req: CreateNetworkInput): Promise<Result<void>> {
    const what = `network ${req.networkId}`;
    if (req.addressSpace !== ADDRESS_SPACE) {
      return failure(
        `${what}: tsoverlay needs its own IPAM so addresses are unique across hosts: add --ipam-driver tsoverlay (address space was ${JSON.stringify(req.addressSpace)})`,
      );
    }
    if (req.gatewayCidr === undefined) return failure(`${what}: no gateway was allocated for pool ${req.pool}`);
    const aux = Object.entries(req.auxAddresses);
    if (aux.length > 0) {
      return failure(
        `${what}: --aux-address is not supported: tsoverlay hands out addresses cluster-wide; keep addresses out of its hands with --ip-range instead (got ${aux.map(([k, v]) => `${k}=${v}`).join(", ")})`,
      );
    }
    const opts = parseNetworkOptions(req.options);
    if (!opts.ok) return failure(`${what}: ${opts.error}`);
    const gatewayCidr = req.gatewayCidr;
    return this.mutex.run(req.pool, async () => {
      const known = await this.d.local.getNetwork(req.networkId);
      if (known !== undefined && known.subnet !== req.pool) return failure(`${what} already exists for subnet ${known.subnet}`);
      const twin = await this.d.local.networkOn(req.pool);
      if (twin !== undefined && twin.networkId !== req.networkId) {
        return failure(`${what}: ${POOL_OVERLAP} (${req.pool} is already network ${twin.networkId.slice(0, 12)} on this host)`);
      }
      return this.storeCall(what, async () => {
        await this.d.outbox.flush(this.d.settings.storeBudgetMs);
        const joined = await this.d.networks.join(req.pool, gatewayCidr, { ...opts.value, ...(req.internal ? { internal: true } : {}) }, req.networkId);
        if (!joined.ok) return failure(joined.error);
        await this.d.local.putNetwork({ networkId: req.networkId, subnet: req.pool, record: joined.value });
        this.d.log.info({ networkId: req.networkId, subnet: req.pool, vni: joined.value.vni, internal: req.internal }, "network created");
        return success(undefined);
      });
    });
  }

  /** Always succeeds on this host; leaving the cluster network is finished through the outbox. */
  async deleteNetwork(networkId: string): Promise<Result<void>> {
    const net = await this.d.local.getNetwork(networkId);
    if (net === undefined) return failure(`network ${networkId} not found`);
    return this.mutex.run(net.subnet, async () => {
      await this.d.local.deleteNetwork(networkId);
      const seq = await this.d.outbox.add({ kind: "leave-network", subnet: net.subnet });
      let kernel: string | undefined;
      const left = (await this.d.local.endpoints()).filter((e) => e.subnet === net.subnet);
      if (left.length === 0) kernel = await this.teardownDatapath(net.subnet).then(() => undefined, errorText);
      await this.d.outbox.settle(seq, this.d.settings.teardownWaitMs);
      if (kernel !== undefined) {
        this.d.log.error({ networkId, subnet: net.subnet, err: kernel }, "network deleted, but removing its datapath failed");
        return failure(`network ${networkId}: removing its datapath failed: ${kernel}`);
      }
      this.d.log.info({ networkId, subnet: net.subnet }, "network deleted");
      return success(undefined);
    });
  }

  async createEndpoint(req: CreateEndpointInput): Promise<Result<{ mac?: string }>> {
    const what = `endpoint ${req.endpointId} of network ${req.networkId}`;
    const net = await this.d.local.getNetwork(req.networkId);
    if (net === undefined) return failure(`${what}: network not found`);
    if (req.addressCidr === "") return failure(`${what}: no IPv4 address given`);
    let mac = macFromIpv4(ipOf(req.addressCidr));
    if (req.mac !== "") {
      const given = normalizeMac(req.mac);
      if (given === undefined) return failure(`${what}: invalid MAC address ${req.mac}`);
      mac = given;
    }
    return this.mutex.run(net.subnet, async () => {
      const rec = await this.recordOf(net);
      if (!rec.ok) return failure(`${what}: ${rec.error}`);
      const ep: LocalEndpoint = { endpointId: req.endpointId, networkId: req.networkId, subnet: net.subnet, addressCidr: req.addressCidr, mac };
      try {
        await this.d.outbox.flush(this.d.settings.storeBudgetMs);
        const name = await this.d.nameOf(net.subnet, ipOf(req.addressCidr));
        if (name !== undefined) ep.name = name;
        await this.ensureDatapath(rec.value, true);
        await this.d.datapath.ensureEndpoint(net.subnet, { endpointId: ep.endpointId, addressCidr: ep.addressCidr, mac }, this.mtuOf(rec.value));
        await this.d.local.putEndpoint(ep);
        await this.advertise(ep);
      } catch (e) {
        await this.withdrawEndpoint(ep, false).catch((undo: unknown) =>
          this.d.log.error({ endpointId: ep.endpointId, subnet: ep.subnet, err: errorText(undo) }, "rolling back a failed endpoint left something behind"),
        );
        return failure(e instanceof StoreError ? e.message : `${what}: ${errorText(e)}`);
      }
      // Peers that were waiting for this address to become local drop it now.
      void this.d.peers.resync(net.subnet, "local endpoint added");
      this.d.log.info({ endpointId: ep.endpointId, subnet: ep.subnet, ip: ipOf(ep.addressCidr), mac, name: ep.name }, "endpoint created");
      return success(req.mac === "" ? { mac } : {});
    });
  }

  async endpointInfo(networkId: string, endpointId: string): Promise<Result<Record<string, string>>> {
    const ep = await this.d.local.getEndpoint(endpointId);
    if (ep === undefined || ep.networkId !== networkId) return failure(`endpoint ${endpointId} of network ${networkId} not found`);
    return success({ address: ep.addressCidr, mac: ep.mac, host: this.d.settings.hostId, ...(ep.name === undefined ? {} : { name: ep.name }) });
  }

  async join(networkId: string, endpointId: string): Promise<Result<JoinInfo>> {
    const what = `endpoint ${endpointId} of network ${networkId}`;
    const ep = await this.d.local.getEndpoint(endpointId);
    if (ep === undefined || ep.networkId !== networkId) return failure(`${what}: not found`);
    const net = await this.d.local.getNetwork(networkId);
    if (net === undefined) return failure(`${what}: network not found`);
    const rec = await this.recordOf(net);
    if (!rec.ok) return failure(`${what}: ${rec.error}`);
    const info: JoinInfo = { srcName: endpointIfNames(endpointId).hostIfName, dstPrefix: rec.value.ifacePrefix ?? DEFAULT_IFACE_PREFIX };
    // Docker's own bridge gives an internal network's containers no gateway either.
    if (rec.value.internal !== true) info.gateway = ipOf(rec.value.gatewayCidr);
    return success(info);
  }

  async leave(networkId: string, endpointId: string): Promise<Result<void>> {
    const ep = await this.d.local.getEndpoint(endpointId);
    if (ep === undefined || ep.networkId !== networkId) return failure(`endpoint ${endpointId} of network ${networkId} not found`);
    return success(undefined);
  }

  /** Succeeds on this host even while the cluster store is away; its record is withdrawn through the outbox. */
  async deleteEndpoint(networkId: string, endpointId: string): Promise<Result<void>> {
    const ep = await this.d.local.getEndpoint(endpointId);
    if (ep === undefined || ep.networkId !== networkId) return failure(`endpoint ${endpointId} of network ${networkId} not found`);
    return this.mutex.run(ep.subnet, async () => {
      try {
        await this.withdrawEndpoint(ep);
      } catch (e) {
        return failure(`endpoint ${endpointId} of network ${networkId}: ${errorText(e)}`);
      }
      this.d.log.info({ endpointId, subnet: ep.subnet }, "endpoint deleted");
      return success(undefined);
    });
  }

  /**
   * Docker sends the port map here because Join made this endpoint the
   * sandbox's gateway. The bound host ports are remembered so that a plugin
   * restart serves the same ones. An internal network publishes nothing.
   * `ipv6Elsewhere`: another network is the container's IPv6 gateway and
   * publishes IPv6 itself (Docker 28+ says so), so only IPv4 is bound here.
   */
  async programExternalConnectivity(
    networkId: string,
    endpointId: string,
    ports: PortRequest[],
    opts: { ipv6Elsewhere?: boolean } = {},
  ): Promise<Result<PublishedPort[]>> {
    const ep = await this.d.local.getEndpoint(endpointId);
    if (ep === undefined || ep.networkId !== networkId) return failure(`endpoint ${endpointId} of network ${networkId} not found`);
    if (ports.length === 0) return success([]);
    const net = await this.d.local.getNetwork(networkId);
    const rec = net === undefined ? undefined : await this.recordOf(net);
    if (rec?.ok === true && rec.value.internal === true) {
      this.d.log.info({ endpointId, subnet: ep.subnet, ports: ports.length }, "internal network: published ports ignored, as Docker does");
      return success([]);
    }
    const proxyProtocol = rec?.ok === true ? rec.value.proxyProtocol : undefined;
    const r = await this.d.publisher.publish(endpointId, ipOf(ep.addressCidr), ports, proxyProtocol, { ipv4Only: opts.ipv6Elsewhere === true });
    if (!r.ok) return failure(`endpoint ${endpointId}: ${r.error}`);
    await this.d.local.putPorts(endpointId, r.value.map(boundRequest));
    return r;
  }

  async revokeExternalConnectivity(networkId: string, endpointId: string): Promise<Result<void>> {
    const ep = await this.d.local.getEndpoint(endpointId);
    if (ep === undefined || ep.networkId !== networkId) return failure(`endpoint ${endpointId} of network ${networkId} not found`);
    await this.d.publisher.revoke(endpointId);
    await this.d.local.deletePorts(endpointId);
    return success(undefined);
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
    const subnets = [...new Set(endpoints.map((e) => e.subnet))];
    for (const subnet of subnets) {
      await this.mutex.run(subnet, async () => {
        const net = nets.find((n) => n.subnet === subnet);
        const rec = net === undefined ? failure(`no network on this host has subnet ${subnet}`) : await this.recordOf(net);
        if (!rec.ok) {
          this.d.log.error({ subnet, err: rec.error }, "restore: network unknown; its endpoints stay unprogrammed");
          return;
        }
        await this.ensureDatapath(rec.value, false);
        for (const ep of endpoints.filter((e) => e.subnet === subnet)) {
          const ports = await this.d.local.getPorts(ep.endpointId);
          if (ports === undefined || rec.value.internal === true) continue;
          const r = await this.d.publisher.publish(ep.endpointId, ipOf(ep.addressCidr), ports, rec.value.proxyProtocol);
          if (!r.ok) this.d.log.error({ endpointId: ep.endpointId, err: r.error }, "restore: republishing ports failed");
        }
      });
    }
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
      ip: ipOf(ep.addressCidr),
      mac: ep.mac,
      ...(ep.name === undefined ? {} : { name: ep.name }),
    };
  }

  private mtuOf(rec: NetworkRecord): number {
    return rec.mtu ?? this.d.settings.underlayMtu - VXLAN_OVERHEAD;
  }

  /**
   * The network's cluster record from the local copy; networks created before
   * the copy was kept fetch it once from the store.
   */
  private async recordOf(net: LocalNetwork): Promise<Result<NetworkRecord>> {
    if (net.record !== undefined) return success(net.record);
    try {
      const rec = await this.d.networks.get(net.subnet);
      if (rec === undefined) return failure(`network ${net.subnet} is missing from the cluster store`);
      await this.d.local.putNetwork({ ...net, record: rec });
      return success(rec);
    } catch (e) {
      return failure(errorText(e));
    }
  }

  private async ensureDatapath(rec: NetworkRecord, waitForPeers: boolean): Promise<void> {
    const spec: NetworkSpec = { subnet: rec.subnet, gatewayCidr: rec.gatewayCidr, vni: rec.vni, mtu: this.mtuOf(rec) };
    await this.d.datapath.ensureNetwork(spec);
    // An internal network has no uplink at all, so nothing can route its traffic out.
    if (rec.internal !== true) await this.d.egress.ensure(rec.subnet, rec.vni, await this.d.local.egressSlot(rec.subnet));
    await this.d.peers.start(rec.subnet, waitForPeers ? 2_000 : 0);
  }

  private async advertise(ep: LocalEndpoint): Promise<void> {
    await this.d.store.put(keys.endpoint(ep.subnet, ep.endpointId), JSON.stringify(this.endpointRecord(ep)));
  }

  /**
   * Takes an endpoint out: its published ports, its record in the cluster
   * (through the outbox, so that a store outage loses nothing), its links and
   * local record, and the network's datapath after the last endpoint. Waits a
   * little for the cluster part, so that peers and the address are usually
   * free by the time Docker hears back; never longer than teardownWaitMs.
   */
  private async withdrawEndpoint(ep: LocalEndpoint, wait = true): Promise<void> {
    await this.d.publisher.revoke(ep.endpointId);
    await this.d.local.deletePorts(ep.endpointId);
    const seq = await this.d.outbox.add({ kind: "withdraw-endpoint", subnet: ep.subnet, endpointId: ep.endpointId });
    // Forgotten locally before the kernel is touched: a kernel failure must not
    // leave a record that the collector would advertise again.
    await this.d.local.deleteEndpoint(ep.endpointId);
    let kernelError: unknown;
    try {
      await this.d.datapath.removeEndpoint(ep.subnet, ep.endpointId);
      const left = (await this.d.local.endpoints()).filter((e) => e.subnet === ep.subnet);
      if (left.length === 0) await this.teardownDatapath(ep.subnet);
    } catch (e) {
      kernelError = e;
    }
    if (wait) await this.d.outbox.settle(seq, this.d.settings.teardownWaitMs);
    if (kernelError !== undefined) throw kernelError;
  }

  private async teardownDatapath(subnet: string): Promise<void> {
    this.d.peers.stop(subnet);
    const slot = await this.d.local.existingEgressSlot(subnet);
    if (slot !== undefined) {
      await this.d.egress.remove(subnet, slot);
      await this.d.local.releaseEgressSlot(subnet);
    }
    await this.d.datapath.removeNetwork(subnet);
  }

  /** Runs a call that needs the cluster store; an unavailable store becomes a failure with its own words. */
  private async storeCall<T>(what: string, call: () => Promise<Result<T>>): Promise<Result<T>> {
    try {
      return await call();
    } catch (e) {
      if (e instanceof StoreError) return failure(e.transient ? e.message : `${what}: ${e.message}`);
      throw e;
    }
  }
}
