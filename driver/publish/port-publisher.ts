import net from "node:net";
import { expandPortRange, type ActiveBinding, type Binding } from "../../proxy/index.js";
import type { DnatRule, GatePort, PortRules, WantedPortRules } from "../contracts/port-rules.js";
import type { PortProxy } from "../contracts/port-proxy.js";
import type { Logger } from "../../lib/log.js";
import { success } from "../../lib/result.js";
import { refuse, type Outcome } from "../errors.js";
import { isLoopback } from "../../lib/net.js";
import { messageOf } from "../../lib/errors.js";

/** One published port as asked (Docker's port map, in the domain's terms). */
export interface PortRequest {
  proto: "tcp" | "udp";
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
  /** Non-loopback IPv4 traffic is DNATed by the kernel (hybrid mode); the rest goes through the proxy. */
  kernelDnat: boolean;
}

/**
 * "userland": every connection goes through the proxy (the container sees the
 * host as its client). "hybrid": the kernel DNATs non-loopback IPv4 traffic
 * (the container sees the real client); the proxy keeps loopback, IPv6 and
 * hairpin traffic, and holds the port so that a clash fails at publish time.
 */
export type ProxyMode = "userland" | "hybrid";
export const PROXY_MODES: readonly ProxyMode[] = ["userland", "hybrid"];

export type { DnatRule, GatePort, PortRules } from "../contracts/port-rules.js";

export interface PortPublisherOptions {
  mode: ProxyMode;
  /**
   * The kernel's rules for published ports: the DNAT fast path (hybrid mode,
   * where it is required) and the gate that lets containers reach the
   * published ports of their host through the gateway bridge (and nothing
   * else of it). Absent: nothing in the kernel (userland mode in unit tests).
   */
  rules?: PortRules;
  /**
   * Bind the [::] half of "" this long after the IPv4 half (see Binding.deferIpv6Ms). Docker
   * 29 chooses a gateway per address family, and when a container's other network becomes its
   * IPv6 gateway just after this one was programmed, Docker does not tell a remote driver: that
   * network's own [::] binding must find the port free. Default: at once.
   */
  deferIpv6Ms?: number;
}

interface Published {
  active: ActiveBinding;
  dnat?: DnatRule;
}

function view(endpointId: string, p: Published): PublishedPort {
  const b = p.active.binding;
  return {
    endpointId,
    proto: b.proto,
    hostIp: b.hostIp,
    hostPort: b.hostPort,
    containerIp: b.backendIp,
    containerPort: b.backendPort,
    kernelDnat: p.dnat !== undefined,
  };
}

/**
 * The host address a binding is reached on from other machines and from the
 * containers' gateway bridge: "" (every IPv4 address) or one IPv4 address;
 * undefined for IPv6 and loopback bindings (the overlays are IPv4, and
 * loopback is reached from neither).
 */
function routableHostIp(b: Binding): string | undefined {
  if (b.hostIp === "" || b.hostIp === "0.0.0.0") return "";
  return net.isIPv4(b.hostIp) && !isLoopback(b.hostIp) ? b.hostIp : undefined;
}

/** The DNAT rule a binding gets in hybrid mode, if any: never with a PROXY header (the backend expects one on every connection, which only the proxy can write). */
function dnatRuleOf(b: Binding): DnatRule | undefined {
  const hostIp = routableHostIp(b);
  if (b.proxyProtocol !== undefined || hostIp === undefined) return undefined;
  return { proto: b.proto, hostIp, hostPort: b.hostPort, containerIp: b.backendIp, containerPort: b.backendPort };
}

/** Where containers reach a binding through the gateway bridge, if they can. */
function gatePortOf(b: Binding): GatePort | undefined {
  const hostIp = routableHostIp(b);
  return hostIp === undefined ? undefined : { proto: b.proto, hostIp, hostPort: b.hostPort };
}

/**
 * docker-proxy's job for the endpoints whose Join made this driver the
 * gateway: every published port is held and served by the in-process proxy,
 * which reaches the container on its overlay address through the egress
 * uplink; in hybrid mode the kernel also DNATs what it can (see ProxyMode).
 * An endpoint's ports are all published or none are.
 */
export class PortPublisher {
  private readonly byEndpoint = new Map<string, Published[]>();
  readonly mode: ProxyMode;
  private readonly deferIpv6Ms: number | undefined;
  private readonly rules: PortRules | undefined;
  /** Until pruneFastPath (the restore after a start is over): rules a previous run left stay. */
  private restoring = true;

  constructor(
    private readonly proxy: PortProxy,
    private readonly log: Logger,
    opts: PortPublisherOptions = { mode: "userland" },
  ) {
    if (opts.mode === "hybrid" && opts.rules === undefined) throw new Error("port publisher: hybrid mode needs the kernel DNAT fast path");
    this.mode = opts.mode;
    this.deferIpv6Ms = opts.deferIpv6Ms;
    this.rules = opts.rules;
  }

