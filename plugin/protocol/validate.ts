import type { z } from "zod";

export type Validated<T> = { ok: true; value: T } | { ok: false; error: string };

/** Validates a request body; the error names the endpoint and each bad field. */
export function validate<S extends z.ZodTypeAny>(schema: S, body: unknown, what: string): Validated<z.infer<S>> {
  const r = schema.safeParse(body);
  if (r.success) return { ok: true, value: r.data };
  const fields = r.error.issues
    .map((i) => `${i.path.length > 0 ? i.path.join(".") : "body"}: ${i.message}`)
    .join("; ");
  return { ok: false, error: `${what}: invalid request: ${fields}` };
}
