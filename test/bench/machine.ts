/** What a results file records of the machine it was measured on (the README's tables show it beside the figures). */
import { cpus, release } from "node:os";

export function machine(): { cpus: number; cpuModel: string | undefined; kernel: string } {
  return { cpus: cpus().length, cpuModel: cpus()[0]?.model.trim(), kernel: release() };
}
