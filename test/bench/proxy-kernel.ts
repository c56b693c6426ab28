/**
 * The "kernel" target of `npm run bench -- proxy`: no proxy process at all, the loopback port is
 * DNATed by the kernel, as Docker does with `--userland-proxy=false`:
 *
 *   nat OUTPUT   -m addrtype --dst-type LOCAL -j TSB-DNAT     (no `! -d 127.0.0.0/8`: loopback included)
 *   nat TSB-DNAT -d 127.0.0.1/32 -p tcp -m tcp --dport 6202 -j DNAT --to-destination 127.0.0.1:7000
 *   nat POSTROUTING -s 127.0.0.0/8 -o <bridge> -j MASQUERADE     (only with a backend behind a bridge, see below)
 *   raw PREROUTING  -d 127.0.0.0/8 ! -i lo -j DROP          (the guard: nothing from outside reaches 127/8)
 *
 * With a container behind a bridge Docker also sets `net.ipv4.conf.<bridge>.route_localnet=1`,
 * without which the kernel drops a 127.0.0.1 source routed out of a non-loopback interface, and
 * masquerades that source so the container can answer; the guard is what keeps route_localnet
 * from opening 127.0.0.1 to the network. Here the backend is the bench's own echo/iperf3 on
 * 127.0.0.1 (what every target uses), so the DNATed packets never leave lo: route_localnet has
 * nothing to do, and there is no MASQUERADE (on lo it breaks the connection: tried). What this
 * target lacks next to Docker's is thus one SNAT per new connection and the bridge hop, which the
 * proxies' backend connections would cross too in a real deployment.
 *
 * Its own namespace (with its own copy of the backends): installing a nat table turns conntrack on
 * for the whole namespace, which would tax the direct and userland targets' connections too and
 * break the comparison with earlier runs of this bench.
 */
import { run } from "../e2e/support/lab.js";
import type { BenchNetns } from "./proxy-lab.js";

export interface LoopbackPort {
  proto: "tcp" | "udp";
  hostPort: number;
  backendPort: number;
}

export const KERNEL_CHAIN = "TSB-DNAT";

/** The iptables-restore input for the namespace's raw and nat tables (whole tables: the namespace is the bench's). */
export function loopbackDnatRestore(ports: readonly LoopbackPort[]): string {
  const dnat = ports.map(
    (p) => `-A ${KERNEL_CHAIN} -d 127.0.0.1/32 -p ${p.proto} -m ${p.proto} --dport ${p.hostPort} -j DNAT --to-destination 127.0.0.1:${p.backendPort}`,
  );
  return [
    "*raw",
    ":PREROUTING ACCEPT [0:0]",
    ":OUTPUT ACCEPT [0:0]",
    "-A PREROUTING -d 127.0.0.0/8 ! -i lo -j DROP",
    "COMMIT",
    "*nat",
    ":PREROUTING ACCEPT [0:0]",
    ":INPUT ACCEPT [0:0]",
    ":OUTPUT ACCEPT [0:0]",
    ":POSTROUTING ACCEPT [0:0]",
    `:${KERNEL_CHAIN} - [0:0]`,
    `-A OUTPUT -m addrtype --dst-type LOCAL -j ${KERNEL_CHAIN}`,
    ...dnat,
    "COMMIT",
    "",
  ].join("\n");
}

/** Programs the kernel path in `ns`; fails with iptables-restore's words. */
export async function startKernelPath(ns: BenchNetns, ports: readonly LoopbackPort[]): Promise<void> {
  const r = await run("nsenter", [`--net=${ns.path}`, "iptables-restore"], { input: loopbackDnatRestore(ports), timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`iptables-restore in ${ns.name} failed (${r.code}): ${r.stderr.trim()}`);
}
