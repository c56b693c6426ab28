/** Memory figures of `npm run bench -- proxy`, from /proc. */
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/** A "Name:   1234 kB" field of a /proc file, in bytes (or the bare number for counts). */
function field(text: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+)(\\s+kB)?`, "m").exec(text);
  if (m === null) throw new Error(`no ${name} field`);
  return Number(m[1]) * (m[2] ? 1024 : 1);
}

export function memAvailable(): number {
  return field(readFileSync("/proc/meminfo", "utf8"), "MemAvailable");
}

/** Proportional set size: shared pages are split between the processes mapping them. */
export function pss(pid: number): number {
  return field(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"), "Pss");
}

export function threads(pid: number): number {
  return field(readFileSync(`/proc/${pid}/status`, "utf8"), "Threads");
}

/**
 * MemAvailable once it has stopped moving (two reads 500 ms apart within 1 MiB), or the last read
 * after ten tries: page reclaim and per-CPU caches make a single read jumpy.
 */
export async function settledMemAvailable(): Promise<number> {
  let last = memAvailable();
  for (let i = 0; i < 10; i++) {
    await sleep(500);
    const now = memAvailable();
    if (Math.abs(now - last) < 1024 * 1024) return now;
    last = now;
  }
  return last;
}
