import { keys } from "./cluster/keys.js";
import type { EndpointRecord, NetworkRecord } from "./cluster/records.js";
import { endpointIfNames, type Datapath, type EgressPort, type NetworkSpec } from "./datapath/datapath.js";
import type { HostRegistry } from "./host/host-registry.js";
import type { LocalEndpoint, LocalState } from "./local/local-state.js";
import type { Logger } from "./log.js";
import type { ClusterNetworks } from "./network/cluster-networks.js";
import { macFromIpv4, normalizeMac } from "./network/mac.js";
import { parseNetworkOptions, VXLAN_OVERHEAD } from "./network/network-options.js";
import type { PeerSync } from "./peers/peer-sync.js";
import type { PortPublisher, PortRequest, PublishedPort } from "./publish/port-publisher.js";
import { failure, success, type Result } from "./result.js";
import type { Store } from "./store/store.js";
import { KeyedMutex } from "./util/keyed-mutex.js";

/** The address space our IPAM reports; networks from any other IPAM are refused. */
export const ADDRESS_SPACE = "tsoverlay";

export interface DriverSettings {
  hostId: string;
  vtep: string;
  underlayMtu: number;
}

export interface DriverDeps {
  store: Store;
  local: LocalState;
  datapath: Datapath;
  egress: EgressPort;
  hosts: HostRegistry;
  peers: PeerSync;
  networks: ClusterNetworks;
  publisher: PortPublisher;
  settings: DriverSettings;
  log: Logger;
}

export interface CreateNetworkInput {
  networkId: string;
  addressSpace: string;
  pool: string;
  gatewayCidr: string | undefined;
  options: Record<string, string>;
}

