/** A lab host's Prometheus metrics (the lab serves them on each host's underlay address, port 9473). */
import { inNetns, type LabHost } from "./lab.js";

export async function metricsOf(host: LabHost): Promise<string> {
  const r = await inNetns(host.netns, ["curl", "-sS", "--max-time", "5", `http://${host.addr}:9473/metrics`]);
  if (r.code !== 0) throw new Error(`metrics of ${host.name}: ${r.stderr}`);
  return r.stdout;
}

/** A sample's value: `name{labels}` exactly as exposed (labels in prom-client's order), or the sum of every sample of `name` when no labels are given. */
export function sample(text: string, name: string, labels?: string): number | undefined {
  const lines = text.split("\n").filter((l) => !l.startsWith("#"));
  if (labels !== undefined) {
    const line = lines.find((l) => l.startsWith(`${name}{${labels}} `));
    return line === undefined ? undefined : Number(line.split(" ").pop());
  }
  const all = lines.filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return all.length === 0 ? undefined : all.reduce((s, l) => s + Number(l.split(" ").pop()), 0);
}
