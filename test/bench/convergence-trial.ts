/**
 * Convergence trials on the lab, shared by the overlay and convergence
 * benchmarks: how long after a container starts on host A a container on
 * host B gets its first reply from it, and the other way round.
 *
 * Design note. Both orders are measured because they wait on different
 * things. Pinger first: B asks for an address that has no neighbor entry
 * yet, so the first reply needs A's record to reach B's kernel and B's
 * container to notice (its ARP retry, or an announcement). Target first: A's
 * record is already programmed on B; what is measured is B's own start. The
 * lab's hosts share one clock, so the daemon's log timestamps, the plugins'
 * and this process's compare directly. Execs and runs get a TTY: busybox
 * ping block-buffers its output into a pipe, so without one nothing arrives
 * until it exits.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { docker, dockerOk, type Lab, type LabHost } from "../e2e/support/lab.js";

export type Trial<T> = T | { failed: string };
export const failed = <T extends object>(t: Trial<T>): t is { failed: string } => "failed" in t;

/** Pinger first: B's `pinger` container pings `ip` every 10 ms; the container that gets `ip` is started on A (with `runArgs`). Times from `docker run` being issued and from it returning, and the run's own wall time. B may be A (a same-host baseline). */
export async function pingerFirstTrial(
  l: Lab,
  a: LabHost,
  b: LabHost,
  o: { network: string; pinger: string; ip: string; name: string; runArgs?: string[] },
): Promise<Trial<{ fromRunIssued: number; fromRunReturned: number; runReturnedAt: number; runMs: number }>> {
  const pinger = spawn(l.dockerCli ?? "/usr/bin/docker", ["-H", `unix://${b.dockerSock}`, "exec", "-t", o.pinger, "ping", "-i", "0.01", "-w", "15", o.ip]);
  let out = "";
  const replied = new Promise<number | undefined>((resolve) => {
    pinger.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (/bytes from/.test(out)) resolve(Date.now());
    });
    pinger.on("exit", () => resolve(undefined));
  });
  await new Promise<void>((resolve) => {
    const check = (): void => (/PING/.test(out) ? resolve() : void setTimeout(check, 5));
    check();
  });
  const t0 = Date.now();
  try {
    await dockerOk(a, ["run", "-d", "--name", o.name, "--network", o.network, "--ip", o.ip, ...(o.runArgs ?? []), l.testImage, "sleep", "600"]);
    const t1 = Date.now();
    const t2 = await replied;
    if (t2 === undefined) return { failed: `no reply from ${o.ip} within 15 s: ${out.split("\n").slice(-3).join(" ")}` };
    return { fromRunIssued: t2 - t0, fromRunReturned: t2 - t1, runReturnedAt: t1, runMs: t1 - t0 };
  } finally {
    pinger.kill();
    await docker(a, ["rm", "-f", o.name]);
  }
}

/** `docker logs -t` time of the first line matching `re` (waits up to `timeoutMs`); undefined if none came. */
async function firstLogLine(l: Lab, host: LabHost, container: string, re: RegExp, timeoutMs: number): Promise<number | undefined> {
  const logs = spawn(l.dockerCli ?? "/usr/bin/docker", ["-H", `unix://${host.dockerSock}`, "logs", "-f", "-t", container]);
  let out = "";
  try {
    return await new Promise<number | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      logs.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        for (const line of out.split("\n")) {
          const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,3})?\d*Z /.exec(line);
          if (m !== null && re.test(line)) {
            clearTimeout(timer);
            resolve(Date.parse(`${m[1]}${m[2] ?? ""}Z`));
            return;
          }
        }
      });
      logs.on("exit", () => setTimeout(() => resolve(undefined), 100));
    });
  } finally {
    logs.kill();
  }
}

/** Target first: the container that gets `ip` runs on A already; B starts a container that pings it every 10 ms. Time from B's `docker run` returning to its first reply. */
export async function targetFirstTrial(
  l: Lab,
  a: LabHost,
  b: LabHost,
  o: { network: string; ip: string; name: string },
): Promise<Trial<{ fromRunIssued: number; fromRunReturned: number }>> {
  const target = `${o.name}-t`;
  const pinger = `${o.name}-p`;
  try {
    await dockerOk(a, ["run", "-d", "--name", target, "--network", o.network, "--ip", o.ip, l.testImage, "sleep", "600"]);
    const t0 = Date.now();
    await dockerOk(b, ["run", "-d", "-t", "--name", pinger, "--network", o.network, l.testImage, "ping", "-i", "0.01", "-w", "15", o.ip]);
    const t1 = Date.now();
    const t2 = await firstLogLine(l, b, pinger, /bytes from/, 20_000);
    if (t2 === undefined) return { failed: `no reply from ${o.ip} within 15 s` };
    return { fromRunIssued: t2 - t0, fromRunReturned: t2 - t1 };
  } finally {
    await docker(b, ["rm", "-f", pinger]);
    await docker(a, ["rm", "-f", target]);
  }
}

/** The `time` of the plugin's log lines with message `msg` on a host since `since` (ms), from the daemon's log; `match` filters on the line's text. */
export function pluginLogTimes(host: LabHost, msg: string, since: number, match: (line: string) => boolean = () => true): number[] {
  const out: number[] = [];
  for (const line of readFileSync(`${host.dataDir}/dockerd.log`, "utf8").split("\n")) {
    if (!line.includes(`\\"msg\\":\\"${msg}\\"`) || !match(line)) continue;
    const t = /\\"time\\":\\"([^\\"]+)\\"/.exec(line);
    const at = t === null ? Number.NaN : Date.parse(t[1]!);
    if (at >= since) out.push(at);
  }
  return out;
}

/** The plugin's own request timings (its debug lines in the daemon's log), for one path. */
export function pluginTimings(host: LabHost, path: string, since: number): number[] {
  const log = readFileSync(`${host.dataDir}/dockerd.log`, "utf8");
  const re = new RegExp(`\\\\"time\\\\":\\\\"([^\\\\"]+)\\\\"[^\\n]*\\\\"path\\\\":\\\\"${path.replace(".", "\\.")}\\\\",\\\\"ms\\\\":([0-9.]+)`, "g");
  const out: number[] = [];
  for (const m of log.matchAll(re)) if (Date.parse(m[1]!) >= since) out.push(Number(m[2]));
  return out;
}
