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
 * The peer rules follow the live hosts (`admit`); until the host list is known
 * the previous rules stay. Nothing is removed when the plugin stops: the
 * tunnels keep running without the plugin, and so does their protection.
 */
import { isIPv4 } from "node:net";
import { setupChain, type Chain } from "./chain.js";
import type { Iptables } from "./iptables.js";
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

export class VxlanGuard implements VxlanAdmission {
  private readonly input: Chain;
  private readonly forward: Chain;

  constructor(private readonly o: VxlanGuardOptions) {
    const vxlan = ["-p", "udp", "-m", "udp", "--dport", String(o.vxlanPort)];
    const local = (negate: boolean): string[] => ["-m", "addrtype", ...(negate ? ["!"] : []), "--dst-type", "LOCAL"];
    const t = o.tunnel;
    // Written in the order `iptables -S` prints them.
    const fromTunnel = t === undefined ? [] : [["-d", `${t.address}/32`, "-i", t.iface, "-j", "RETURN"]];
    const intoTunnel = t === undefined ? [] : [["-d", t.subnet, "-j", "DROP"]];
    this.input = {
      table: "raw",
      name: VXLAN_IN_CHAIN,
      entries: [{ chain: "PREROUTING", match: [...vxlan, ...local(false)] }],
      rules: [...fromTunnel, ["-j", "DROP"]],
    };
    this.forward = { table: "raw", name: VXLAN_FWD_CHAIN, entries: [{ chain: "PREROUTING", match: [...vxlan, ...local(true)] }], rules: intoTunnel };
  }

  /** Both chains, their final DROP and their jumps: whatever is missing. Peer rules are left as they are. */
  async ensure(): Promise<void> {
    for (const chain of [this.input, this.forward]) {
      const changes = await setupChain(this.o.iptables, chain);
      if (changes.created) this.o.log.info({ chain: chain.name }, "iptables chain created");
    }
  }

  /** Makes the peer rules exactly `vteps` (this host's own is skipped on input). */
  async admit(vteps: readonly string[]): Promise<void> {
    await this.ensure();
    const wanted = [...new Set(vteps.filter((v) => isIPv4(v)))].sort();
    // Written in the order `iptables -S` prints, so that a listed rule compares equal to its wanted form.
    const input = wanted.filter((v) => v !== this.o.vtep).map((v) => ["-s", `${v}/32`, "-d", `${this.o.vtep}/32`, "-i", this.o.underlay, "-j", "RETURN"]);
    await this.converge(this.input, input);
    await this.converge(
      this.forward,
      wanted.map((v) => ["-d", `${v}/32`, "-j", "DROP"]),
    );
  }

  /** Makes the chain's rules `wanted` (before its fixed ones), deleting any other. */
  private async converge(chain: Chain, wanted: readonly string[][]): Promise<void> {
    const ipt = this.o.iptables;
    const line = (rule: readonly string[]): string => `-A ${chain.name} ${rule.join(" ")}`;
    const keep = new Set([...wanted, ...chain.rules].map(line));
    const present = new Set<string>();
    for (const l of (await ipt.listRules(chain.table, chain.name)) ?? []) {
      present.add(l);
      if (keep.has(l)) continue;
      await ipt.deleteRule(chain.table, chain.name, l.split(" ").slice(2));
      this.o.log.info({ chain: chain.name, rule: l }, "VXLAN peer rule removed");
    }
    for (const rule of wanted) {
      if (present.has(line(rule))) continue;
      await ipt.ensureRule(chain.table, chain.name, rule, 1);
      this.o.log.info({ chain: chain.name, rule: rule.join(" ") }, "VXLAN peer rule added");
    }
  }
}
