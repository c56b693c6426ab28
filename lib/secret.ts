import { inspect } from "node:util";

const SHOWN = "[redacted]";

/**
 * A value that must never be written out (an ACL token). Only `reveal()` gives
 * it; as text, JSON or in `util.inspect` it is "[redacted]", so a config or
 * options object holding one can be logged or thrown without leaking it.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return SHOWN;
  }

  toJSON(): string {
    return SHOWN;
  }

  [inspect.custom](): string {
    return `Secret(${SHOWN})`;
  }
}
