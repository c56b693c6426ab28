import { existsSync } from "node:fs";
import { LAB_ENV, LAB_JSON, LAB_SCRIPT, labLeftovers, readLab, run } from "./support/lab.js";

/**
 * Brings the lab up once for the whole e2e run and always takes it down
 * afterwards, then checks that nothing the lab made is left behind.
 * TSOVERLAY_LAB_REUSE=1 uses a lab that is already up and leaves it up.
 * TSOVERLAY_DOCKER picks the lab's Docker version (29, 28 or 20.10; default 29).
 */
let reused = false;

async function labCmd(args: string[]): Promise<void> {
  const r = await run("bash", [LAB_SCRIPT, ...args], { timeoutMs: 40 * 60_000 });
  process.stderr.write(r.stderr);
  process.stdout.write(r.stdout);
  if (r.code !== 0) throw new Error(`lab ${args.join(" ")} failed with exit code ${r.code}`);
}

export async function setup(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("the e2e tests drive the real lab and must run as root");
  if (process.env.TSOVERLAY_LAB_REUSE === "1" && existsSync(LAB_JSON)) {
    reused = true;
    return;
  }
  // A lab left up, or half made by a failed run, goes first.
  if (existsSync(LAB_JSON) || existsSync(LAB_ENV)) await labCmd(["down"]);
  await labCmd(["up", "--hosts", process.env.TSOVERLAY_LAB_HOSTS ?? "3", "--docker", process.env.TSOVERLAY_DOCKER ?? "29"]);
}

export async function teardown(): Promise<void> {
  if (reused) return;
  const lab = existsSync(LAB_JSON) ? readLab() : undefined;
  const labPids = new Set<string>(
    lab === undefined ? [] : [...lab.consul.map((c) => String(c.pid)), ...lab.hosts.flatMap((h) => [String(h.dockerdPid), String(h.consulPid)])],
  );
  await labCmd(["down"]);
  const leftovers = await labLeftovers(labPids);
  if (leftovers.length > 0) throw new Error(`lab teardown left: ${leftovers.join("; ")}`);
  process.stdout.write("lab teardown check: no lab namespace, process, mount, cgroup or directory left\n");
}
