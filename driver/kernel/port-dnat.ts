/**
 * The kernel fast path for published ports (proxy-mode "hybrid"): DNAT in
 * the plugin's own nat chain, the way Docker's DOCKER chain works next to
 * docker-proxy.
 *
 *   PREROUTING  -m addrtype --dst-type LOCAL                 -j TSOVERLAY-DNAT
 *   OUTPUT      ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j TSOVERLAY-DNAT
 *   TSOVERLAY-DNAT [-d <hostIp>/32] ! -i <gateway bridge> -p tcp -m tcp --dport 8080
 *                  -j DNAT --to-destination 10.10.0.5:80
 *
 * What stays on the userland proxy, and why:
 *  - loopback (127.0.0.0/8 is excluded in OUTPUT): DNAT of a loopback
 *    destination to another host needs route_localnet, which opens
 *    127.0.0.1 to the network; the proxy listening on 127.0.0.1 does it safely.
 *  - hairpin (`! -i <bridge>`): a container reaching a published port on its
 *    own host arrives from the gateway bridge; DNATed, it would be routed
 *    back out of the same bridge (which the egress FORWARD rules drop) and
 *    answered directly by its neighbour on br0, bypassing the reverse NAT.
 *  - IPv6: the overlays are IPv4; the proxy's [::] socket bridges the families.
 * The DNATed connections are let through FORWARD by the egress chain's
 * `--ctstate DNAT` rule. The chain and its jumps go with the last rule.
 *
 * UDP and conntrack: NAT is decided on a flow's first packet only, and a UDP
 * client that keeps sending keeps its conntrack entry alive forever. Without
 * a flush, a client of a republished port would stay mapped to the old
 * container (or to the proxy, if it started before the rule): Docker's
 * moby#8795. So UDP flows to the host port are deleted whenever its rule is
 * added or removed (`conntrack -D`, the conntrack-tools CLI in the image).
 */
import type { DnatPort, DnatRule } from "../contracts/dnat.js";
import { Mutex } from "../../lib/keyed-mutex.js";
import type { Logger } from "../../lib/log.js";
import { setupChain, teardownChain, type Chain } from "./chain.js";
import { runHostCommand } from "./host-command.js";
import type { Iptables } from "./iptables.js";

export const DNAT_CHAIN = "TSOVERLAY-DNAT";

/** Entered for local destinations; loopback from the host itself stays on the proxy (see above). */
const CHAIN: Chain = {
  table: "nat",
  name: DNAT_CHAIN,
  entries: [
    { chain: "PREROUTING", match: ["-m", "addrtype", "--dst-type", "LOCAL"] },
    { chain: "OUTPUT", match: ["!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL"] },
  ],
  // Its rules come and go with published ports.
  rules: [],
};
const NAT = CHAIN.table;

export interface PortDnatOptions {
  /** The egress gateway bridge: traffic arriving from it is hairpin traffic and stays on the proxy. */
  gatewayBridge: string;
  iptables: Iptables;
  /** conntrack-tools binary (default "conntrack"); runs where `netnsPath` says, like iptables. */
  conntrack?: string;
  netnsPath?: string;
  log: Logger;
}

export class PortDnat implements DnatPort {
  private readonly log: Logger;
  /** Whole operations run one at a time (the last rule out removes the chain). */
  private readonly mutex = new Mutex();

  constructor(private readonly opts: PortDnatOptions) {
    this.log = opts.log.child({ component: "port-dnat" });
  }

  /**
   * The rule as `iptables -S` prints it, so that rules read back from the
   * kernel compare equal to the ones we want (see `prune`).
   */
  ruleArgs(r: DnatRule): string[] {
    return [
      ...(r.hostIp === "" ? [] : ["-d", `${r.hostIp}/32`]),
      "!",
      "-i",
      this.opts.gatewayBridge,
      "-p",
      r.proto,
      "-m",
      r.proto,
      "--dport",
      String(r.hostPort),
      "-j",
      "DNAT",
      "--to-destination",
      `${r.containerIp}:${r.containerPort}`,
    ];
  }

  add(r: DnatRule): Promise<void> {
    return this.serial(async () => {
      const ipt = this.opts.iptables;
      await setupChain(ipt, CHAIN);
      if (await ipt.ensureRule(NAT, DNAT_CHAIN, this.ruleArgs(r))) this.log.info({ ...r }, "port DNAT added");
      await this.flushUdpFlows(r);
    });
  }

  remove(r: DnatRule): Promise<void> {
    return this.serial(async () => {
      await this.opts.iptables.deleteRule(NAT, DNAT_CHAIN, this.ruleArgs(r));
      this.log.info({ ...r }, "port DNAT removed");
      await this.flushUdpFlows(r);
      await this.removeChainIfEmpty();
    });
  }

  /**
   * Makes the chain hold exactly `keep` (after a restart: endpoints that went
   * away meanwhile, or a switch to userland mode, which keeps nothing). Rules
   * still wanted are never taken out, so the fast path stays up throughout.
   */
  prune(keep: readonly DnatRule[]): Promise<void> {
    return this.serial(async () => {
      const ipt = this.opts.iptables;
      const wanted = new Set(keep.map((r) => `-A ${DNAT_CHAIN} ${this.ruleArgs(r).join(" ")}`));
      const lines = (await ipt.listRules(NAT, DNAT_CHAIN)) ?? [];
      // By number, last first (numbers below stay valid): a rule added by hand may not
      // round-trip through our argument filter (quoted comments).
      for (let n = lines.length; n >= 1; n--) {
        if (wanted.has(lines[n - 1]!)) continue;
        await ipt.exec(NAT, ["-D", DNAT_CHAIN, String(n)]);
        this.log.info({ rule: lines[n - 1] }, "stale port DNAT removed");
      }
      await this.removeChainIfEmpty();
    });
  }

  private async removeChainIfEmpty(): Promise<void> {
    const rules = await this.opts.iptables.listRules(NAT, DNAT_CHAIN);
    if (rules === undefined || rules.length > 0) return;
    await teardownChain(this.opts.iptables, CHAIN);
    this.log.info({ chain: DNAT_CHAIN }, "port DNAT chain removed (no published port left on the fast path)");
  }

  /** Best effort: a failure is logged (the port works, a long-lived UDP client may stay on its old mapping). */
  private async flushUdpFlows(r: DnatRule): Promise<void> {
    if (r.proto !== "udp") return;
    const args = ["-D", "-p", "udp", "--orig-port-dst", String(r.hostPort), ...(r.hostIp === "" ? [] : ["--orig-dst", r.hostIp])];
    const outcome = await runHostCommand(this.opts.conntrack ?? "conntrack", args, { netnsPath: this.opts.netnsPath, timeoutMs: 10_000 }).then(
      // Exit 1 = no entry matched.
      (res) => (res.code === 0 || res.code === 1 ? undefined : `exit ${res.code}: ${res.stderr.trim().split("\n")[0] ?? ""}`),
      (err: Error) => err.message.split("\n")[0],
    );
    if (outcome !== undefined) this.log.warn({ ...r, err: outcome }, "flushing the port's UDP conntrack entries failed");
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    return this.mutex.run(fn);
  }
}
