/**
 * The plugin's most recent log lines, kept in memory for `tsoverlay
 * support-bundle`: the last `maxLines` lines, and no more than `maxBytes`
 * of them, the oldest dropped first. It is handed the lines exactly as the
 * logger writes them, after the logger's secret scrub (lib/log.ts).
 */

export interface LogRingLimits {
  maxLines: number;
  maxBytes: number;
}

export const DEFAULT_LOG_RING: LogRingLimits = { maxLines: 2_000, maxBytes: 1024 * 1024 };

const CUT = "…[cut]";

export class LogRing {
  private readonly lines: string[] = [];
  /** Index of the oldest line in `lines` (dropping from the front without shifting). */
  private head = 0;
  private bytes = 0;

  constructor(private readonly limits: LogRingLimits = DEFAULT_LOG_RING) {
    if (!(limits.maxLines >= 1 && limits.maxBytes >= 64)) throw new RangeError(`log ring limits too small: ${JSON.stringify(limits)}`);
  }

  /** Keeps one line (a trailing newline is dropped); a line longer than the byte cap is cut to it. */
  push(line: string): void {
    let text = line.endsWith("\n") ? line.slice(0, -1) : line;
    if (Buffer.byteLength(text) > this.limits.maxBytes) text = cutTo(text, this.limits.maxBytes - Buffer.byteLength(CUT)) + CUT;
    this.lines.push(text);
    this.bytes += Buffer.byteLength(text);
    while (this.lines.length - this.head > this.limits.maxLines || this.bytes > this.limits.maxBytes) {
      this.bytes -= Buffer.byteLength(this.lines[this.head]!);
      this.head++;
    }
    // Compact now and then, so the array does not grow with everything ever logged.
    if (this.head > this.limits.maxLines) {
      this.lines.splice(0, this.head);
      this.head = 0;
    }
  }

  /** The lines kept, oldest first, without newlines. */
  snapshot(): string[] {
    return this.lines.slice(this.head);
  }

  /** Bytes of the lines kept (newlines not counted). */
  get size(): number {
    return this.bytes;
  }
}

/** The longest prefix of `text` of at most `max` UTF-8 bytes, without a character cut in half. */
function cutTo(text: string, max: number): string {
  // A character cut in half decodes as U+FFFD at the end: drop it.
  return Buffer.from(text, "utf8")
    .subarray(0, max)
    .toString("utf8")
    .replace(/\uFFFD$/, "");
}
