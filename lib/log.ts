import { pino, type Logger } from "pino";

export type { Logger };

/** Structured JSON-lines logger shared by every layer; one line per event. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { svc: "tsoverlay", pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
