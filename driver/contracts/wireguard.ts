/**
 * This host's WireGuard interface, as the domain sees it: the one tunnel that
 * carries every encrypted network's VXLAN to the other hosts (README
 * "Encrypted networks"). The kernel adapter uses the kernel's WireGuard where
 * the kernel has it and wireguard-go otherwise, configured the same way.
 */

/** One other host, as this host's WireGuard interface knows it. */
export interface WireGuardPeer {
  /** The peer's public key (base64, as WireGuard writes it). */
  publicKey: string;
  /** Where its WireGuard listens: its underlay (VTEP) address and port, "a.b.c.d:port". */
  endpoint: string;
  /** Its tunnel address (the one its encrypted networks' VXLAN devices send from), "a.b.c.d/32". */
  allowedIp: string;
}

export type WireGuardMode = "kernel" | "userspace";

export interface WireGuardState {
  mode: WireGuardMode;
  /** The interface's name on this host. */
  iface: string;
  /** This host's tunnel address, "a.b.c.d/prefix". */
  address: string;
  listenPort: number;
  mtu: number;
  peers: (WireGuardPeer & { latestHandshake: number })[];
}

export interface WireGuardPort {
  /**
   * Makes the interface exist and hold this host's key, tunnel address, port
   * and MTU, and puts the guard route in place (traffic for the tunnel subnet
   * is dropped whenever the interface is missing). Idempotent. Rejects with
   * the reason when this host can have neither kind of WireGuard.
   */
  ensure(): Promise<WireGuardMode>;
  /** Makes the interface's peers exactly `peers`; what it added and removed. */
  syncPeers(peers: readonly WireGuardPeer[]): Promise<{ added: number; removed: number }>;
  /** The interface as it is now; undefined when it does not exist. Never holds the private key. */
  state(): Promise<WireGuardState | undefined>;
  /** Makes a new private key for this host, hands it to the interface if there is one, and returns the new public key. */
  rotateKey(): Promise<string>;
}
