import type { Logger } from "../../lib/log.js";
import type { EphemeralKey, StoreError } from "../contracts/store.js";
import type { ConsulClient } from "./consul-client.js";
import { statusCodeOf } from "./consul-errors.js";

export interface EphemeralDeps {
  client: ConsulClient;
  log: Logger;
  toError: (op: string, err: unknown) => StoreError;
  onRelease: () => void;
  /** A renewal went through (Consul is there). */
  onAnswer: () => void;
}

/**
 * A key held by a Consul session. If the session is found gone during renewal
 * (TTL expired while Consul was unreachable, or destroyed by someone else) a new
 * one is created and the key re-acquired.
 */
export class ConsulEphemeralKey implements EphemeralKey {
  private sessionId: string | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private released = false;
  private abandoned = false;

  constructor(
    readonly key: string,
    private value: string,
    private readonly ttlSeconds: number,
    private readonly deps: EphemeralDeps,
  ) {}

  /** The current session ID (for diagnostics and tests). */
  get session(): string | undefined {
    return this.sessionId;
  }

  async acquire(): Promise<void> {
    if (await this.adoptPredecessor()) return;
    const { client } = this.deps;
    let id: string;
    try {
      ({ ID: id } = await client.session.create({
        name: `tsoverlay:${this.key}`,
        ttl: `${this.ttlSeconds}s`,
        behavior: "delete",
        lockdelay: "0s",
      }));
    } catch (err) {
      throw this.deps.toError("putEphemeral", err);
    }
    let acquired: boolean;
    try {
      acquired = await client.kv.set({ key: this.key, value: this.value, acquire: id });
    } catch (err) {
      await this.destroySession(id);
      throw this.deps.toError("putEphemeral", err);
    }
    if (!acquired) {
      await this.destroySession(id);
      throw this.deps.toError("putEphemeral", "key is held by another session (a previous holder's session may not have expired yet)");
    }
    if (this.released || this.abandoned) {
      await this.destroySession(id);
      return;
    }
    this.sessionId = id;
    this.deps.log.debug({ session: id, ttlSeconds: this.ttlSeconds }, "ephemeral key acquired");
    this.scheduleRenewal();
  }

  /**
   * An ephemeral key names its owner (e.g. a host), so a session still holding
   * it belongs to this owner's previous process. Taking that session over keeps
   * the key alive across a restart; waiting for it to expire would make peers
   * see the owner vanish and come back.
   */
  private async adoptPredecessor(): Promise<boolean> {
    const { client } = this.deps;
    let held: { Session?: string } | undefined;
    try {
      held = (await client.kv.get({ key: this.key })) as { Session?: string } | undefined;
    } catch (err) {
      throw this.deps.toError("putEphemeral", err);
    }
    const previous = held?.Session;
    if (previous === undefined || previous === "") return false;
    try {
      await client.session.renew({ id: previous });
      if (!(await client.kv.set({ key: this.key, value: this.value, acquire: previous }))) return false;
    } catch {
      return false;
    }
    this.sessionId = previous;
    this.deps.log.info({ session: previous }, "ephemeral key taken over from the previous process");
    this.scheduleRenewal();
    return true;
  }

  /** A new value under the same session; a later re-acquire writes it too. */
  async update(value: string): Promise<void> {
    this.value = value;
    const id = this.sessionId;
    if (id === undefined || this.released || this.abandoned) return;
    let held: boolean;
    try {
      held = await this.deps.client.kv.set({ key: this.key, value, acquire: id });
    } catch (err) {
      throw this.deps.toError("update", err);
    }
    if (!held) throw this.deps.toError("update", `session ${id} no longer holds the key`);
  }

  /** Destroys the session; Consul deletes the key (behavior=delete). Idempotent. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearTimeout(this.renewTimer);
    this.deps.onRelease();
    const id = this.sessionId;
    this.sessionId = undefined;
    if (id === undefined || this.abandoned) return;
    try {
      await this.deps.client.session.destroy({ id });
    } catch (err) {
      throw this.deps.toError("release", err);
    }
  }

  /**
   * Stops renewing without destroying the session, as if this process had
   * died: Consul deletes the key once the TTL runs out, unless a successor
   * process takes the session over first (adoptPredecessor). A plugin that
   * stops does this, so that a restart does not look like the host leaving.
   */
  detach(): void {
    this.abandoned = true;
    clearTimeout(this.renewTimer);
    this.deps.onRelease();
  }

  private scheduleRenewal(): void {
    if (this.released || this.abandoned) return;
    this.renewTimer = setTimeout(() => void this.renew(), (this.ttlSeconds * 1000) / 3);
    this.renewTimer.unref();
  }

  private async renew(): Promise<void> {
    const id = this.sessionId;
    if (id === undefined || this.released || this.abandoned) return;
    try {
      await this.deps.client.session.renew({ id });
      this.deps.onAnswer();
    } catch (err) {
      if (this.released || this.abandoned) return;
      if (statusCodeOf(err) === 404) {
        this.deps.log.warn({ session: id }, "ephemeral key's session is gone; re-creating it");
        this.sessionId = undefined;
        try {
          await this.acquire();
          return; // acquire() scheduled the next renewal
        } catch (acquireErr) {
          this.deps.log.error({ err: acquireErr }, "re-creating ephemeral key failed; retrying");
          this.sessionId = id; // the next renewal attempt 404s again and retries the re-creation
        }
      } else {
        this.deps.log.warn({ err: this.deps.toError("renew", err), session: id }, "renewing ephemeral key's session failed; retrying");
      }
    }
    this.scheduleRenewal();
  }

  private async destroySession(id: string): Promise<void> {
    await this.deps.client.session.destroy({ id }).catch((err: unknown) => {
      // Never the client's error itself: it holds the request, token included (consul-errors.ts).
      this.deps.log.warn({ err: this.deps.toError("destroySession", err), session: id }, "destroying session failed; it will expire by TTL");
    });
  }
}
