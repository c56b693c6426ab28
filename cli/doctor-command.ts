import type { Finding } from "../driver/api.js";
import type { Output } from "./cluster-commands.js";
import { printable } from "./printable.js";

const MARK: Record<Finding["status"], string> = { ok: "ok", info: "info", warn: "WARN", problem: "PROBLEM" };

/** `tsoverlay doctor`: each finding on a line, its fix under it; `problems` (not warnings) drives the exit status. */
export function doctor(all: Finding[]): Output & { problems: number } {
  // A detail may quote the store (host ids, names): printed, it is made printable.
  const findings = all.map((f) => ({
    ...f,
    check: printable(f.check),
    detail: printable(f.detail),
    ...(f.fix === undefined ? {} : { fix: printable(f.fix) }),
  }));
  const width = Math.max(...findings.map((f) => f.check.length), 5);
  const text = findings
    .map(
      (f) => `${MARK[f.status].padEnd(8)}${f.check.padEnd(width + 3)}${f.detail}\n${f.fix === undefined ? "" : `${" ".repeat(8 + width + 3)}fix: ${f.fix}\n`}`,
    )
    .join("");
  const problems = findings.filter((f) => f.status === "problem").length;
  const warnings = findings.filter((f) => f.status === "warn").length;
  return { json: all, text: `${text}\n${problems} problem(s), ${warnings} warning(s)\n`, problems };
}