export interface CreateEndpointInput {
  networkId: string;
  endpointId: string;
  addressCidr: string;
  mac: string;
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
    const opts = parseNetworkOptions(req.options);
    if (!opts.ok) return failure(`${what}: ${opts.error}`);
    const gatewayCidr = req.gatewayCidr;
    return this.mutex.run(req.pool, async () => {
      const known = await this.d.local.getNetwork(req.networkId);
      if (known !== undefined && known.subnet !== req.pool) return failure(`${what} already exists for subnet ${known.subnet}`);
      const joined = await this.d.networks.join(req.pool, gatewayCidr, opts.value, req.networkId);
      if (!joined.ok) return failure(joined.error);
      await this.d.local.putNetwork({ networkId: req.networkId, subnet: req.pool });
      this.d.log.info({ networkId: req.networkId, subnet: req.pool, vni: joined.value.vni }, "network created");
      return success(undefined);
    });
  }

  async deleteNetwork(networkId: string): Promise<Result<void>> {
    const net = await this.d.local.getNetwork(networkId);
    if (net === undefined) return failure(`network ${networkId} not found`);
    return this.mutex.run(net.subnet, async () => {
      const left = (await this.d.local.endpoints()).filter((e) => e.subnet === net.subnet);
      if (left.length === 0) await this.teardownDatapath(net.subnet);
      await this.d.networks.leave(net.subnet);
      await this.d.local.deleteNetwork(networkId);
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
      const rec = await this.d.networks.get(net.subnet);
      if (rec === undefined) return failure(`${what}: network ${net.subnet} is missing from the cluster store`);
      const ep: LocalEndpoint = { endpointId: req.endpointId, networkId: req.networkId, subnet: net.subnet, addressCidr: req.addressCidr, mac };
      try {
        await this.ensureDatapath(rec);
        await this.d.datapath.ensureEndpoint(net.subnet, { endpointId: ep.endpointId, addressCidr: ep.addressCidr, mac }, this.mtuOf(rec));
        await this.d.local.putEndpoint(ep);
        await this.publish(ep);
      } catch (e) {
        await this.rollbackEndpoint(ep).catch(() => undefined);
        return failure(`${what}: ${errorText(e)}`);
      }
      this.d.log.info({ endpointId: ep.endpointId, subnet: ep.subnet, ip: ipOf(ep.addressCidr), mac }, "endpoint created");
      return success(req.mac === "" ? { mac } : {});
    });
  }

  async endpointInfo(networkId: string, endpointId: string): Promise<Result<Record<string, string>>> {
    const ep = await this.d.local.getEndpoint(endpointId);
    if (ep === undefined || ep.networkId !== networkId) return failure(`endpoint ${endpointId} of network ${networkId} not found`);
    return success({ address: ep.addressCidr, mac: ep.mac, host: this.d.settings.hostId });
  }

  async join(networkId: string, endpointId: string): Promise<Result<{ srcName: string; gateway: string }>> {
    const what = `endpoint ${endpointId} of network ${networkId}`;
    const ep = await this.d.local.getEndpoint(endpointId);
    if (ep === undefined || ep.networkId !== networkId) return failure(`${what}: not found`);
    const rec = await this.d.networks.get(ep.subnet);
    if (rec === undefined) return failure(`${what}: network ${ep.subnet} is missing from the cluster store`);
    return success({ srcName: endpointIfNames(endpointId).hostIfName, gateway: ipOf(rec.gatewayCidr) });
  }

  async leave(networkId: string, endpointId: string): Promise<Result<void>> {
    const ep = await this.d.local.getEndpoint(endpointId);
    if (ep === undefined || ep.networkId !== networkId) return failure(`endpoint ${endpointId} of network ${networkId} not found`);
    return success(undefined);
  }

  async deleteEndpoint(networkId: string, endpointId: string): Promise<Result<void>> {
    const ep = await this.d.local.getEndpoint(endpointId);
    if (ep === undefined || ep.networkId !== networkId) return failure(`endpoint ${endpointId} of network ${networkId} not found`);
    return this.mutex.run(ep.subnet, async () => {
      try {
        await this.rollbackEndpoint(ep);
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
   * restart serves the same ones.
   */
  async programExternalConnectivity(networkId: string, endpointId: string, ports: PortRequest[]): Promise<Result<PublishedPort[]>> {
    const ep = await this.d.local.getEndpoint(endpointId);
    if (ep === undefined || ep.networkId !== networkId) return failure(`endpoint ${endpointId} of network ${networkId} not found`);
    if (ports.length === 0) return success([]);
    const rec = await this.d.networks.get(ep.subnet);
    const r = await this.d.publisher.publish(endpointId, ipOf(ep.addressCidr), ports, rec?.proxyProtocol);
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
   * has endpoints here, follow its peers again, and re-publish the endpoints.
   */
  async restore(): Promise<void> {
    const endpoints = await this.d.local.endpoints();
    const subnets = [...new Set(endpoints.map((e) => e.subnet))];
    for (const subnet of subnets) {
      await this.mutex.run(subnet, async () => {
        const rec = await this.d.networks.get(subnet);
        if (rec === undefined) {
          this.d.log.error({ subnet }, "restore: network missing from the cluster store; its endpoints stay unprogrammed");
          return;
        }
        await this.ensureDatapath(rec);
        for (const ep of endpoints.filter((e) => e.subnet === subnet)) {
          await this.publish(ep);
          const ports = await this.d.local.getPorts(ep.endpointId);
          if (ports === undefined) continue;
          const r = await this.d.publisher.publish(ep.endpointId, ipOf(ep.addressCidr), ports, rec.proxyProtocol);
          if (!r.ok) this.d.log.error({ endpointId: ep.endpointId, err: r.error }, "restore: republishing ports failed");
        }
      });
    }
    this.d.log.info({ networks: subnets.length, endpoints: endpoints.length }, "state restored");
  }

  private mtuOf(rec: NetworkRecord): number {
    return rec.mtu ?? this.d.settings.underlayMtu - VXLAN_OVERHEAD;
  }

  private async ensureDatapath(rec: NetworkRecord): Promise<void> {
    const spec: NetworkSpec = { subnet: rec.subnet, gatewayCidr: rec.gatewayCidr, vni: rec.vni, mtu: this.mtuOf(rec) };
    await this.d.datapath.ensureNetwork(spec);
    await this.d.egress.ensure(rec.subnet, rec.vni, await this.d.local.egressSlot(rec.subnet));
    await this.d.peers.start(rec.subnet);
  }

  private async publish(ep: LocalEndpoint): Promise<void> {
    const rec: EndpointRecord = {
      endpointId: ep.endpointId,
      networkId: ep.networkId,
      hostId: this.d.settings.hostId,
      vtep: this.d.settings.vtep,
      ip: ipOf(ep.addressCidr),
      mac: ep.mac,
    };
    await this.d.store.put(keys.endpoint(ep.subnet, ep.endpointId), JSON.stringify(rec));
  }

  /** Withdraws an endpoint (peers first, so remote hosts stop sending to it), then its links and records. */
  private async rollbackEndpoint(ep: LocalEndpoint): Promise<void> {
    await this.d.publisher.revoke(ep.endpointId);
    await this.d.local.deletePorts(ep.endpointId);
    await this.d.store.delete(keys.endpoint(ep.subnet, ep.endpointId));
    await this.d.datapath.removeEndpoint(ep.subnet, ep.endpointId);
    await this.d.local.deleteEndpoint(ep.endpointId);
    const left = (await this.d.local.endpoints()).filter((e) => e.subnet === ep.subnet);
    if (left.length === 0) await this.teardownDatapath(ep.subnet);
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
}
