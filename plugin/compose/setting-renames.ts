/**
 * tsoverlay's own settings follow one style: every name starts with
 * TSOVERLAY_, durations are seconds named _S, switches are true/false. The
 * settings named otherwise before are still read, each use with a warning:
 * `docker plugin upgrade` keeps the old plugin's settings in Docker's store
 * and starts the new one with them, and `docker plugin set` can neither
 * change nor remove a name the new config.json does not declare. This table
 * is the one list of those old names and old values; config.ts applies it
 * before its schema, which knows only the new names.
 */

/** A setting that had another name, or a value that had another spelling. */
interface Rename {
  old: string;
  now: string;
  /** The old value in the new setting's terms; undefined when the value is not an old spelling (only for a kept name). */
  value?: (old: string) => string | undefined;
  /** What the new setting's value is, when it is not just the old one renamed (in the warning). */
  unit?: string;
}

/** The switches that were on/off before they took true/false. */
const ON_OFF = new Map([
  ["on", "true"],
  ["off", "false"],
]);

export const RENAMES: readonly Rename[] = [
  { old: "LOG_LEVEL", now: "TSOVERLAY_LOG_LEVEL" },
  { old: "ADVERTISE_ADDR", now: "TSOVERLAY_ADVERTISE_ADDR" },
  { old: "ADVERTISE_IFACE", now: "TSOVERLAY_ADVERTISE_IFACE" },
  // Milliseconds to seconds; what is not a number goes through as given, for the schema to refuse.
  {
    old: "TSOVERLAY_RECONCILE_MS",
    now: "TSOVERLAY_RECONCILE_S",
    unit: "in seconds",
    value: (ms) => (ms.trim() !== "" && Number.isFinite(Number(ms)) ? String(Number(ms) / 1000) : ms),
  },
  { old: "TSOVERLAY_DNS", now: "TSOVERLAY_DNS", value: (v) => ON_OFF.get(v) },
];

export interface Renamed {
  /** The settings under their new names, old ones translated (the new name wins). */
  env: Record<string, string>;
  warnings: string[];
  /** How a new name's value was given, when it came from an old name or value: for error messages. */
  givenAs: Map<string, string>;
}

/** Reads old names and values into the new ones; `env` holds only non-empty settings (empty means "default"). */
export function applyRenames(env: Record<string, string>): Renamed {
  const out = { ...env };
  const warnings: string[] = [];
  const givenAs = new Map<string, string>();
  for (const r of RENAMES) {
    const given = env[r.old];
    if (given === undefined) continue;
    if (r.old === r.now) {
      const value = r.value?.(given);
      if (value === undefined) continue;
      out[r.now] = value;
      givenAs.set(r.now, `${r.old}=${given}`);
      warnings.push(`${r.old}=${given} is an old value: use ${r.now}=${value} (read as ${value})`);
      continue;
    }
    delete out[r.old];
    const current = env[r.now];
    if (current !== undefined) {
      warnings.push(`${r.old} (${given}) was ignored: it is an old name of ${r.now}, which is set too (${current})`);
      continue;
    }
    const value = r.value?.(given) ?? given;
    out[r.now] = value;
    givenAs.set(r.now, `${r.old}=${given}`);
    warnings.push(`${r.old} is an old name: use ${r.now}${r.unit === undefined ? "" : `, ${r.unit}`} (read as ${value})`);
  }
  return { env: out, warnings, givenAs };
}
