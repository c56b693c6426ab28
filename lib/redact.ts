/**
 * Redaction of what is handed out for a support bundle: by field name here
 * (any field whose name says it holds a secret), and by value through the
 * logger's scrub (`scrubSecrets`, lib/log.ts), which knows the values (the
 * Consul ACL token, the WireGuard private key).
 */

/** Field names that hold secrets: tokens, secrets, passwords, private and preshared keys (public keys stay). */
const SECRET_FIELD = /token|secret|passw(or)?d|passphrase|private[-_ ]?key|privkey|preshared/i;
const REDACTED = "[redacted]";

/** A copy of a JSON value with the value of every secret-named field, at any depth, replaced by "[redacted]". */
export function redactFields(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactFields);
  if (typeof value !== "object" || value === null) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, SECRET_FIELD.test(k) ? REDACTED : redactFields(v)]));
}
