import { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
import Consul from "consul";
import type { Logger } from "../../lib/log.js";
import { assertValidKey, compareKeys, isUnderPrefix, Keyspace } from "./keyspace.js";
import { StoreError, type EphemeralKey, type KV, type Store, type Watch } from "../../domain/ports/store.js";

const DEFAULT_PORT = 8500;
const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
const DEFAULT_WATCH_WAIT_SECONDS = 30;
const WATCH_BACKOFF_MIN_MS = 250;
const WATCH_BACKOFF_MAX_MS = 10_000;

export interface ConsulStoreOptions {
  /** `host:port`, `host`, or `http(s)://host[:port]`; empty → $CONSUL_HTTP_ADDR. Port defaults to 8500. */
  addr: string;
  /** ACL token; empty/undefined → $CONSUL_HTTP_TOKEN. */
  token?: string;
  log: Logger;
  /** Timeout of every non-blocking request (default 5 s). */
  requestTimeoutMs?: number;
  /** Max duration of one blocking query in `watch` (default 30 s). */
  watchWaitSeconds?: number;
}

/**
 * Turns a CONSUL_HTTP_ADDR-style address into the client's base URL. Without a
 * scheme, CONSUL_HTTP_SSL=true|1 selects https (as the consul CLI does).
 */
export function consulBaseUrl(addr: string, env: NodeJS.ProcessEnv = process.env): string {
  const trimmed = addr.trim();
  if (trimmed === "") throw new Error("empty consul address");
  const useTls = env.CONSUL_HTTP_SSL === "true" || env.CONSUL_HTTP_SSL === "1";
  const withScheme = trimmed.includes("://") ? trimmed : `${useTls ? "https" : "http"}://${trimmed}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new Error(`invalid consul address ${JSON.stringify(addr)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`unsupported consul address scheme ${url.protocol} in ${JSON.stringify(addr)} (use http or https)`);
  }
  if ((url.pathname !== "/" && url.pathname !== "") || url.search !== "") {
    throw new Error(`consul address ${JSON.stringify(addr)} must not have a path or query`);
  }
  return `${url.protocol}//${url.hostname.includes(":") ? `[${url.hostname.replace(/^\[|\]$/g, "")}]` : url.hostname}:${url.port || DEFAULT_PORT}/v1`;
}

// The subset of the `consul` client this adapter uses, typed with the options
// the runtime honours but the bundled typings omit (timeout, ctx, index, wait).
interface RequestContext extends EventEmitter {
  /** Makes calls resolve `[response, body]` so the X-Consul-Index header is readable. */
  includeResponse: boolean;
}
interface RequestOptions {
  timeout?: number;
  ctx?: RequestContext;
}
interface ConsulKvItem {
  Key: string;
  Value: string | null;
  ModifyIndex: number;
}
interface ConsulClient {
  kv: {
    get(opts: { key: string; recurse?: boolean; index?: string; wait?: string } & RequestOptions): Promise<unknown>;
    set(opts: { key: string; value: string; cas?: number; acquire?: string }): Promise<boolean>;
    del(opts: { key: string; recurse?: boolean; cas?: number }): Promise<boolean>;
  };
  session: {
    create(opts: { name: string; ttl: string; behavior: "delete"; lockdelay: string }): Promise<{ ID: string }>;
    renew(opts: { id: string }): Promise<unknown>;
    destroy(opts: { id: string }): Promise<unknown>;
  };
  status: { leader(): Promise<string> };
  transaction: { create(operations: unknown[]): Promise<unknown> };
  destroy(): void;
}

/** Consul KV through the `consul` package (HTTP API). */
export class ConsulStore implements Store {
  private readonly watches = new Set<ConsulWatch>();
  private readonly ephemeralKeys = new Set<ConsulEphemeralKey>();
  private closed = false;

  private constructor(
    readonly baseUrl: string,
    private readonly client: ConsulClient,
    private readonly log: Logger,
    private readonly watchWaitSeconds: number,
    private readonly requestTimeoutMs: number,
  ) {}

