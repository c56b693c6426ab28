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
 *    rules stay untouched, a reader can see at a glance what the plugin did
 *    (`iptables -S TSOVERLAY-FWD`), and cleanup is "delete the jump, flush and
 *    delete the chain" instead of hunting for individual rules.
 *
 * Everything is idempotent and restart-safe: state is read back from the
 * kernel (links, routes, `iptables -C`), so re-ensuring after a restart fixes
 * only what is missing and never duplicates a rule. iptables runs through
 * execFile (never a shell) with arguments built only from validated values,
 * in the host namespace (`nsenter --net=<hostNetnsPath>` when tests play the
 * host in a namespace). The host's net.ipv4.ip_forward is switched on but
 * never switched back off: other software (Docker) relies on it too.
 */
import fs from "node:fs";
import path from "node:path";
import { createRtNetlink, FlagsNew, ifla, type RtNetlinkSocket } from "netlink";
import {
  AF_INET,
  REQUEST_TIMEOUT_MS,
  createVethPair,
  deleteLink,
  encodeAttrs,
  ensureAddress,
  ensureBridge,
  getLinkByName,
  ipToBuffer,
  listLinks,
  macToBuffer,
  nlCall,
  setMaster,
  setUp,
  type LinkInfo,
} from "./links.js";
import { Iptables, IptablesError, type Table } from "./iptables.js";
import { isNetnsMount, openNetnsFd, openRtnetlinkIn, readSysctlIn, writeSysctlIn } from "./netns.js";
import { formatIpv4, parseIpv4, Subnet } from "../../lib/net.js";
import type { Logger } from "../../lib/log.js";

export const DEFAULT_EGRESS_BRIDGE = "tsogw0";
export const DEFAULT_EGRESS_SUBNET = "100.72.0.0/24";
/** The filter chain jumped to from FORWARD. */
export const FWD_CHAIN = "TSOVERLAY-FWD";
/** The nat chain jumped to from POSTROUTING. */
export const NAT_CHAIN = "TSOVERLAY-POSTROUTING";
/** Name of a network's leg inside its namespace. */
export const NS_LEG_NAME = "gw0";
/** Host-side legs are `tsog<slot>`. */
const HOST_LEG_PREFIX = "tsog";
const HOST_LEG_RE = /^tsog([1-9][0-9]{0,9})$/;
/** Linux interface names: ≤ 15 bytes; we allow a safe subset that cannot look like an option. */
const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

const MAIN_TABLE = 254;
const PLAIN = { timeout: REQUEST_TIMEOUT_MS };
const CREATE_EXCL = { flags: FlagsNew.CREATE | FlagsNew.EXCL, timeout: REQUEST_TIMEOUT_MS };
const CREATE_REPLACE = { flags: FlagsNew.CREATE | FlagsNew.REPLACE, timeout: REQUEST_TIMEOUT_MS };

export interface EgressGatewayOptions {
  /** Host bridge name (default "tsogw0"). */
  bridgeName?: string;
  /** Gateway subnet: bridge = first host, network legs = first host + slot (default 100.72.0.0/24). */
  subnet?: string;
  /** The namespace that plays "the host" (tests). Default: the process's own. */
  hostNetnsPath?: string;
  /** Where /proc is mounted writable (e.g. "/host/proc" in a container); default "/proc". */
  procRoot?: string;
  /** iptables binary (default "iptables", looked up in PATH). */
  iptables?: string;
  log: Logger;
}

export interface EgressNetworkSpec {
  /** The overlay network's subnet, e.g. "10.10.0.0/24". */
  subnet: string;
  /** The network's namespace (`<runDir>/netns/vni-<vni>`). */
  nsPath: string;
  /** ≥ 1; the network's leg gets the gateway subnet's address `first host + slot`. */
  slot: number;
}

export interface EgressNetworkRef {
  subnet: string;
  slot: number;
}

/** A failed egress operation, naming the network and (for iptables) the rule. */
export class EgressError extends Error {
  constructor(
    message: string,
    readonly network?: string,
    readonly rule?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "EgressError";
  }
}

/** Host-side leg name of a slot. */
export function hostLegName(slot: number): string {
  return `${HOST_LEG_PREFIX}${slot}`;
}

// ------------------------------------------------------------- IPv4 helpers

