/**
 * Egress for overlay containers: a per-host gateway bridge, routed, with NAT
 * at the host (Docker's docker_gwbridge idea, but routed instead of a second
 * container interface).
 *
 *   container ──▶ br0 (overlay netns, gateway 10.10.0.1) ── routes ──▶ gw0 100.72.0.<slot+1>
 *        │                                                                  │ veth
 *        │   host netns:  tsog<slot> ── tsogw0 (100.72.0.1) ── route ──▶ uplink ──▶ world
 *        └── the host routes <network subnet> via 100.72.0.<slot+1> dev tsogw0;
 *            TSOVERLAY-POSTROUTING masquerades <network subnet> leaving not via tsogw0.
 *
 * Design note.
 *  - Routed + NAT at the host. Each network's namespace gets one veth leg on
 *    the host bridge and a default route through it; the host knows each
 *    overlay subnet behind that leg. Containers keep a single interface (no
 *    extra NIC per container as with docker_gwbridge, nothing for Docker to
 *    configure), and their traffic leaves with the *host's* address as source
 *    (MASQUERADE picks the outgoing interface's address): the outside world
 *    needs no route back to overlay subnets, overlapping clusters cannot leak
 *    their private addressing, and replies return through conntrack. The
 *    bridge lives in CGNAT space (100.72.0.0/24 by default), clear of docker0
 *    and Docker's default address pools.
 *  - DROP between networks. Every network's leg sits on the same host bridge,
 *    so the host would happily route net A → host → net B. Overlay networks
 *    must stay as isolated from each other as Docker's own networks are, hence
 *    `-i tsogw0 -o tsogw0 -j DROP` before anything is accepted. Traffic that
 *    never reaches the IP layer (one leg ARPing another leg directly) is
 *    stopped by marking every leg an *isolated* bridge port: legs can talk to
 *    the bridge (the host) only, never to each other. New connections from
 *    outside towards the overlay subnets are dropped too (only replies and
 *    connections to published ports, which arrive DNATed, are let in),
 *    whatever the host's FORWARD policy is.
 *  - Own chains. All rules live in TSOVERLAY-FWD (filter) and
 *    TSOVERLAY-POSTROUTING (nat), reached by one jump each from FORWARD and
 *    POSTROUTING. We never edit rules we did not create, Docker/firewalld/ufw
 *    rules stay untouched, and a reader can see at a glance what the plugin
 *    did (`iptables -S TSOVERLAY-FWD`).
 *  - No iptables on a container's way in. The chains are set up when the
 *    plugin starts and kept by the RuleKeeper (rule-keeper.ts), for as long as
 *    the plugin runs, networks or not; a network's MASQUERADE rule is wanted
 *    from its creation here (`setNat`) to its removal. So the first endpoint of
 *    a network, like every other, only makes links and routes (netlink).
 *
 * Everything is idempotent and restart-safe: links and routes are read back
 * from the kernel, so re-ensuring after a restart fixes only what is missing;
 * the rules are written from what is wanted (chain.ts), so none is ever
 * duplicated. iptables runs through the plugin's one owner (iptables.ts), in
 * the host namespace (`nsenter --net=<hostNetnsPath>` when tests play the
 * host in a namespace). The host's net.ipv4.ip_forward is switched on but
 * never switched back off: other software (Docker) relies on it too.
 *
 * Where the pieces live: legs.ts (a network's veth leg, its routes),
 * rules.ts (the chains and the MASQUERADE rules), bridge.ts (the host
 * bridge and forwarding), errors.ts (EgressError).
 */
import { createRtNetlink, type RtNetlinkSocket } from "netlink";
import { Mutex } from "../../../lib/keyed-mutex.js";
import type { Logger } from "../../../lib/log.js";
import { formatIpv4, type Subnet } from "../../../lib/net.js";
import type { Iptables } from "../iptables.js";
import { isNetnsMount, openRtnetlinkIn } from "../netns.js";
import { enableHostForwarding, ensureGatewayBridge, removeGatewayBridge } from "./bridge.js";
import { EgressError, egressStep, parseCidr4 } from "./errors.js";
import { countHostLegs, deleteHostRoute, ensureHostRoute, ensureLeg, isHostLegName, removeLeg, type GatewaySide } from "./legs.js";
import { EgressRules } from "./rules.js";
import { messageOf } from "../../../lib/errors.js";

const DEFAULT_EGRESS_BRIDGE = "tsogw0";
const DEFAULT_EGRESS_SUBNET = "100.72.0.0/24";
/** Linux interface names: ≤ 15 bytes; we allow a safe subset that cannot look like an option. */
const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

export interface EgressGatewayOptions {
  /** Host bridge name (default "tsogw0"). */
  bridgeName?: string;
  /** Gateway subnet: bridge = first host, network legs = first host + slot (default 100.72.0.0/24). */
  subnet?: string;
  /** The namespace that plays "the host" (tests). Default: the process's own. */
  hostNetnsPath?: string;
  /** Where a writable /proc/sys/net is found as `<procRoot>/sys/net` (e.g. "/host/proc" in a managed plugin); default "/proc". */
  procRoot?: string;
  /** Keep the bridge (and its address) with no network left: the name service listens on it. */
  keepBridge?: boolean;
  /** The plugin's iptables owner (in the host namespace). */
  iptables: Iptables;
  log: Logger;
}

