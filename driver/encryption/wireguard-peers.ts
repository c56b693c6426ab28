/**
 * Keeps this host's WireGuard interface holding exactly the other live hosts
 * as peers: each one's published public key, its VTEP as the endpoint and its
 * tunnel address as the one address it may send from (WireGuard's
 * cryptokey routing: a packet from a peer with any other inner source is
 * dropped, so no host can speak for another).
 *
 * Nothing happens until the first encrypted network is set up on this host
 * (`activate`): a host without encrypted networks runs no WireGuard. From
 * then on the interface is ensured and its peers synced on every change of
 * the host list and periodically, which also brings back an interface or a
 * peer removed behind our back (or a wireguard-go that died). A host whose
 * record has no valid key, or whose tunnel address collides with another's,
 * is left out: its encrypted traffic goes nowhere rather than in the clear.
 */
import type { HostRegistry } from "../hosts/host-registry.js";
import type { WireGuardMode, WireGuardPeer, WireGuardPort, WireGuardState } from "../contracts/wireguard.js";
import { collisions, tunnelAddressOf, type TunnelSubnet } from "./tunnel-address.js";
import type { Logger } from "../../lib/log.js";
import { messageOf } from "../../lib/errors.js";
import { Mutex } from "../../lib/keyed-mutex.js";

export interface EncryptionSettings {
  subnet: TunnelSubnet;
  /** WireGuard's UDP port on every host. */
  port: number;
  /** This host's public key; absent when none could be made (encrypted networks are then refused here). */
  publicKey?: string;
}

/** What `tsoverlay doctor` and the status endpoint say about encryption on this host. */
export interface EncryptionReport {
  active: boolean;
  mode?: WireGuardMode;
  address: string;
  /** Live hosts expected as peers, and those left out with the reason. */
  expected: number;
  leftOut: { hostId: string; why: string }[];
  state?: WireGuardState;
  error?: string;
}

export class WireGuardPeers {
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  private readonly mutex = new Mutex();
  private active = false;
  private mode: WireGuardMode | undefined;
  private lastError: string | undefined;

  constructor(
    private readonly hosts: HostRegistry,
    private readonly port: WireGuardPort,
    private readonly settings: EncryptionSettings,
    private readonly log: Logger,
    periodMs: number,
  ) {
    this.unsubscribe = hosts.onChange(() => void this.sync("hosts changed"));
    this.timer = setInterval(() => void this.sync("periodic"), periodMs);
    this.timer.unref();
  }

  /** This host's tunnel address (what its encrypted networks' VXLAN devices send from). */
  get selfAddress(): string {
    return tunnelAddressOf(this.hosts.self.vtep, this.settings.subnet);
  }

  /** The tunnel address of the host whose VTEP is `vtep`. */
  addressOf(vtep: string): string {
    return tunnelAddressOf(vtep, this.settings.subnet);
  }

  /**
   * Brings WireGuard up for this host's first encrypted network (and again
   * for each one, cheaply). Rejects with the reason when this host cannot
   * encrypt: then the network is not set up, and nothing goes out in the clear.
   */
  async activate(): Promise<void> {
    if (this.settings.publicKey === undefined) {
      throw new Error("this host has no WireGuard key (the plugin's log at start says why), so it cannot join an encrypted network");
    }
    await this.mutex.run(async () => {
      this.mode = await this.port.ensure();
      this.active = true;
      this.lastError = undefined;
    });
    await this.sync("network set up");
  }

  /** The peers this host should have now, and the live hosts left out with why. */
  desired(): { peers: WireGuardPeer[]; leftOut: { hostId: string; why: string }[] } {
    const live = this.hosts.hosts();
    const clashing = collisions(
      live.map((h) => h.vtep),
      this.settings.subnet,
    );
    const peers: WireGuardPeer[] = [];
    const leftOut: { hostId: string; why: string }[] = [];
    for (const h of live) {
      if (h.hostId === this.hosts.self.hostId) continue;
      if (h.wireguardKey === undefined)
        leftOut.push({ hostId: h.hostId, why: "its record has no WireGuard key (an older plugin, or its key could not be made)" });
      else if (clashing.has(h.vtep))
        leftOut.push({
          hostId: h.hostId,
          why: `its tunnel address ${this.addressOf(h.vtep)} collides with another host's (VTEPs too far apart for the tunnel subnet)`,
        });
      else if (h.wireguardKey === this.settings.publicKey) leftOut.push({ hostId: h.hostId, why: "it publishes this host's own public key" });
      else peers.push({ publicKey: h.wireguardKey, endpoint: `${h.vtep}:${this.settings.port}`, allowedIp: `${this.addressOf(h.vtep)}/32` });
    }
    // Two live records with one key: WireGuard can hold a key once; neither is trusted.
    const count = new Map<string, number>();
    for (const p of peers) count.set(p.publicKey, (count.get(p.publicKey) ?? 0) + 1);
    return { peers: peers.filter((p) => count.get(p.publicKey) === 1), leftOut };
  }

  /**
   * A new key for this host: made and handed to WireGuard here, then
   * published. Peers take it from the store and, adding it, start a
   * handshake at once (the keepalive), so established connections stall
   * only for about as long as the store takes to tell them.
   */
  async rotate(): Promise<{ publicKey: string }> {
    if (this.settings.publicKey === undefined) throw new Error("this host has no WireGuard key to replace (the plugin's log at start says why)");
    return this.mutex.run(async () => {
      const publicKey = await this.port.rotateKey();
      this.settings.publicKey = publicKey;
      await this.hosts.describeWireGuard(publicKey);
      this.log.info({ publicKey }, "WireGuard key rotated and published");
      return { publicKey };
    });
  }

  async report(): Promise<EncryptionReport> {
    const d = this.hosts.ready ? this.desired() : { peers: [], leftOut: [] };
    const base: EncryptionReport = { active: this.active, address: this.selfAddress, expected: d.peers.length, leftOut: d.leftOut };
    if (this.mode !== undefined) base.mode = this.mode;
    if (this.lastError !== undefined) base.error = this.lastError;
    if (!this.active) return base;
    try {
      const state = await this.port.state();
      return state === undefined ? { ...base, error: base.error ?? "the WireGuard interface is missing" } : { ...base, state };
    } catch (err) {
      return { ...base, error: messageOf(err) };
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.unsubscribe();
  }

  private async sync(why: string): Promise<void> {
    if (!this.active || !this.hosts.ready) return;
    await this.mutex.run(async () => {
      try {
        // Periodically: a wireguard-go that died, or an interface deleted by hand, comes back. Not on
        // every host change: those are on the path of a peer's key rotation, which waits on them.
        if (why === "periodic") this.mode = await this.port.ensure();
        const { peers, leftOut } = this.desired();
        const r = await this.port.syncPeers(peers);
        this.lastError = undefined;
        if (r.added > 0 || r.removed > 0) {
          const level = why === "periodic" ? "warn" : "info";
          this.log[level](
            { added: r.added, removed: r.removed, peers: peers.length, why },
            why === "periodic" ? "repaired WireGuard peers" : "WireGuard peers programmed",
          );
        }
        for (const l of leftOut) this.log.debug({ host: l.hostId, why: l.why }, "host left out of WireGuard peers");
      } catch (err) {
        this.lastError = messageOf(err);
        this.log.error({ err: this.lastError, why }, "programming WireGuard failed");
      }
    });
  }
}