  /**
   * Connects and asks the agent for the cluster leader. An agent that cannot
   * answer (down, no leader) is logged, not fatal: the plugin must start and
   * serve from its host-private state while Consul is away, and every store
   * call says what is wrong when it fails. An invalid address is fatal.
   */
  static async open(opts: ConsulStoreOptions): Promise<ConsulStore> {
    const addr = opts.addr.trim() || process.env.CONSUL_HTTP_ADDR || "";
    const token = opts.token || process.env.CONSUL_HTTP_TOKEN || undefined;
    const requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    let baseUrl: string;
    try {
      baseUrl = consulBaseUrl(addr);
    } catch (err) {
      throw new StoreError("open", addr, err);
    }
    const log = opts.log.child({ component: "store", backend: "consul", consul: baseUrl });
    const clientOptions = {
      baseUrl,
      timeout: requestTimeoutMs,
      defaults: { timeout: requestTimeoutMs, ...(token ? { token } : {}) },
    };
    const client = new Consul(clientOptions as ConstructorParameters<typeof Consul>[0]) as unknown as ConsulClient;
    const store = new ConsulStore(baseUrl, client, log, opts.watchWaitSeconds ?? DEFAULT_WATCH_WAIT_SECONDS, requestTimeoutMs);
    try {
      const leader = await client.status.leader();
      if (!leader) log.warn("consul reachable but has no cluster leader yet; writes will fail until one is elected");
    } catch (err) {
      const error = store.error("open", addr, err);
      if (!error.transient) {
        client.destroy();
        throw error;
      }
      log.warn({ err: error.message }, "consul is not answering yet; starting anyway");
    }
    log.info({ tokenSet: token !== undefined }, "consul store opened");
    return store;
  }

  async get(key: string): Promise<KV | undefined> {
    const item = await this.call("get", key, () => this.client.kv.get({ key }));
    return item ? toKV(item as ConsulKvItem) : undefined;
  }

  async put(key: string, value: string): Promise<void> {
    assertValidKey("put", key);
    const ok = await this.call("put", key, () => this.client.kv.set({ key, value }));
    if (ok !== true) throw new StoreError("put", key, "consul refused the write");
  }

  async cas(key: string, value: string, index: number): Promise<boolean> {
    assertValidKey("cas", key);
    return (await this.call("cas", key, () => this.client.kv.set({ key, value, cas: index }))) === true;
  }

  async delete(key: string, index?: number): Promise<boolean> {
    assertValidKey("delete", key);
    const opts = index === undefined ? { key } : { key, cas: index };
    return (await this.call("delete", key, () => this.client.kv.del(opts))) === true;
  }

  /** Consul's recursive delete is a raw string prefix; "a/b" is split into the key and "a/b/" atomically. */
  async deleteTree(prefix: string): Promise<void> {
    if (prefix === "" || prefix.endsWith("/")) {
      await this.call("deleteTree", prefix, () => this.client.kv.del({ key: prefix, recurse: true }));
      return;
    }
    await this.call("deleteTree", prefix, () =>
      this.client.transaction.create([
        { KV: { Verb: "delete", Key: prefix } },
        { KV: { Verb: "delete-tree", Key: `${prefix}/` } },
      ]),
    );
  }

  async list(prefix: string): Promise<KV[]> {
    const items = await this.call("list", prefix, () => this.client.kv.get({ key: prefix, recurse: true }));
    return filterUnder(items, prefix);
  }

  watch(prefix: string, onChange: (kvs: KV[]) => void, onError?: (err: Error) => void): Watch {
    if (this.closed) return Keyspace.closedWatch(prefix, onError);
    const watch: ConsulWatch = new ConsulWatch(prefix, onChange, onError, {
      client: this.client,
      log: this.log,
      waitSeconds: this.watchWaitSeconds,
      requestTimeoutMs: this.requestTimeoutMs,
      toError: (err) => this.error("watch", prefix, err),
      onStop: () => this.watches.delete(watch),
    });
    this.watches.add(watch);
    return watch;
  }

