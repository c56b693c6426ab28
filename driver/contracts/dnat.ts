/**
 * The kernel fast path for published ports, as the publishing policy sees
 * it (driver/kernel/port-dnat.ts implements it with iptables).
 */
export interface DnatRule {
  proto: "tcp" | "udp";
  /** "" = every local IPv4 address; otherwise one IPv4 address of this host. */
  hostIp: string;
  hostPort: number;
  containerIp: string;
  containerPort: number;
}

export interface DnatPort {
  add(rule: DnatRule): Promise<void>;
  remove(rule: DnatRule): Promise<void>;
  /** Removes every rule but `keep` (after a restart, or all of them in userland mode). */
  prune(keep: readonly DnatRule[]): Promise<void>;
}
