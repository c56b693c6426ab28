import { EventEmitter } from "node:events";
import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { metrics } from "../../lib/metrics.js";
import { guardProcess, type GuardedProcess } from "../../plugin/process-guard.js";

/** A logger whose JSON lines land in `lines`. */
function capture(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n")) if (l !== "") lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: "info", formatters: { level: (label) => ({ level: label }) } }, sink), lines };
}

/** The process as the guard sees it: its events, and whether it was told to exit. */
function fakeProcess(): GuardedProcess & EventEmitter & { exits: number[] } {
  const p = new EventEmitter() as EventEmitter & GuardedProcess & { exits: number[] };
  p.exits = [];
  p.exit = (code: number) => void p.exits.push(code);
  return p;
}

async function counted(kind: string): Promise<number> {
  return (await metrics.unhandledErrors.get()).values.find((v) => v.labels.kind === kind)?.value ?? 0;
}

describe("errors nothing handled", () => {
  it("an unhandled rejection is logged with its stack, counted, and survived", async () => {
    const { log, lines } = capture();
    const proc = fakeProcess();
    guardProcess(log, proc);
    const before = await counted("rejection");
    proc.emit("unhandledRejection", new Error("watch callback failed"));
    proc.emit("unhandledRejection", "a bare string");
    await new Promise((r) => setImmediate(r));
    expect(proc.exits).toEqual([]);
    expect(await counted("rejection")).toBe(before + 2);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: "error", msg: "unhandled promise rejection; carrying on", err: "watch callback failed" });
    expect(String(lines[0]!.stack)).toMatch(/Error: watch callback failed\n\s+at /);
    expect(lines[1]).toMatchObject({ level: "error", err: "a bare string" });
  });

  it("an uncaught exception is survived, unless they come in a burst: then the process exits to be restarted clean", async () => {
    const { log, lines } = capture();
    const proc = fakeProcess();
    let now = 0;
    guardProcess(log, proc, { burst: 3, windowMs: 60_000, now: () => now });
    const before = await counted("exception");
    // Spread out: each one is survived.
    for (let i = 0; i < 5; i++) {
      now += 30_000;
      proc.emit("uncaughtException", new TypeError("x is undefined"), "uncaughtException");
    }
    expect(proc.exits).toEqual([]);
    // The last two of those are within a minute; a third is still survived, a fourth ends it.
    now += 1_000;
    proc.emit("uncaughtException", new TypeError("x is undefined"), "uncaughtException");
    expect(proc.exits).toEqual([]);
    now += 1_000;
    proc.emit("uncaughtException", new TypeError("x is undefined"), "uncaughtException");
    expect(proc.exits).toEqual([1]);
    await new Promise((r) => setImmediate(r));
    expect(await counted("exception")).toBe(before + 7);
    expect(lines.at(-1)).toMatchObject({ level: "fatal", msg: "uncaught exceptions in a burst; exiting to be restarted clean", count: 4 });
    expect(lines.filter((l) => l.msg === "uncaught exception; carrying on")).toHaveLength(6);
    expect(lines[0]).toMatchObject({ level: "error", err: "x is undefined", origin: "uncaughtException" });
  });
});