  /**
   * Creates a session (TTL, behavior=delete, no lock delay), acquires `key` with
   * it and renews it every TTL/3. Consul enforces a minimum TTL (10 s by
   * default, `session_ttl_min`) and invalidates a session only after up to 2×TTL.
   */
  async putEphemeral(key: string, value: string, ttlSeconds: number): Promise<ConsulEphemeralKey> {
    assertValidKey("putEphemeral", key);
    if (this.closed) throw new StoreError("putEphemeral", key, "store is closed");
    if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) {
      throw new StoreError("putEphemeral", key, `invalid ttl ${ttlSeconds}s (a positive whole number of seconds)`);
    }
    const ephemeral: ConsulEphemeralKey = new ConsulEphemeralKey(key, value, ttlSeconds, {
      client: this.client,
      log: this.log.child({ key }),
      toError: (op, err) => this.error(op, key, err),
      onRelease: () => this.ephemeralKeys.delete(ephemeral),
    });
    await ephemeral.acquire();
    this.ephemeralKeys.add(ephemeral);
    return ephemeral;
  }

  /** Stops watches, releases ephemeral keys (their sessions), then closes HTTP connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const watch of [...this.watches]) watch.stop();
    for (const ephemeral of [...this.ephemeralKeys]) {
      await ephemeral.release().catch((err: unknown) => this.log.warn({ err, key: ephemeral.key }, "releasing ephemeral key at close failed"));
    }
    this.client.destroy();
    this.log.info("consul store closed");
  }

  private async call<T>(op: string, key: string, request: () => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError(op, key, "store is closed");
    try {
      return await request();
    } catch (err) {
      throw this.error(op, key, err);
    }
  }

  private error(op: string, key: string, err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    const { error, unavailable } = describeConsulError(this.baseUrl, err);
    return new StoreError(op, key, error, unavailable === undefined ? {} : { unavailable });
  }
}

export function openConsulStore(opts: ConsulStoreOptions): Promise<ConsulStore> {
  return ConsulStore.open(opts);
}

interface WatchDeps {
  client: ConsulClient;
  log: Logger;
  waitSeconds: number;
  requestTimeoutMs: number;
  toError: (err: unknown) => StoreError;
  onStop: () => void;
}

/**
 * A blocking-query loop on a prefix. Each request carries its own cancel
 * context; `stop()` aborts the in-flight request and the backoff sleep, and no
 * callback runs after it.
 */
class ConsulWatch implements Watch {
  private stopped = false;
  private inFlight: RequestContext | undefined;
  private wakeFromBackoff: (() => void) | undefined;
  private lastDelivered: string | undefined;

  constructor(
    private readonly prefix: string,
    private readonly onChange: (kvs: KV[]) => void,
    private readonly onError: ((err: Error) => void) | undefined,
    private readonly deps: WatchDeps,
  ) {
    void this.run();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.inFlight?.emit("cancel");
    this.wakeFromBackoff?.();
    this.deps.onStop();
  }

  private async run(): Promise<void> {
    let index = "0";
    let backoffMs = WATCH_BACKOFF_MIN_MS;
    const wait = `${this.deps.waitSeconds}s`;
    // Consul adds up to wait/16 of jitter to a blocking query; leave room for it.
    const timeout = this.deps.waitSeconds * 1000 * 1.25 + this.deps.requestTimeoutMs;
    while (!this.stopped) {
      const ctx = Object.assign(new EventEmitter(), { includeResponse: true });
      this.inFlight = ctx;
      try {
        const [res, items] = (await this.deps.client.kv.get({ key: this.prefix, recurse: true, index, wait, timeout, ctx })) as [
          IncomingMessage,
          unknown,
        ];
        if (this.stopped) return;
        index = nextIndex(index, res.headers["x-consul-index"]);
        backoffMs = WATCH_BACKOFF_MIN_MS;
        this.deliver(filterUnder(items, this.prefix));
      } catch (err) {
        if (this.stopped) return;
        const error = this.deps.toError(err);
        this.deps.log.warn({ err: error, prefix: this.prefix, retryInMs: backoffMs }, "consul watch failed; retrying");
        this.report(error);
        index = "0";
        await this.sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, WATCH_BACKOFF_MAX_MS);
      } finally {
        this.inFlight = undefined;
      }
    }
  }

  /** A blocking query also returns when `wait` elapses or a sibling prefix ("a/bc" for "a/b") changes: deliver real changes only. */
  private deliver(kvs: KV[]): void {
    const signature = JSON.stringify(kvs.map((kv) => [kv.key, kv.modifyIndex]));
    if (signature === this.lastDelivered) return;
    this.lastDelivered = signature;
    try {
      this.onChange(kvs);
    } catch (err) {
      this.report(this.deps.toError(err));
    }
  }

  private report(error: StoreError): void {
    try {
      this.onError?.(error);
    } catch (err) {
      this.deps.log.warn({ err, prefix: this.prefix }, "watch onError handler threw");
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wakeFromBackoff = done;
    });
  }
}