export interface EgressNetworkSpec {
  /** The overlay network's subnet, e.g. "10.10.0.0/24". */
  subnet: string;
  /** The network's namespace (`<runDir>/netns/vni-<vni>`). */
  nsPath: string;
  /** ≥ 1; the network's leg gets the gateway subnet's address `first host + slot`. */
  slot: number;
  /** No default route, no NAT: the namespace reaches the bridge's own address only (an --internal network's name service). */
  hostOnly?: boolean;
}

export interface EgressNetworkRef {
  subnet: string;
  slot: number;
}

interface NetworkState {
  subnet: Subnet;
  slot: number;
  nsPath: string;
}

export class EgressGateway {
  readonly bridgeName: string;
  readonly subnet: string;
  /** The bridge's address ("100.72.0.1"). */
  readonly bridgeIp: string;
  /** The bridge's fixed MAC (see bridge.ts). */
  readonly bridgeMac: string;
  private readonly gw: Subnet;
  private readonly maxSlot: number;
  private readonly hostNetnsPath: string | undefined;
  private readonly procRoot: string;
  private readonly keepBridge: boolean;
  /** Its two chains, for the RuleKeeper. */
  readonly rules: EgressRules;
  private readonly log: Logger;

  private hostSocket: RtNetlinkSocket | undefined;
  /** Networks ensured by this instance (the kernel remains the source of truth). */
  private readonly networks = new Map<string, NetworkState>();
  /** All operations run one at a time: `-C` then `-A` must not interleave. */
  private readonly mutex = new Mutex();

  constructor(opts: EgressGatewayOptions) {
    const bridgeName = opts.bridgeName ?? DEFAULT_EGRESS_BRIDGE;
    if (!IFNAME_RE.test(bridgeName) || isHostLegName(bridgeName)) {
      throw new EgressError(`egress: invalid bridge name ${JSON.stringify(bridgeName)}`);
    }
    this.bridgeName = bridgeName;
    this.gw = parseCidr4(opts.subnet ?? DEFAULT_EGRESS_SUBNET, "gateway subnet", 8, 30);
    this.subnet = this.gw.toString();
    this.bridgeIp = formatIpv4(this.gw.network + 1);
    // Locally administered unicast: 02:74 followed by the bridge's IPv4 address.
    this.bridgeMac = ["02", "74", ...this.bridgeIp.split(".").map((o) => Number(o).toString(16).padStart(2, "0"))].join(":");
    // Addresses: network, bridge (.1), legs (.2 … ), broadcast.
    this.maxSlot = 2 ** (32 - this.gw.prefix) - 3;
    this.hostNetnsPath = opts.hostNetnsPath;
    this.procRoot = opts.procRoot ?? "/proc";
    this.keepBridge = opts.keepBridge === true;
    this.log = opts.log.child({ component: "egress" });
    this.rules = new EgressRules(opts.iptables, bridgeName);
  }

  /** The leg address of a slot ("100.72.0.<slot+1>"); validates the slot. */
  legIp(slot: number): string {
    if (!Number.isInteger(slot) || slot < 1 || slot > this.maxSlot) {
      throw new EgressError(`egress: slot ${slot} does not fit gateway subnet ${this.subnet} (1–${this.maxSlot})`);
    }
    return formatIpv4(this.gw.network + 1 + slot);
  }

  // -------------------------------------------------------------- interface

  /** Gives the network a leg on the host bridge, a default route, a host route back and NAT. */
  ensureNetwork(spec: EgressNetworkSpec): Promise<void> {
    return this.mutex.run(() => this.doEnsure(spec));
  }

  /** Removes the network's route and leg (its NAT stays until `setNat(…, false)`); the last one out removes the bridge. */
  removeNetwork(ref: EgressNetworkRef): Promise<void> {
    return this.mutex.run(() => this.doRemove(ref));
  }

  /**
   * The network's MASQUERADE rule, wanted or not: from the network's creation
   * (or restore) here until its removal, so that no container's start has to
   * add it. An iptables process only when that changes what is wanted.
   */
  async setNat(subnet: string, on: boolean): Promise<void> {
    const cidr = this.networkCidr(subnet);
    const network = cidr.toString();
    if (await this.rules.masquerade(network, cidr, on)) this.log.info({ subnet: network, nat: on }, on ? "egress NAT added" : "egress NAT removed");
  }

  /** The bridge and its address, with or without networks (the name service listens on the address). */
  ensureBridge(): Promise<void> {
    return this.mutex.run(async () => {
      await this.ensureShared("the gateway bridge");
    });
  }

