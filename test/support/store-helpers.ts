import type { Result } from "../../lib/result.js";
import type { MemoryStore } from "./memory-store.js";
import type { KV, Store } from "../../driver/contracts/store.js";

/** Delays every store call by a random number of ticks, so concurrent callers interleave differently each run. */
export function jittery(store: MemoryStore): Store {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const member: unknown = Reflect.get(target, prop, receiver);
      if (typeof member !== "function") return member;
      return async (...args: unknown[]) => {
        for (let ticks = Math.floor(Math.random() * 4); ticks > 0; ticks--) await new Promise(setImmediate);
        return (member as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

/** The keys of a list, in its order. */
export const keysOf = (kvs: KV[]): string[] => kvs.map((kv) => kv.key);

/** Adds one to the number at `key` the way the domain writes: read, CAS, retry when another writer won. */
export async function incrementWithRetry(store: Store, key: string): Promise<void> {
  for (;;) {
    const current = await store.get(key);
    const next = String(Number(current?.value ?? "0") + 1);
    if (await store.cas(key, next, current?.modifyIndex ?? 0)) return;
  }
}

const text = (e: unknown): string => (typeof e === "string" ? e : ((e as { message?: string }).message ?? JSON.stringify(e)));

/** The value of a Result that must have succeeded. */
export function value<T>(result: Result<T, unknown>): T {
  if (!result.ok) throw new Error(`expected success, got: ${text(result.error)}`);
  return result.value;
}

/** The error message of a Result that must have failed (a DomainError's message, or the string). */
export function error<T>(result: Result<T, unknown>): string {
  if (result.ok) throw new Error(`expected failure, got: ${JSON.stringify(result.value)}`);
  return text(result.error);
}

/** The cause of a failed Outcome. */
export function causeOf<T>(result: Result<T, { cause: string }>): string {
  if (result.ok) throw new Error(`expected failure, got: ${JSON.stringify(result.value)}`);
  return result.error.cause;
}