/**
 * Per Consul's blocking-query guidance: an index that goes backwards (e.g. the
 * servers' state was restored) resets to 0, and the index is never 0 after a response.
 */
function nextIndex(previous: string, header: string | string[] | undefined): string {
  const value = Number(Array.isArray(header) ? header[0] : header);
  if (!Number.isFinite(value) || value < 1) return "1";
  return value < Number(previous) ? "0" : String(value);
}

interface EphemeralDeps {
  client: ConsulClient;
  log: Logger;
  toError: (op: string, err: unknown) => StoreError;
  onRelease: () => void;
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
    private readonly value: string,
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
   * Stops renewing without destroying the session, as if this process had died:
   * Consul deletes the key once the TTL runs out. For tests and crash simulation.
   */
  detach(): void {
    this.abandon();
  }

  abandon(): void {
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
      this.deps.log.warn({ err, session: id }, "destroying session failed; it will expire by TTL");
    });
  }
}

function toKV(item: ConsulKvItem): KV {
  return { key: item.Key, value: item.Value ?? "", modifyIndex: item.ModifyIndex };
}

/** Consul matches a recursive prefix as a raw string; apply the directory semantics of isUnderPrefix. */
function filterUnder(items: unknown, prefix: string): KV[] {
  if (!Array.isArray(items)) return [];
  return (items as ConsulKvItem[])
    .filter((item) => isUnderPrefix(item.Key, prefix))
    .map(toKV)
    .sort(compareKeys);
}

function statusCodeOf(err: unknown): number | undefined {
  const response = (err as { response?: { statusCode?: number } } | undefined)?.response;
  return response?.statusCode;
}

/** Network-level failures: the agent could not be reached or the connection broke. */
const UNREACHABLE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN"]);

/**
 * Names the agent and says what went wrong in terms an operator can act on.
 * `unavailable` is set when the failure is Consul not being able to answer
 * (agent down, no leader, no servers, timeouts, 5xx): worth retrying. A 4xx
 * is Consul refusing the request (an ACL, a bad request): not worth it.
 */
export function describeConsulError(baseUrl: string, err: unknown): { error: Error; unavailable?: string } {
  const endpoint = baseUrl.replace(/\/v1$/, "").replace(/^https?:\/\//, "");
  const detail = err as { message?: string; code?: string; isTimeout?: boolean; cause?: { code?: string } } | undefined;
  const code = detail?.code ?? detail?.cause?.code;
  const status = statusCodeOf(err);
  // Consul's own words are in the response body (the client shortens long ones to "internal server error").
  const raw = (err as { response?: { body?: unknown } } | undefined)?.response?.body;
  const text = typeof raw === "string" ? raw : Buffer.isBuffer(raw) ? raw.toString("utf8") : (detail?.message ?? "");
  const body = text.trim().replace(/\s+/g, " ").slice(0, 200);
  let unavailable: string | undefined;
  let message: string;
  if (detail?.isTimeout) {
    // A server without a leader holds requests (rpc_hold_timeout, 7 s by default) before it says so.
    unavailable = `Consul at ${endpoint} did not answer in time`;
  } else if (code === "ECONNREFUSED") {
    unavailable = `Consul at ${endpoint} refused the connection (is the agent running?)`;
  } else if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    unavailable = `Consul host in ${endpoint} does not resolve`;
  } else if (code !== undefined && UNREACHABLE_CODES.has(code)) {
    unavailable = `Consul at ${endpoint} is unreachable (${code})`;
  } else if (status !== undefined && status >= 500) {
    if (/no (cluster )?leader/i.test(body)) unavailable = `Consul at ${endpoint} has no leader`;
    else if (/no known consul servers|no servers/i.test(body)) unavailable = `Consul at ${endpoint} has no servers to talk to`;
    else if (/rpc error|no path to datacenter|connection refused|EOF/i.test(body)) unavailable = `Consul at ${endpoint} cannot reach its servers (${body})`;
    else unavailable = `Consul at ${endpoint} answered HTTP ${status}${body ? ` (${body})` : ""}`;
  }
  if (unavailable !== undefined) message = unavailable;
  else if (status !== undefined) message = `Consul at ${endpoint} refused the request: HTTP ${status}${body ? `: ${body}` : ""}`;
  else message = `Consul at ${endpoint}: ${err instanceof Error ? err.message : String(err)}`;
  return { error: new Error(message, { cause: err }), ...(unavailable === undefined ? {} : { unavailable }) };
}
