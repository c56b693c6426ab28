import type { z } from "zod";
import { fail, type Answer } from "../http/answer.js";
import type { Handler } from "../http/app.js";
import { validate } from "../protocol/validate.js";
import type { DomainApi } from "../../driver/api.js";
import type { ReadinessGate } from "../readiness.js";

/**
 * One protocol endpoint: the body is validated against its schema (400 with
 * every bad field named), the domain must be up (a call waits for its first
 * start; 503 with the reason it is not up), then `call` turns the request into
 * a domain call and its outcome into an answer.
 */
export function route<S extends z.ZodTypeAny>(
  gate: ReadinessGate,
  name: string,
  schema: S,
  call: (req: z.infer<S>, api: DomainApi) => Promise<Answer> | Answer,
  /** Refusals that need no domain (what tsoverlay never supports): answered even before it is up. */
  refuse?: (req: z.infer<S>) => string | undefined,
): Handler {
  return async (body) => {
    const v = validate(schema, body, name);
    if (!v.ok) return fail(v.error, 400);
    const why = refuse?.(v.value);
    if (why !== undefined) return fail(why, 400);
    const s = await gate.settled();
    if (!s.ready) return fail(`${name}: tsoverlay is not ready: ${s.reason}`, 503);
    return call(v.value, s);
  };
}
