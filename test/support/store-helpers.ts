import type { Result } from "../../lib/result.js";
import type { MemoryStore } from "./memory-store.js";
import type { Store } from "../../domain/ports/store.js";

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

/** The value of a Result that must have succeeded. */
export function value<T>(result: Result<T>): T {
  if (!result.ok) throw new Error(`expected success, got: ${result.error}`);
  return result.value;
}

/** The error of a Result that must have failed. */
export function error<T>(result: Result<T>): string {
  if (result.ok) throw new Error(`expected failure, got: ${JSON.stringify(result.value)}`);
  return result.error;
}
