/**
 * Who may hand this host a VXLAN datagram. The kernel decapsulates any UDP
 * datagram that reaches the VXLAN port on any address of the host — from the
 * underlay, from a container through its gateway bridge, from a Docker bridge
 * — and delivers the inner frame into whichever network its VNI names. So a
 * container could inject frames into another tenant's network, or an
 * `--internal` one, on its own host and, through its host's egress NAT (which
 * makes the datagram come from a trusted VTEP), on every other host.
 *
 * Two chains of our own (chain.ts) in the raw table, entered from PREROUTING
 * for UDP to the VXLAN port. PREROUTING sees every datagram that arrives from
 * an interface, before routing and before conntrack, whoever else arranges
 * FORWARD and INPUT (Docker, the egress chains, a host firewall: each keeps
 * its jump first there), and never the kernel's own tunnel traffic, which
 * leaves through OUTPUT:
 *  - TSOVERLAY-VXLAN-IN, for datagrams to an address of this host: one passes
 *    (RETURN: the host's firewall still has its say) only if it arrives on the
 *    underlay interface, for this host's VTEP address, from the VTEP of a live
 *    host — one rule per peer — before a final DROP.
 *  - TSOVERLAY-VXLAN-FWD, for datagrams this host would forward, i.e. a
 *    container's: one DROP per live VTEP.
 * The peer rules follow the live hosts (`admit`: one iptables-restore when
 * they change, none when they do not); until the host list is known the
 * previous run's rules stay (`adopt`). The chains, their final rules and their
 * jumps are set up before any tunnel exists and kept by the RuleKeeper
 * (rule-keeper.ts). Nothing is removed when the plugin stops: the tunnels
 * keep running without the plugin, and so does their protection.
 */
import { isIPv4 } from "node:net";
import { commit, OwnedChain } from "./chain.js";
import type { Iptables, RuleDump } from "./iptables.js";
import type { KeptRules } from "./rule-keeper.js";
import type { VxlanAdmission } from "../contracts/datapath.js";
import type { Logger } from "../../lib/log.js";

export const VXLAN_IN_CHAIN = "TSOVERLAY-VXLAN-IN";
export const VXLAN_FWD_CHAIN = "TSOVERLAY-VXLAN-FWD";

export interface VxlanGuardOptions {
  iptables: Iptables;
  /** This host's VTEP address. */
  vtep: string;
  /** The interface that holds it. */
  underlay: string;
  vxlanPort: number;
  /**
   * Encrypted networks' tunnel: VXLAN that arrives on the WireGuard interface
   * for this host's tunnel address passes (WireGuard has already checked which
   * host sent it), and a container's datagram towards the tunnel subnet is
   * dropped (else this host's NAT would send it into the tunnel as its own).
   */
  tunnel?: { iface: string; address: string; subnet: string };
  log: Logger;
}

const PEER_IN_RE = /^-s (\d+\.\d+\.\d+\.\d+)\/32 -d (\S+) -i (\S+) -j RETURN$/;
const PEER_FWD_RE = /^-d \d+\.\d+\.\d+\.\d+\/32 -j DROP$/;

export class VxlanGuard implements VxlanAdmission, KeptRules {
  private readonly input: OwnedChain;
  private readonly forward: OwnedChain;

  constructor(private readonly o: VxlanGuardOptions) {
    const vxlan = ["-p", "udp", "-m", "udp", "--dport", String(o.vxlanPort)];
    const local = (negate: boolean): string[] => ["-m", "addrtype", ...(negate ? ["!"] : []), "--dst-type", "LOCAL"];
    const t = o.tunnel;
    // Written in the order `iptables -S` prints them.
    const fromTunnel = t === undefined ? [] : [["-d", `${t.address}/32`, "-i", t.iface, "-j", "RETURN"]];
    const intoTunnel = t === undefined ? [] : [["-d", t.subnet, "-j", "DROP"]];
    this.input = new OwnedChain({
      table: "raw",
      name: VXLAN_IN_CHAIN,
      entries: [{ chain: "PREROUTING", match: [...vxlan, ...local(false)] }],
      tail: [...fromTunnel, ["-j", "DROP"]],
    });
    this.forward = new OwnedChain({
      table: "raw",
      name: VXLAN_FWD_CHAIN,
      entries: [{ chain: "PREROUTING", match: [...vxlan, ...local(true)] }],
      tail: intoTunnel,
    });
  }

  chains(): readonly OwnedChain[] {
    return [this.input, this.forward];
  }

  /** The peers a previous run admitted stay admitted until the host list is read. */
  adopt(dump: RuleDump): void {
    this.input.adopt(dump, (rule) => {
      const m = PEER_IN_RE.exec(rule.join(" "));
      return m !== null && m[2] === `${this.o.vtep}/32` && m[3] === this.o.underlay;
    });
    this.forward.adopt(dump, (rule) => PEER_FWD_RE.test(rule.join(" ")));
  }

  /** Makes the peer rules exactly `vteps` (this host's own is skipped on input); no iptables process when they are already. */
  async admit(vteps: readonly string[]): Promise<void> {
    const wanted = [...new Set(vteps.filter((v) => isIPv4(v)))].sort();
    // Written in the order `iptables -S` prints, so that a listed rule compares equal to its wanted form.
    const input = wanted.filter((v) => v !== this.o.vtep).map((v) => ["-s", `${v}/32`, "-d", `${this.o.vtep}/32`, "-i", this.o.underlay, "-j", "RETURN"]);
    const forward = wanted.map((v) => ["-d", `${v}/32`, "-j", "DROP"]);
    await this.o.iptables.exclusive(async (s) => {
      const before = new Set([...this.input.changing(), ...this.forward.changing()].map((r) => r.join(" ")));
      this.input.set(input);
      this.forward.set(forward);
      if ((await commit(s, [this.input, this.forward])) === 0) return;
      const after = new Set([...input, ...forward].map((r) => r.join(" ")));
      const added = [...after].filter((k) => !before.has(k));
      const removed = [...before].filter((k) => !after.has(k));
      if (added.length + removed.length > 0) this.o.log.info({ added, removed }, "VXLAN peer rules changed");
    });
  }
}