  /** Releases the host rtnetlink socket; kernel state stays. */
  async close(): Promise<void> {
    await this.mutex.idle();
    this.hostSocket?.socket.close();
    this.hostSocket = undefined;
  }

  // --------------------------------------------------------------- plumbing

  private host(): RtNetlinkSocket {
    if (!this.hostSocket) {
      this.hostSocket = this.hostNetnsPath === undefined ? createRtNetlink() : openRtnetlinkIn(this.hostNetnsPath);
    }
    return this.hostSocket;
  }

  private networkCidr(subnet: unknown): Subnet {
    const cidr = parseCidr4(subnet, "network subnet", 1, 32);
    if (cidr.overlaps(this.gw)) {
      throw new EgressError(`egress ${cidr.toString()}: overlaps the gateway subnet ${this.subnet}`, cidr.toString());
    }
    return cidr;
  }

  private validateNetwork(subnet: unknown, slot: number): { cidr: Subnet; legIp: string } {
    const cidr = this.networkCidr(subnet);
    let legIp: string;
    try {
      legIp = this.legIp(slot);
    } catch (err) {
      throw new EgressError(`egress ${cidr.toString()}: ${messageOf(err).replace(/^egress: /, "")}`, cidr.toString(), undefined, { cause: err });
    }
    return { cidr, legIp };
  }

  // ----------------------------------------------------------------- ensure

  private async doEnsure(spec: EgressNetworkSpec): Promise<void> {
    const { cidr, legIp } = this.validateNetwork(spec.subnet, spec.slot);
    const network = cidr.toString();
    const slot = spec.slot;
    if (typeof spec.nsPath !== "string" || !isNetnsMount(spec.nsPath)) {
      throw new EgressError(`egress ${network}: ${JSON.stringify(spec.nsPath)} is not a network namespace`, network);
    }
    for (const [other, st] of this.networks) {
      if (other !== network && st.slot === slot) {
        throw new EgressError(`egress ${network}: slot ${slot} is already used by network ${other}`, network);
      }
      if (other !== network && st.subnet.overlaps(cidr)) {
        throw new EgressError(`egress ${network}: overlaps network ${other}`, network);
      }
    }
    const prev = this.networks.get(network);
    if (prev && prev.slot !== slot) {
      this.log.info({ subnet: network, oldSlot: prev.slot, slot }, "egress slot changed; moving the leg");
      await removeLeg(this.host(), network, prev.slot);
    }

    const log = this.log.child({ subnet: network, slot, netns: spec.nsPath });
    const side = await this.ensureShared(network);
    const hostOnly = spec.hostOnly === true;
    await ensureLeg(side, { network, slot, nsPath: spec.nsPath, legIp, hostOnly }, log);
    await ensureHostRoute(side, network, cidr, legIp);
    // Wanted since the network was created here: no iptables process, unless it was not.
    await this.rules.masquerade(network, cidr, !hostOnly);

    this.networks.set(network, { subnet: cidr, slot, nsPath: spec.nsPath });
    log.info({ leg: `${legIp}/${this.gw.prefix}`, bridge: this.bridgeName, hostOnly }, "egress ready");
  }

  /** The bridge and host forwarding (the chains are the RuleKeeper's). */
  private async ensureShared(network: string): Promise<GatewaySide> {
    const host = this.host();
    const bridgeCidr = `${this.bridgeIp}/${this.gw.prefix}`;
    const bridge = await egressStep(network, `ensuring bridge ${this.bridgeName} ${bridgeCidr}`, () =>
      ensureGatewayBridge(host, this.bridgeName, bridgeCidr, this.bridgeMac),
    );
    await egressStep(network, "enabling the host's net.ipv4.ip_forward", () => {
      if (enableHostForwarding(this.hostNetnsPath, this.procRoot)) this.log.info("host net.ipv4.ip_forward enabled");
    });
    return { host, bridge, bridgeName: this.bridgeName, bridgeIp: this.bridgeIp, prefix: this.gw.prefix, procRoot: this.procRoot };
  }

  // ----------------------------------------------------------------- remove

  private async doRemove(ref: EgressNetworkRef): Promise<void> {
    const { cidr, legIp } = this.validateNetwork(ref.subnet, ref.slot);
    const network = cidr.toString();
    const host = this.host();

    await deleteHostRoute(host, this.bridgeName, network, cidr, legIp);
    await removeLeg(host, network, ref.slot);
    this.networks.delete(network);
    this.log.info({ subnet: network, slot: ref.slot }, "egress removed");

    const legsLeft = await egressStep(network, "counting the host legs left", () => countHostLegs(host));
    if (legsLeft === 0) await this.removeShared();
  }

  /** The bridge (the chains stay, see the design note). Host ip_forward is left on. */
  private async removeShared(): Promise<void> {
    const what = "shared egress state";
    if (this.keepBridge) return;
    const host = this.host();
    await egressStep(what, `deleting bridge ${this.bridgeName}`, () => removeGatewayBridge(host, this.bridgeName));
    this.log.info({ bridge: this.bridgeName }, "egress gateway removed (no network left)");
  }
}