  /**
   * `ipv4Only`: another network publishes the container's IPv6 side (Docker's
   * no_proxy_6to4): "" binds 0.0.0.0 only, and IPv6 host addresses are left
   * to that network, as Docker's bridge leaves them.
   */
  async publish(
    endpointId: string,
    containerIp: string,
    requests: PortRequest[],
    proxyProtocol?: "v1" | "v2",
    opts: { ipv4Only?: boolean } = {},
  ): Promise<Outcome<PublishedPort[]>> {
    await this.revoke(endpointId);
    if (opts.ipv4Only === true) {
      requests = requests.filter((r) => !net.isIPv6(r.hostIp)).map((r) => (r.hostIp === "" ? { ...r, hostIp: "0.0.0.0" } : r));
    }
    const done: Published[] = [];
    const undo = async (): Promise<void> => {
      await this.unpublish(endpointId, done, false);
    };
    for (const req of requests) {
      const proto = req.proto;
      const plan = expandPortRange({
        proto,
        hostIp: req.hostIp,
        hostPort: req.hostPort,
        hostPortEnd: req.hostPortEnd === 0 ? undefined : req.hostPortEnd,
        backendIp: containerIp,
        backendPort: req.containerPort,
        // The header only makes sense on a byte stream.
        ...(proxyProtocol !== undefined && proto === "tcp" ? { proxyProtocol } : {}),
        ...(req.hostIp === "" && this.deferIpv6Ms !== undefined ? { deferIpv6Ms: this.deferIpv6Ms } : {}),
      });
      if (!plan.ok) {
        await undo();
        return refuse("bad-request", plan.error);
      }
      const wanted: (Binding | Binding[])[] = plan.value.kind === "each" ? plan.value.bindings : [plan.value.candidates];
      for (const w of wanted) {
        const r = Array.isArray(w) ? await this.proxy.addAny(w) : await this.proxy.add(w);
        if (!r.ok) {
          await undo();
          // A host port in use (or none free in a range): Docker's own wording, from the proxy.
          return refuse("conflict", r.error);
        }
        const rule = this.mode === "hybrid" ? dnatRuleOf(r.value.binding) : undefined;
        done.push(rule === undefined ? { active: r.value } : { active: r.value, dnat: rule });
      }
    }
    // Every port's rules at once: one change of the kernel's, whatever their number.
    this.byEndpoint.set(endpointId, done);
    try {
      await this.syncRules();
    } catch (err) {
      this.byEndpoint.delete(endpointId);
      await undo();
      // A write that failed may have changed one table and not the other: the rules are written again without these ports.
      await this.syncRules().catch(() => undefined);
      return refuse("kernel", `programming the published ports of ${endpointId} in the kernel (DNAT fast path, gateway bridge's gate): ${messageOf(err)}`);
    }
    const ports = done.map((p) => view(endpointId, p));
    for (const p of ports) this.log.info({ ...p }, "port published");
    return success(ports);
  }

  /**
   * Drops the endpoint's DNAT rules and closes its gate (one change of the
   * kernel's rules), then its listeners and their connections: no new
   * connection is steered to the container, and the ports are free at once.
   */
  async revoke(endpointId: string): Promise<void> {
    const published = this.byEndpoint.get(endpointId);
    if (published === undefined) return;
    this.byEndpoint.delete(endpointId);
    await this.syncRules().catch((err: unknown) => {
      this.log.error({ endpointId, err: messageOf(err) }, "removing a revoked endpoint's port rules (DNAT, gateway bridge's gate) failed");
    });
    await this.unpublish(endpointId, published, true);
  }

  /**
   * After a restart and the re-publishing of restored endpoints: the kernel's
   * rules become exactly what is published (the DNAT rules and open ports of
   * endpoints gone meanwhile go; in userland mode every DNAT rule, and the
   * chain, go).
   */
  async pruneFastPath(): Promise<void> {
    this.restoring = false;
    await this.syncRules();
  }

  /** The kernel's rules for what is published now (read when the adapter's turn comes). */
  private async syncRules(): Promise<void> {
    await this.rules?.sync(() => this.wanted(), { keepLeftovers: this.restoring });
  }

  private wanted(): WantedPortRules {
    const all = [...this.byEndpoint.values()].flat();
    return { dnat: all.flatMap((p) => (p.dnat ? [p.dnat] : [])), gate: all.flatMap((p) => gatePortOf(p.active.binding) ?? []) };
  }

  /** What is published, with the addresses actually listening ("" may be IPv4 only, see deferIpv6Ms) and the counters. */
  list(): (PublishedPort & { listening: string[]; counters: ActiveBinding["counters"] })[] {
    const out = [];
    const live = new Map(this.proxy.list().map((a) => [a.id, a]));
    for (const [endpointId, published] of this.byEndpoint) {
      for (const p of published) {
        const now = live.get(p.active.id) ?? p.active;
        out.push({ ...view(endpointId, p), listening: now.addresses.map((a) => a.address), counters: now.counters });
      }
    }
    return out;
  }

  /** Stops serving (process exit): listeners close; DNAT rules stay, so the fast path outlives a restart. */
  async closeAll(): Promise<void> {
    this.byEndpoint.clear();
    await this.proxy.closeAll();
  }

  /** The listeners (their rules are the caller's). */
  private async unpublish(endpointId: string, published: Published[], logIt: boolean): Promise<void> {
    for (const p of published) {
      await this.proxy.remove(p.active);
      if (logIt) this.log.info({ endpointId, id: p.active.id }, "port unpublished");
    }
  }
}
