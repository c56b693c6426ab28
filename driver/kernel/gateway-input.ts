/**
 * The input gate of the gateway bridge: what a container of a tsoverlay
 * network may reach of its own host. Its traffic to any address of the host
 * (the gateway bridge's, the underlay's, Docker's bridges', 127.0.0.1 is
 * martian) arrives on the gateway bridge; without a gate it reached every
 * service the host runs (the Consul agent, the metrics port, an SSH daemon).
 *
 * One chain of our own (chain.ts) in the filter table, entered from INPUT for
 * packets in on the gateway bridge:
 *   ACCEPT replies and errors of what the host started (the proxy's
 *          connections to containers, conntrack ESTABLISHED,RELATED);
 *   ACCEPT the name service (its address, UDP and TCP), when it runs;
 *   ACCEPT each published port (proto, port, its host address if one): these
 *          come and go with the ports (`sync`), inserted after the fixed
 *          accepts;
 *   REJECT the rest, last (TCP: reset, others: port unreachable), so that a
 *          container is told at once, as by a closed port.
 * Egress to the outside and to other hosts is routed (FORWARD), not input,
 * and is not this chain's business. Nothing is removed when the plugin stops:
 * the gateway bridge outlives it, and so does its gate.
 */
import { Mutex } from "../../lib/keyed-mutex.js";
import type { Logger } from "../../lib/log.js";
import type { GatePort, HostPortGate } from "../contracts/host-gate.js";
import { ensureTail, setupChain, type Chain } from "./chain.js";
import type { Iptables } from "./iptables.js";

export const GATEWAY_INPUT_CHAIN = "TSOVERLAY-GW-INPUT";

export interface GatewayInputOptions {
  iptables: Iptables;
  gatewayBridge: string;
  /** The name service's address and port, when it runs. */
  nameServer?: { address: string; port: number };
  log: Logger;
}

const REFUSALS: readonly (readonly string[])[] = [
  ["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
  ["-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
];

/** A published port's accept, in the words `iptables -S` prints it (so that rules read back compare equal). */
function portRule(p: GatePort): string[] {
  return [...(p.hostIp === "" ? [] : ["-d", `${p.hostIp}/32`]), "-p", p.proto, "-m", p.proto, "--dport", String(p.hostPort), "-j", "ACCEPT"];
}

const PORT_LINE = /^-A \S+ (?:-d (\d+\.\d+\.\d+\.\d+)\/32 )?-p (tcp|udp) -m (?:tcp|udp) --dport (\d+) -j ACCEPT$/;

export class GatewayInput implements HostPortGate {
  private readonly chain: Chain;
  private readonly mutex = new Mutex();

  constructor(private readonly o: GatewayInputOptions) {
    const ns = o.nameServer;
    this.chain = {
      table: "filter",
      name: GATEWAY_INPUT_CHAIN,
      entries: [{ chain: "INPUT", match: ["-i", o.gatewayBridge] }],
      rules: [
        ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        ...(ns === undefined ? [] : ["udp", "tcp"].map((proto) => portRule({ proto: proto as GatePort["proto"], hostIp: ns.address, hostPort: ns.port }))),
      ],
    };
  }

  /** The chain, its fixed accepts, its refusals last and its jump: whatever is missing. Port rules are left as they are. */
  ensure(): Promise<void> {
    return this.mutex.run(async () => {
      const changes = await setupChain(this.o.iptables, this.chain);
      await ensureTail(this.o.iptables, this.chain.table, this.chain.name, REFUSALS);
      if (changes.created) this.o.log.info({ chain: this.chain.name }, "iptables chain created");
    });
  }

  sync(wanted: () => readonly GatePort[]): Promise<void> {
    return this.mutex.run(async () => {
      const ipt = this.o.iptables;
      const fixed = new Set(this.chain.rules.map((r) => r.join(" ")));
      const want = new Map(wanted().map((p) => [portRule(p).join(" "), p]));
      const have = new Map<string, GatePort>();
      for (const line of (await ipt.listRules(this.chain.table, this.chain.name)) ?? []) {
        const m = PORT_LINE.exec(line);
        if (m === null) continue;
        const p: GatePort = { proto: m[2] as GatePort["proto"], hostIp: m[1] ?? "", hostPort: Number(m[3]) };
        const key = portRule(p).join(" ");
        if (!fixed.has(key)) have.set(key, p);
      }
      for (const [key, p] of have) {
        if (want.has(key)) continue;
        await ipt.deleteRule(this.chain.table, this.chain.name, portRule(p));
        this.o.log.debug({ ...p }, "published port closed to containers");
      }
      for (const [key, p] of want) {
        if (have.has(key)) continue;
        // After the fixed accepts, before the refusals.
        await ipt.ensureRule(this.chain.table, this.chain.name, portRule(p), this.chain.rules.length + 1);
        this.o.log.debug({ ...p }, "published port opened to containers");
      }
    });
  }
}
