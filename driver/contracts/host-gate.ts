/**
 * What the containers of tsoverlay networks may reach of their own host
 * through the gateway bridge, besides the name service: the published ports
 * (a container reaches a published port on its host's address, as on
 * Docker's bridge). Everything else the host listens on is closed to them.
 * driver/kernel/gateway-input.ts holds it with iptables.
 */
export interface GatePort {
  proto: "tcp" | "udp";
  /** "" = every IPv4 address of the host; otherwise one IPv4 address of it. */
  hostIp: string;
  hostPort: number;
}

export interface HostPortGate {
  /**
   * Opens exactly the ports `wanted` returns, closing the others. `wanted` is
   * read once the gate's own lock is held, so calls that race settle on the
   * newest set.
   */
  sync(wanted: () => readonly GatePort[]): Promise<void>;
}
