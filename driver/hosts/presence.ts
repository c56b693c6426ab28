/**
 * One liveness key of this host: an ephemeral key (it lapses when the host
 * stops renewing it) holding the host record, taken in the background and
 * retried until it works, so that starting never waits for the store. The
 * host registry holds one at `by-host/<self>/alive`, and a second one at the
 * previous layout's `hosts/<self>` while hosts that run it are alive.
 */
import type { Logger } from "../../lib/log.js";
import { Backoff } from "../../lib/retry.js";
import { messageOf } from "../../lib/errors.js";
import { isStoreRefusal, type EphemeralKey, type Store } from "../contracts/store.js";

export interface PresenceOptions {
  ttlSeconds: number;
  /** Stop trying when the store refuses the key (an ACL): for a key that is a courtesy, not a need. */
  optional?: boolean;
}

export class Presence {
  private held: EphemeralKey | undefined;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;
  private readonly backoff = new Backoff(1_000, 15_000);

  constructor(
    private readonly store: Store,
    readonly key: string,
    private readonly value: () => string,
    private readonly log: Logger,
    private readonly opts: PresenceOptions,
  ) {}

  /** Takes the key in the background (resolves when the first attempt is over). */
  async take(): Promise<void> {
    if (this.stopped) return;
    try {
      const written = this.value();
      const held = await this.store.putEphemeral(this.key, written, this.opts.ttlSeconds);
      if (this.stopped) {
        held.detach();
        return;
      }
      this.held = held;
      this.log.info({ key: this.key }, "host registered");
      // Told something new while the key was being taken: write it now.
      const now = this.value();
      if (now !== written) await held.update(now);
    } catch (err) {
      if (this.opts.optional === true && isStoreRefusal(err)) {
        this.log.info({ key: this.key, err: messageOf(err) }, "the store refuses this liveness key; going on without it");
        return;
      }
      const retryMs = this.backoff.next();
      this.log.warn({ key: this.key, err: messageOf(err), retryMs }, "registering this host failed; retrying");
      this.retry = setTimeout(() => void this.take(), retryMs);
      this.retry.unref();
    }
  }

  /** Writes the current value (best effort: a failed write waits for the next registration). */
  async refresh(): Promise<void> {
    await this.held?.update(this.value()).catch((err: unknown) => this.log.warn({ key: this.key, err: messageOf(err) }, "updating this host's record failed"));
  }

  /** Deletes the key now (the host leaves that layout). */
  async release(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    const held = this.held;
    this.held = undefined;
    await held?.release();
  }

  /** Stops renewing; the key lapses after its TTL unless a restart takes it over. */
  detach(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    this.held?.detach();
  }
}
