/**
 * What a terminal is shown of a string that came from the cluster store (a
 * host name, a network or container name, another host's answer): anyone who
 * can write the store chooses those, and escape sequences in them would
 * drive the operator's terminal (retitle it, clear it, rewrite what was
 * printed before, hide a line). ESC sequences (CSI, OSC, DCS and the like,
 * and two-byte ones) go whole, then every C0 and C1 control character and
 * DEL that is left. Every line the CLI prints passes through here (table.ts
 * for tables, the others per line); JSON output needs nothing (JSON.stringify
 * escapes control characters).
 */
// eslint-disable-next-line no-control-regex
const ESCAPE_SEQUENCE = /\u001b(?:\[[0-?]*[ -/]*[@-~]|[\]PX^_][^\u0007\u001b]*(?:\u0007|\u001b\\)?|[ -/]*[0-~])?/g;
/** CSI and OSC as their one-byte C1 forms. */
// eslint-disable-next-line no-control-regex
const C1_SEQUENCE = /\u009b[0-?]*[ -/]*[@-~]|[\u009d\u0090\u0098\u009e\u009f][^\u0007\u009c]*[\u0007\u009c]?/g;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

export function printable(text: string): string {
  return text.replace(ESCAPE_SEQUENCE, "").replace(C1_SEQUENCE, "").replace(CONTROL, "");
}

/** Each line made printable, each ending with a newline. */
export function printLines(lines: readonly string[]): string {
  return lines.map((l) => `${printable(l)}\n`).join("");
}
