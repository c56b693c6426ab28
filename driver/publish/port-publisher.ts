import { expandPortRange, ProxyManager, type ActiveBinding, type Binding } from "../../proxy/index.js";
import type { Logger } from "../log.js";
import { failure, success, type Result } from "../result.js";

/** One entry of Docker's port map, protocol-free. */
export interface PortRequest {
  /** IP protocol number: 6 = TCP, 17 = UDP. */
  proto: number;
  /** "" = every address, both families. */
  hostIp: string;
  /** 0 = an ephemeral port from the kernel's local port range. */
  hostPort: number;
  hostPortEnd: number;
  containerPort: number;
}

/** A port that is being served, as shown to users. */
export interface PublishedPort {
  endpointId: string;
  proto: "tcp" | "udp";
  hostIp: string;
  hostPort: number;
  containerIp: string;
  containerPort: number;
}

const PROTOS: Record<number, "tcp" | "udp"> = { 6: "tcp", 17: "udp" };

function view(endpointId: string, a: ActiveBinding): PublishedPort {
  const b = a.binding;
  return { endpointId, proto: b.proto, hostIp: b.hostIp, hostPort: b.hostPort, containerIp: b.backendIp, containerPort: b.backendPort };
}

/**
 * docker-proxy's job for the endpoints whose Join made this driver the
 * gateway: every published port is served by the in-process proxy, which
 * reaches the container on its overlay address through the egress uplink.
 * An endpoint's ports are all published or none are.
 */
export class PortPublisher {
  private readonly byEndpoint = new Map<string, ActiveBinding[]>();

  constructor(
    private readonly proxy: ProxyManager,
    private readonly log: Logger,
  ) {}

  async publish(endpointId: string, containerIp: string, requests: PortRequest[], proxyProtocol?: "v1" | "v2"): Promise<Result<PublishedPort[]>> {
    await this.revoke(endpointId);
    const done: ActiveBinding[] = [];
    const undo = async (): Promise<void> => {
      for (const a of done) await this.proxy.remove(a);
    };
    for (const req of requests) {
      const proto = PROTOS[req.proto];
      if (proto === undefined) {
        await undo();
        return failure(`publishing port ${req.containerPort}: protocol ${req.proto} is not supported (tcp and udp are)`);
      }
      const plan = expandPortRange({
        proto,
        hostIp: req.hostIp,
        hostPort: req.hostPort,
        hostPortEnd: req.hostPortEnd === 0 ? undefined : req.hostPortEnd,
        backendIp: containerIp,
        backendPort: req.containerPort,
        // The header only makes sense on a byte stream.
        ...(proxyProtocol !== undefined && proto === "tcp" ? { proxyProtocol } : {}),
      });
      if (!plan.ok) {
        await undo();
        return failure(plan.error);
      }
      const wanted: (Binding | Binding[])[] = plan.value.kind === "each" ? plan.value.bindings : [plan.value.candidates];
      for (const w of wanted) {
        const r = Array.isArray(w) ? await this.proxy.addAny(w) : await this.proxy.add(w);
        if (!r.ok) {
          await undo();
          return failure(r.error);
        }
        done.push(r.value);
      }
    }
    this.byEndpoint.set(endpointId, done);
    const ports = done.map((a) => view(endpointId, a));
    for (const p of ports) this.log.info({ ...p }, "port published");
    return success(ports);
  }

  /** Closes the endpoint's listeners and their connections; the ports are free at once. */
  async revoke(endpointId: string): Promise<void> {
    const active = this.byEndpoint.get(endpointId);
    if (active === undefined) return;
    this.byEndpoint.delete(endpointId);
    for (const a of active) {
      await this.proxy.remove(a);
      this.log.info({ endpointId, id: a.id }, "port unpublished");
    }
  }

  list(): (PublishedPort & { counters: ActiveBinding["counters"] })[] {
    const out = [];
    for (const [endpointId, active] of this.byEndpoint) {
      const live = new Map(this.proxy.list().map((a) => [a.id, a]));
      for (const a of active) out.push({ ...view(endpointId, a), counters: (live.get(a.id) ?? a).counters });
    }
    return out;
  }

  async closeAll(): Promise<void> {
    this.byEndpoint.clear();
    await this.proxy.closeAll();
  }
}