/** Parses an IPv4 CIDR; host bits are cleared ("10.10.0.7/24" → 10.10.0.0/24). */
function parseCidr4(cidr: unknown, what: string, minLen: number, maxLen: number): Subnet {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(typeof cidr === "string" ? cidr : "");
  const ip = m === null ? undefined : parseIpv4(m[1]!);
  const prefixlen = m === null ? NaN : Number(m[2]);
  if (ip === undefined || !ip.ok || !(prefixlen >= minLen && prefixlen <= maxLen)) {
    throw new EgressError(`egress: invalid ${what} ${JSON.stringify(cidr)} (want an IPv4 CIDR /${minLen}–/${maxLen})`);
  }
  return Subnet.containing(ip.value, prefixlen);
}

function errMsg(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ------------------------------------------------------------------- class

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
  /** The bridge's fixed MAC (see `ensureShared`). */
  readonly bridgeMac: string;
  private readonly gw: Subnet;
  private readonly maxSlot: number;
  private readonly hostNetnsPath: string | undefined;
  private readonly procRoot: string;
  private readonly iptables: Iptables;
  private readonly log: Logger;

  private hostSocket: RtNetlinkSocket | undefined;
  /** Networks ensured by this instance (the kernel remains the source of truth). */
  private readonly networks = new Map<string, NetworkState>();
  /** All operations run one at a time: `-C` then `-A` must not interleave. */
  private queue: Promise<void> = Promise.resolve();

  constructor(opts: EgressGatewayOptions) {
    const bridgeName = opts.bridgeName ?? DEFAULT_EGRESS_BRIDGE;
    if (!IFNAME_RE.test(bridgeName) || HOST_LEG_RE.test(bridgeName)) {
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
    const bin = opts.iptables ?? "iptables";
    if (bin === "" || bin.startsWith("-")) throw new EgressError(`egress: invalid iptables binary ${JSON.stringify(bin)}`);
    this.iptables = new Iptables({ bin, netnsPath: opts.hostNetnsPath });
    this.log = opts.log.child({ component: "egress" });
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
    return this.enqueue(() => this.doEnsure(spec));
  }

  /** Removes the network's route, NAT rule and leg; the last one out removes the shared pieces. */
  removeNetwork(ref: EgressNetworkRef): Promise<void> {
    return this.enqueue(() => this.doRemove(ref));
  }

  /** Removes every leg, both chains with their jumps, and the bridge (found in the kernel, not in memory). */
  removeAll(): Promise<void> {
    return this.enqueue(async () => {
      const host = this.host();
      for (const l of await listLinks(host)) {
        if (HOST_LEG_RE.test(l.name) && l.kind === "veth") await deleteLink(host, l.index);
      }
      this.networks.clear();
      await this.removeShared();
    });
  }

  /** Releases the host rtnetlink socket; kernel state stays. */
  async close(): Promise<void> {
    await this.queue;
    this.hostSocket?.socket.close();
    this.hostSocket = undefined;
  }

  // --------------------------------------------------------------- plumbing

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private host(): RtNetlinkSocket {
    if (!this.hostSocket) {
      this.hostSocket = this.hostNetnsPath === undefined ? createRtNetlink() : openRtnetlinkIn(this.hostNetnsPath);
    }
    return this.hostSocket;
  }

  /** Runs `fn`, turning any failure into an EgressError naming the network and the step. */
  private async step<T>(network: string, what: string, fn: () => Promise<T> | T): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof EgressError) throw err;
      throw new EgressError(`egress ${network}: ${what} failed: ${errMsg(err)}`, network, undefined, { cause: err });
    }
  }

  private validateNetwork(subnet: unknown, slot: number): { cidr: Subnet; legIp: string } {
    const cidr = parseCidr4(subnet, "network subnet", 1, 32);
    if (cidr.overlaps(this.gw)) {
      throw new EgressError(`egress ${cidr.toString()}: overlaps the gateway subnet ${this.subnet}`, cidr.toString());
    }
    let legIp: string;
    try {
      legIp = this.legIp(slot);
    } catch (err) {
      throw new EgressError(`egress ${cidr.toString()}: ${errMsg(err).replace(/^egress: /, "")}`, cidr.toString());
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
      await this.removeLeg(network, prev.slot);
    }

    const log = this.log.child({ subnet: network, slot, netns: spec.nsPath });
    const br = await this.ensureShared(network);
    const host = this.host();
    const hostLeg = hostLegName(slot);

    const nsl = await this.step(network, `opening rtnetlink in ${spec.nsPath}`, () => openRtnetlinkIn(spec.nsPath));
    try {
      // The veth pair: tsog<slot> on the bridge, gw0 in the network namespace.
      const { hostEnd, nsEnd } = await this.step(network, `ensuring veth ${hostLeg} <-> ${NS_LEG_NAME}`, async () => {
        let h = await getLinkByName(host, hostLeg);
        let n = await getLinkByName(nsl, NS_LEG_NAME);
        if (h && h.kind !== "veth") throw new Error(`${hostLeg} exists with kind ${h.kind ?? "(none)"}, not ours`);
        if (n && n.kind !== "veth") {
          await deleteLink(nsl, n.index);
          n = undefined;
        }
        // A leg without its partner, or two legs that are not each other's
        // peer: left-overs of an interrupted run or a reused slot. Start over.
        if ((h || n) && !(h && n && h.peerIndex === n.index && n.peerIndex === h.index)) {
          log.warn({ hostLeg, hostEnd: h?.index, nsEnd: n?.index }, "stale egress leg; recreating the pair");
          if (h) await deleteLink(host, h.index);
          if (n) await deleteLink(nsl, n.index);
          h = n = undefined;
        }
        if (!h) {
          const fd = openNetnsFd(spec.nsPath);
          try {
            await createVethPair(host, hostLeg, NS_LEG_NAME, undefined, fd);
          } finally {
            fs.closeSync(fd);
          }
          log.info({ hostLeg, nsLeg: NS_LEG_NAME }, "egress leg created");
        }
        return { hostEnd: await mustLink(host, hostLeg), nsEnd: await mustLink(nsl, NS_LEG_NAME) };
      });

      await this.step(network, `attaching ${hostLeg} to ${this.bridgeName}`, async () => {
        if (hostEnd.master !== br.index) await setMaster(host, hostEnd.index, br.index);
        await ensurePortIsolated(host, hostEnd.index, hostLeg);
        if (!hostEnd.up) await setUp(host, hostEnd.index);
      });

      await this.step(network, `configuring ${NS_LEG_NAME} ${legIp}/${this.gw.prefix} in ${spec.nsPath}`, async () => {
        await ensureAddress(nsl, nsEnd.index, `${legIp}/${this.gw.prefix}`);
        if (!nsEnd.up) await setUp(nsl, nsEnd.index);
      });

      await this.step(network, `enabling net.ipv4.ip_forward in ${spec.nsPath}`, () => {
        if (readSysctlIn(spec.nsPath, "net/ipv4/ip_forward", this.procRoot) !== "1") {
          writeSysctlIn(spec.nsPath, "net/ipv4/ip_forward", "1", this.procRoot);
        }
      });

      await this.step(network, `default route via ${this.bridgeIp} in ${spec.nsPath}`, async () => {
        const routes = await mainRoutes(nsl, 0);
        const ours = routes.some((r) => r.gateway === this.bridgeIp && r.oif === nsEnd.index);
        if (ours && routes.length === 1) return;
        await nlCall("replace default route", `link ${NS_LEG_NAME}`, () =>
          nsl.newRoute(routeData(0), routeAttrs("0.0.0.0", 0, this.bridgeIp, nsEnd.index), CREATE_REPLACE),
        );
      });
    } finally {
      nsl.socket.close();
    }

    await this.step(network, `host route ${network} via ${legIp} dev ${this.bridgeName}`, async () => {
      const have = (await mainRoutes(host, cidr.prefix)).filter((r) => r.dst === formatIpv4(cidr.network));
      if (have.some((r) => r.gateway === legIp && r.oif === br.index)) return;
      const foreign = have.find((r) => r.oif !== br.index);
      if (foreign) {
        throw new Error(
          `the host already routes ${network} via ${foreign.gateway ?? "(direct)"} on link #${foreign.oif ?? "?"}, not through ${this.bridgeName}`,
        );
      }
      // Ours with another leg (slot changed behind our back): replaced in place.
      await nlCall("add route", `link ${this.bridgeName}`, () =>
        host.newRoute(routeData(cidr.prefix), routeAttrs(formatIpv4(cidr.network), cidr.prefix, legIp, br.index), have.length ? CREATE_REPLACE : CREATE_EXCL),
      );
    });

    await this.ensureRule(network, "nat", NAT_CHAIN, this.masqueradeRule(cidr));

    this.networks.set(network, { subnet: cidr, slot, nsPath: spec.nsPath });
    log.info({ leg: `${legIp}/${this.gw.prefix}`, bridge: this.bridgeName }, "egress ready");
  }

  /** The bridge, host forwarding, both chains, their rules and jumps. */
  private async ensureShared(network: string): Promise<LinkInfo> {
    const host = this.host();
    const bridgeCidr = `${this.bridgeIp}/${this.gw.prefix}`;
    const br = await this.step(network, `ensuring bridge ${this.bridgeName} ${bridgeCidr}`, async () => {
      const b = await ensureBridge(host, this.bridgeName);
      // A bridge without an explicitly set MAC takes its lowest port's, so
      // removing one network's leg could change it under the others, whose
      // ARP caches would then point at a MAC nobody answers to. Fixed MAC.
      if (b.mac !== this.bridgeMac) {
        await nlCall(`set address ${this.bridgeMac}`, `link ${this.bridgeName}`, () =>
          host.setLink({ index: b.index }, { address: macToBuffer(this.bridgeMac) }, PLAIN),
        );
      }
      await ensureAddress(host, b.index, bridgeCidr);
      if (!b.up) await setUp(host, b.index);
      return b;
    });
    await this.step(network, "enabling the host's net.ipv4.ip_forward", () => this.enableHostForwarding());

    await this.ensureChain(network, "filter", FWD_CHAIN);
    const rules = this.forwardRules();
    for (let i = 0; i < rules.length; i++) {
      // Position matters (DROP before ACCEPT): a missing rule goes back where it belongs.
      await this.ensureRule(network, "filter", FWD_CHAIN, rules[i]!, i + 1);
    }
    await this.ensureRule(network, "filter", "FORWARD", ["-j", FWD_CHAIN], 1);

    await this.ensureChain(network, "nat", NAT_CHAIN);
    await this.ensureRule(network, "nat", "POSTROUTING", ["-j", NAT_CHAIN], 1);
    return br;
  }

  private forwardRules(): string[][] {
    const b = this.bridgeName;
    return [
      ["-i", b, "-o", b, "-j", "DROP"],
      ["-i", b, "-j", "ACCEPT"],
      ["-o", b, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
      // Published ports on the kernel fast path (publish/kernel-dnat.ts) reach containers as DNATed connections.
      ["-o", b, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"],
      ["-o", b, "-j", "DROP"],
    ];
  }

  private masqueradeRule(cidr: Subnet): string[] {
    return ["-s", cidr.toString(), "!", "-o", this.bridgeName, "-j", "MASQUERADE"];
  }

  private enableHostForwarding(): void {
    if (this.hostNetnsPath !== undefined) {
      if (readSysctlIn(this.hostNetnsPath, "net/ipv4/ip_forward", this.procRoot) !== "1") {
        writeSysctlIn(this.hostNetnsPath, "net/ipv4/ip_forward", "1", this.procRoot);
        this.log.info("host net.ipv4.ip_forward enabled");
      }
      return;
    }
    // Our own namespace: /proc/sys/net resolves against the calling thread's.
    const file = path.join(this.procRoot, "sys", "net", "ipv4", "ip_forward");
    if (fs.readFileSync(file, "utf8").trim() !== "1") {
      fs.writeFileSync(file, "1");
      this.log.info("host net.ipv4.ip_forward enabled");
    }
  }

  // ----------------------------------------------------------------- remove

  private async doRemove(ref: EgressNetworkRef): Promise<void> {
    const { cidr, legIp } = this.validateNetwork(ref.subnet, ref.slot);
    const network = cidr.toString();
    const host = this.host();

    const br = await getLinkByName(host, this.bridgeName);
    if (br?.kind === "bridge") {
      await this.step(network, `deleting host route ${network} via ${legIp}`, async () => {
        const have = (await mainRoutes(host, cidr.prefix)).filter(
          (r) => r.dst === formatIpv4(cidr.network) && r.gateway === legIp && r.oif === br.index,
        );
        if (have.length === 0) return;
        await nlCall(
          "delete route",
          `link ${this.bridgeName}`,
          () => host.delRoute(routeData(cidr.prefix), routeAttrs(formatIpv4(cidr.network), cidr.prefix, legIp, br.index), PLAIN),
          ["ESRCH", "ENOENT"],
        );
      });
    }
    await this.ipt(network, (t) => t.deleteRule("nat", NAT_CHAIN, this.masqueradeRule(cidr)));
    await this.removeLeg(network, ref.slot);
    this.networks.delete(network);
    this.log.info({ subnet: network, slot: ref.slot }, "egress removed");

    const remaining = (await listLinks(host)).filter((l) => HOST_LEG_RE.test(l.name) && l.kind === "veth");
    if (remaining.length === 0) await this.removeShared();
  }

  /** Deletes the host-side leg (its namespace end goes with it). */
  private async removeLeg(network: string, slot: number): Promise<void> {
    const host = this.host();
    const name = hostLegName(slot);
    await this.step(network, `deleting ${name}`, async () => {
      const l = await getLinkByName(host, name);
      if (l?.kind === "veth") await deleteLink(host, l.index);
    });
  }

  /** Jumps, chains, bridge. Host ip_forward is left on (see the design note). */
  private async removeShared(): Promise<void> {
    const what = "shared egress state";
    for (const [table, parent, chain] of [
      ["filter", "FORWARD", FWD_CHAIN],
      ["nat", "POSTROUTING", NAT_CHAIN],
    ] as const) {
      await this.ipt(what, (t) => t.removeChain(table, chain, [{ parent, rule: ["-j", chain] }]));
    }
    const host = this.host();
    await this.step(what, `deleting bridge ${this.bridgeName}`, async () => {
      const br = await getLinkByName(host, this.bridgeName);
      if (br?.kind === "bridge") await deleteLink(host, br.index);
    });
    this.log.info({ bridge: this.bridgeName }, "egress gateway removed (no network left)");
  }

  // --------------------------------------------------------------- iptables

  /** Runs an iptables step; its failure becomes an EgressError naming the network and the rule. */
  private async ipt<T>(network: string, fn: (ipt: Iptables) => Promise<T>): Promise<T> {
    try {
      return await fn(this.iptables);
    } catch (err) {
      if (!(err instanceof IptablesError)) throw err;
      throw new EgressError(`egress ${network}: ${err.message}`, network, err.rule, { cause: err });
    }
  }

  private async ensureChain(network: string, table: Table, chain: string): Promise<void> {
    if (await this.ipt(network, (t) => t.ensureChain(table, chain))) this.log.info({ table, chain }, "iptables chain created");
  }

  private async ensureRule(network: string, table: Table, chain: string, rule: string[], position?: number): Promise<void> {
    if (await this.ipt(network, (t) => t.ensureRule(table, chain, rule, position))) {
      this.log.info({ table, chain, rule: rule.join(" "), position }, "iptables rule added");
    }
  }
}

// ------------------------------------------------------------- netlink bits

async function mustLink(nl: RtNetlinkSocket, name: string): Promise<LinkInfo> {
  const l = await getLinkByName(nl, name);
  if (!l) throw new Error(`link ${name} vanished`);
  return l;
}

/**
 * Marks a bridge port "isolated": isolated ports forward only to
 * non-isolated ones (the bridge itself), so network legs cannot reach each
 * other at layer 2, where the FORWARD DROP would never see the traffic.
 */
async function ensurePortIsolated(nl: RtNetlinkSocket, index: number, name: string): Promise<void> {
  const msgs = await nlCall("get", `link ${name}`, () => nl.getLink({ index }, {}, PLAIN));
  const li = msgs?.[0]?.attrs.linkinfo;
  const slave = li ? ifla.parseInfo(li) : undefined;
  if (slave?.slaveKind === "bridge" && slave.slaveData) {
    const port = ifla.parseBridgePort(slave.slaveData);
    if (port.isolated?.[0] === 1) return;
  }
  const linkinfo = encodeAttrs(
    ifla.formatInfo({
      slaveKind: "bridge",
      slaveData: encodeAttrs(ifla.formatBridgePort({ isolated: Buffer.from([1]) })),
    }),
  );
  // RTM_NEWLINK on an existing index without CREATE changes it (like `ip link set … type bridge_slave`).
  await nlCall("set bridge port isolated", `link ${name}`, () => nl.newLink({ index }, { linkinfo }, PLAIN));
}

interface Route4 {
  dst: string;
  gateway?: string;
  oif?: number;
}

/** IPv4 routes of the main table with prefix length `dstLen`. */
async function mainRoutes(nl: RtNetlinkSocket, dstLen: number): Promise<Route4[]> {
  const msgs = await nlCall("list routes", "main table", () => nl.getRoutes({ family: AF_INET }, undefined, PLAIN));
  const out: Route4[] = [];
  for (const m of msgs ?? []) {
    if ((m.attrs.table ?? m.data.table) !== MAIN_TABLE || (m.data.dstLen ?? 0) !== dstLen) continue;
    const r: Route4 = { dst: m.attrs.dst && m.attrs.dst.length === 4 ? [...m.attrs.dst].join(".") : "0.0.0.0" };
    if (m.attrs.gateway && m.attrs.gateway.length === 4) r.gateway = [...m.attrs.gateway].join(".");
    if (m.attrs.oif !== undefined) r.oif = m.attrs.oif;
    out.push(r);
  }
  return out;
}

function routeData(dstLen: number) {
  return {
    family: AF_INET,
    dstLen,
    table: MAIN_TABLE,
    protocol: "STATIC",
    scope: "UNIVERSE",
    type: "UNICAST",
  } as const;
}

function routeAttrs(dst: string, dstLen: number, gateway: string, oif: number) {
  return {
    ...(dstLen > 0 ? { dst: ipToBuffer(dst) } : {}),
    gateway: ipToBuffer(gateway),
    oif,
  };
}
