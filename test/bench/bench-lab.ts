/** The lab as the benches use it: `lab.sh` itself, and the running lab or one brought up for a bench alone. */
import { existsSync } from "node:fs";
import { LAB_JSON, LAB_SCRIPT, readLab, run, type Lab } from "../e2e/support/lab.js";

export async function lab(args: string[]): Promise<void> {
  const r = await run("bash", [LAB_SCRIPT, ...args], { timeoutMs: 40 * 60_000 });
  if (r.code !== 0) throw new Error(`lab ${args.join(" ")} failed: ${r.stderr.slice(-2000)}`);
}

/** `work` on the running lab (left up), or on a lab of `hosts` hosts brought up for it and taken down after. */
export async function onLab<T>(hosts: number, work: (l: Lab) => Promise<T>): Promise<T> {
  const own = !existsSync(LAB_JSON);
  if (own) await lab(["up", "--hosts", String(hosts)]);
  try {
    return await work(readLab());
  } finally {
    if (own) await lab(["down"]);
  }
}
