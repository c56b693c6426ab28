import Consul from "consul";
import type { Logger } from "../../lib/log.js";
import { assertValidKey, Keyspace } from "./keyspace.js";
import { StoreError, type KV, type Store, type Watch } from "../contracts/store.js";
import { filterUnder, toKV, type ConsulClient, type ConsulKvItem } from "./consul-client.js";
import { clientTransport, endpointText, type ConsulConnection } from "./consul-connection.js";
import { consulStoreError } from "./consul-errors.js";
import { ConsulEphemeralKey } from "./consul-session.js";
import { ConsulWatch } from "./consul-watch.js";

const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
const DEFAULT_WATCH_WAIT_SECONDS = 30;

export interface ConsulStoreOptions {
  /** Where the agent is, TLS, ACL token (consul-connection.ts). */
  connection: ConsulConnection;
  log: Logger;
  /** Timeout of every non-blocking request (default 5 s). */
  requestTimeoutMs?: number;
  /** Max duration of one blocking query in `watch` (default 30 s). */
  watchWaitSeconds?: number;
}

/** Consul KV through the `consul` package (HTTP API). */
export class ConsulStore implements Store {
  private readonly watches = new Set<ConsulWatch>();
  private readonly answers = new Map<string, number>();
  private readonly ephemeralKeys = new Set<ConsulEphemeralKey>();
  private closed = false;

  private constructor(
    /** The agent in words ("https://127.0.0.1:8501"), as errors and logs name it. */
    readonly endpoint: string,
    private readonly client: ConsulClient,
    private readonly log: Logger,
    private readonly watchWaitSeconds: number,
    private readonly requestTimeoutMs: number,
    private readonly secrets: readonly string[],
    private readonly tls: boolean,
  ) {}

  /**
   * Connects and asks the agent for the cluster leader. An agent that cannot
   * answer (down, no leader) is logged, not fatal: the plugin must start and
   * serve from its host-private state while Consul is away, and every store
   * call says what is wrong when it fails. An agent that answers with a
   * refusal (an ACL, a TLS setting) is fatal: retrying will not change it.
   */
  static async open(opts: ConsulStoreOptions): Promise<ConsulStore> {
    const { connection } = opts;
    const requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const endpoint = endpointText(connection.endpoint);
    const log = opts.log.child({ component: "store", backend: "consul", consul: endpoint });
    const { baseUrl, agent, socketPath } = clientTransport(connection);
    const token = connection.token?.reveal();
    // baseUrl, socketPath and timeout are papi's options, which the package's typings leave out.
    const clientOptions = {
      baseUrl,
      agent,
      ...(socketPath === undefined ? {} : { socketPath }),
      timeout: requestTimeoutMs,
      defaults: { timeout: requestTimeoutMs, ...(token ? { token } : {}) },
    };
    const client = new Consul(clientOptions) as unknown as ConsulClient;
    const store = new ConsulStore(
      endpoint,
      client,
      log,
      opts.watchWaitSeconds ?? DEFAULT_WATCH_WAIT_SECONDS,
      requestTimeoutMs,
      token ? [token] : [],
      connection.endpoint.https,
    );
    try {
      const leader = await client.status.leader();
      if (!leader) log.warn("consul reachable but has no cluster leader yet; writes will fail until one is elected");
    } catch (err) {
      const error = store.error("open", endpoint, err);
      if (!error.transient) {
        client.destroy();
        throw error;
      }
      log.warn({ err: error.message }, "consul is not answering yet; starting anyway");
    }
    const { tls } = connection;
    log.info(
      {
        tokenSet: token !== undefined && token !== "",
        ...(connection.endpoint.https
          ? {
              tls: {
                ca: tls.ca === undefined ? "built-in public CAs" : "given",
                clientCert: tls.client !== undefined,
                verify: tls.verify,
                ...(tls.serverName === undefined ? {} : { serverName: tls.serverName }),
              },
            }
          : {}),
      },
      "consul store opened",
    );
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
      onDelivered: () => this.answers.set(prefix, (this.answers.get(prefix) ?? 0) + 1),
    });
    this.watches.add(watch);
    return watch;
  }

  watchAnswers(): ReadonlyMap<string, number> {
    return this.answers;
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
    return consulStoreError(this.endpoint, op, key, err, { scrub: (text) => scrub(text, this.secrets), tls: this.tls });
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
