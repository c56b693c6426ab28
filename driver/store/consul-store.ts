import Consul from "consul";
import type { Logger } from "../../lib/log.js";
import { assertValidKey, Keyspace } from "./keyspace.js";
import { StoreError, type KV, type Store, type Watch } from "../contracts/store.js";
import { filterUnder, toKV, type ConsulClient, type ConsulKvItem } from "./consul-client.js";
import { consulStoreError } from "./consul-errors.js";
import { ConsulEphemeralKey } from "./consul-session.js";
import { ConsulWatch } from "./consul-watch.js";

const DEFAULT_PORT = 8500;
const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
const DEFAULT_WATCH_WAIT_SECONDS = 30;

export interface ConsulStoreOptions {
  /** `host:port`, `host`, or `http(s)://host[:port]`. Port defaults to 8500. */
  addr: string;
  /** ACL token. */
  token?: string;
  /** https for an address given without a scheme (CONSUL_HTTP_SSL). */
  ssl?: boolean;
  log: Logger;
  /** Timeout of every non-blocking request (default 5 s). */
  requestTimeoutMs?: number;
  /** Max duration of one blocking query in `watch` (default 30 s). */
  watchWaitSeconds?: number;
}

/**
 * Turns a CONSUL_HTTP_ADDR-style address into the client's base URL. Without a
 * scheme, `ssl` (CONSUL_HTTP_SSL, as the consul CLI reads it) selects https.
 */
export function consulBaseUrl(addr: string, ssl = false): string {
  const trimmed = addr.trim();
  if (trimmed === "") throw new Error("empty consul address");
  const useTls = ssl;
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
    private readonly secrets: readonly string[],
  ) {}

  /**
   * Connects and asks the agent for the cluster leader. An agent that cannot
   * answer (down, no leader) is logged, not fatal: the plugin must start and
   * serve from its host-private state while Consul is away, and every store
   * call says what is wrong when it fails. An invalid address is fatal.
   */
  static async open(opts: ConsulStoreOptions): Promise<ConsulStore> {
    const addr = opts.addr.trim();
    const token = opts.token || undefined;
    const requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    let baseUrl: string;
    try {
      baseUrl = consulBaseUrl(addr, opts.ssl);
    } catch (err) {
      throw new StoreError("open", addr, err);
    }
    const log = opts.log.child({ component: "store", backend: "consul", consul: baseUrl });
    const clientOptions = {
      baseUrl,
      timeout: requestTimeoutMs,
      defaults: { timeout: requestTimeoutMs, ...(token ? { token } : {}) },
    };
    const client = new Consul(clientOptions) as unknown as ConsulClient;
    const store = new ConsulStore(baseUrl, client, log, opts.watchWaitSeconds ?? DEFAULT_WATCH_WAIT_SECONDS, requestTimeoutMs, token ? [token] : []);
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
      this.client.transaction.create([{ KV: { Verb: "delete", Key: prefix } }, { KV: { Verb: "delete-tree", Key: `${prefix}/` } }]),
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
      onAnswer: () => this.answered(),
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
      onAnswer: () => this.answered(),
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
    let result: T;
    try {
      result = await request();
    } catch (err) {
      throw this.error(op, key, err);
    }
    this.answered();
    return result;
  }

  /** Consul answered: watches backing off after an outage ask again now. */
  private answered(): void {
    for (const watch of this.watches) watch.wake();
  }

  private error(op: string, key: string, err: unknown): StoreError {
    const endpoint = this.baseUrl.replace(/\/v1$/, "").replace(/^https?:\/\//, "");
    return consulStoreError(endpoint, op, key, err, { scrub: (text) => scrub(text, this.secrets) });
  }
}

export function openConsulStore(opts: ConsulStoreOptions): Promise<ConsulStore> {
  return ConsulStore.open(opts);
}

/** Removes secrets from text taken from a failure (a proxy or agent that echoes the request would put the token there). */
function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret !== "") out = out.split(secret).join("[redacted]");
  return out;
}
