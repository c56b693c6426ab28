/**
 * The kernel's rules for published ports, as the publishing policy sees them
 * (driver/kernel/port-rules.ts implements them with iptables): the fast path
 * of "hybrid" mode (DNAT of non-loopback IPv4 traffic to the container), and
 * the gateway bridge's gate, which lets the containers of tsoverlay networks
 * reach the published ports of their own host (as on Docker's bridge) and
 * nothing else the host listens on.
 */
export interface DnatRule {
  proto: "tcp" | "udp";
  /** "" = every local IPv4 address; otherwise one IPv4 address of this host. */
  hostIp: string;
  hostPort: number;
  containerIp: string;
  containerPort: number;
}

/** A published port as containers reach it through the gateway bridge. */
export interface GatePort {
  proto: "tcp" | "udp";
  /** "" = every IPv4 address of the host; otherwise one IPv4 address of it. */
  hostIp: string;
  hostPort: number;
}

export interface WantedPortRules {
  dnat: readonly DnatRule[];
  gate: readonly GatePort[];
}

export interface PortRules {
  /**
   * Makes the rules exactly what `wanted` returns, in one step (a container's
   * start costs one iptables process, or none when nothing changes). `wanted`
   * is read once the adapter's lock is held, so calls that race settle on the
   * newest set. `keepLeftovers`: while a restart restores what was published,
   * rules the previous run left and nothing wants yet stay (the fast path of
   * an endpoint not yet restored keeps working); the first sync without it
   * removes them.
   */
  sync(wanted: () => WantedPortRules, opts?: { keepLeftovers?: boolean }): Promise<void>;
}
