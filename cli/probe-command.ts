import type { ProbeReport } from "../driver/api.js";
import type { Output } from "./cluster-commands.js";
import { printLines } from "./printable.js";

/** `tsoverlay probe`: the verdict in one line, then what was measured. */
export function probe(r: ProbeReport): Output {
  const lines = [
    r.summary,
    `network ${r.network} (${r.subnet}, VNI ${r.vni}), peer VTEP ${r.peer}`,
    r.rttMs === null ? "round trip: no answer" : `round trip: min ${r.rttMs.min.toFixed(3)} / avg ${r.rttMs.avg.toFixed(3)} / max ${r.rttMs.max.toFixed(3)} ms`,
    `path MTU: ${r.pathMtu === null ? "unknown" : r.pathMtu} (the network needs ${r.neededMtu})`,
    `${r.samples.length} probes sent`,
  ];
  return { json: r, text: printLines(lines), problems: r.verdict === "ok" ? 0 : 1 };
}
