import type { z } from "zod";
import { failure, success, type Result } from "../../lib/result.js";

/** Validates a request body; the error names the endpoint and each bad field. */
export function validate<S extends z.ZodTypeAny>(schema: S, body: unknown, what: string): Result<z.infer<S>> {
  const r = schema.safeParse(body);
  if (r.success) return success(r.data);
  const fields = r.error.issues.map((i) => `${i.path.length > 0 ? i.path.join(".") : "body"}: ${i.message}`).join("; ");
  return failure(`${what}: invalid request: ${fields}`);
}
