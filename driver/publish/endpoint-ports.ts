import type { NetworkRecord } from "../cluster/records.js";
import type { Outcome } from "../errors.js";
import type { LocalEndpoint, LocalNetwork, LocalState } from "../local/local-state.js";
import type { PortPublisher, PortRequest, PublishedPort } from "./port-publisher.js";
import { addressOf } from "../../lib/net.js";
import type { Logger } from "../../lib/log.js";
import { success } from "../../lib/result.js";

/** A published port as an explicit request for the same host port. */
function boundRequest(p: PublishedPort): PortRequest {
  return { proto: p.proto, hostIp: p.hostIp, hostPort: p.hostPort, hostPortEnd: p.hostPort, containerPort: p.containerPort };
}

/**
 * An endpoint's published ports, as the driver handles them: Docker sends the
 * port map with ProgramExternalConnectivity because Join made the endpoint its
 * container's gateway. The host ports actually bound are remembered, so that a
 * plugin restart serves the same ones; an internal network publishes nothing.
 */
export class EndpointPorts {
  constructor(
    private readonly d: {
      local: LocalState;
      publisher: PortPublisher;
      recordOf: (net: LocalNetwork) => Promise<Outcome<NetworkRecord>>;
      log: Logger;
    },
  ) {}

  /**
   * `ipv6Elsewhere`: another network is the container's IPv6 gateway and
   * publishes IPv6 itself (Docker 28+ says so), so only IPv4 is bound here.
   */
  async program(ep: LocalEndpoint, ports: PortRequest[], opts: { ipv6Elsewhere?: boolean }): Promise<Outcome<PublishedPort[]>> {
    if (ports.length === 0) return success([]);
    const net = await this.d.local.getNetwork(ep.networkId);
    const rec = net === undefined ? undefined : await this.d.recordOf(net);
    if (rec?.ok === true && rec.value.internal === true) {
      this.d.log.info({ endpointId: ep.endpointId, subnet: ep.subnet, ports: ports.length }, "internal network: published ports ignored, as Docker does");
      return success([]);
    }
    const proxyProtocol = rec?.ok === true ? rec.value.proxyProtocol : undefined;
    const r = await this.d.publisher.publish(ep.endpointId, addressOf(ep.addressCidr), ports, proxyProtocol, { ipv4Only: opts.ipv6Elsewhere === true });
    if (!r.ok) return { ok: false, error: { cause: r.error.cause, message: `endpoint ${ep.endpointId}: ${r.error.message}` } };
    await this.d.local.putPorts(ep.endpointId, r.value.map(boundRequest));
    return r;
  }

  async revoke(endpointId: string): Promise<void> {
    await this.d.publisher.revoke(endpointId);
    await this.d.local.deletePorts(endpointId);
  }

  /** After a plugin restart: the endpoint's ports again, on the host ports they had. */
  async restore(ep: LocalEndpoint, rec: NetworkRecord): Promise<void> {
    const ports = await this.d.local.getPorts(ep.endpointId);
    if (ports === undefined || rec.internal === true) return;
    const r = await this.d.publisher.publish(ep.endpointId, addressOf(ep.addressCidr), ports, rec.proxyProtocol);
    if (!r.ok) this.d.log.error({ endpointId: ep.endpointId, err: r.error.message }, "restore: republishing ports failed");
  }
}
