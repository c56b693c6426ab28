/**
 * The Consul store adapter against real Consul agents that this file starts
 * (loopback only, free ports) and kills: a dev-mode server, one frozen with
 * SIGSTOP, one that never gets a leader, one with ACLs. The binary comes from
 * $TSOVERLAY_CONSUL_BIN; a missing binary fails the suite, it is not skipped.
 * The dev-mode server answers the Store contract (test/support/store-contract.ts),
 * the same cases the in-memory fake and the embedded store answer; below it are
 * what only Consul has: sessions and TTLs, independent clients, outages, ACLs.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../plugin/compose/config.js";
import { createLogger } from "../../lib/log.js";
import { openConsulStore, type ConsulStore } from "../../driver/store/consul-store.js";
import type { ConsulConnection } from "../../driver/store/consul-connection.js";
import { StoreError, type KV } from "../../driver/contracts/store.js";
import { eventually, quiet } from "../support/eventually.js";
import { freePorts } from "../support/free-ports.js";
import { storeContract } from "../support/store-contract.js";

const CONSUL_BIN = process.env.TSOVERLAY_CONSUL_BIN ?? "/var/cache/tsoverlay/consul-v1.20.6/consul";
const log = createLogger(process.env.TSOVERLAY_LOG_LEVEL ?? "silent");

/** The connection the plugin's configuration makes of CONSUL_HTTP_ADDR (and `more` settings). */
function consulAt(addr: string, more: Record<string, string> = {}): ConsulConnection {
  const config = loadConfig({ CONSUL_HTTP_ADDR: addr, ...more });
  if (!config.ok) throw new Error(config.error);
  if (config.value.consul === undefined) throw new Error(`no Consul connection from ${addr}`);
  return config.value.consul;
}

interface Agent {
  addr: string;
  process: ChildProcess;
  output: () => string;
}

/**
 * A real Consul agent on free loopback ports. By default a dev-mode server
 * (elects itself at once). `leaderless`: a server that expects a second server
 * which never comes, so it never has a leader and answers every KV request
 * with a 500. `hcl`: extra configuration (ACLs).
 */
async function startConsulAgent(opts: { leaderless?: boolean; hcl?: string } = {}): Promise<Agent> {
  if (!existsSync(CONSUL_BIN)) {
    throw new Error(`Consul binary not found at ${CONSUL_BIN}; set TSOVERLAY_CONSUL_BIN to a consul executable`);
  }
  // A port can be taken between freePorts and Consul's bind: then it exits at once saying so, and gets new ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startConsulOnFreePorts(opts);
    } catch (err) {
      if (attempt === 3 || !(err instanceof PortTaken)) throw err;
    }
  }
}

/** Consul exited at start because a port it was given was no longer free. */
class PortTaken extends Error {}

async function startConsulOnFreePorts(opts: { leaderless?: boolean; hcl?: string }): Promise<Agent> {
  const [http, serfLan, serfWan, server] = await freePorts(4, { udp: true });
  // Without a leader a server holds each request up to rpc_hold_timeout (7 s by default), then answers 500.
  const mode = opts.leaderless
    ? ["-server", "-bootstrap-expect", "2", "-data-dir", mkdtempSync(join(tmpdir(), "tso-consul-")), "-hcl", 'performance { rpc_hold_timeout = "1s" }']
    : ["-dev"];
  const args = [
    "agent",
    ...mode,
    "-bind",
    "127.0.0.1",
    "-client",
    "127.0.0.1",
    "-http-port",
    String(http),
    "-dns-port",
    "-1",
    "-grpc-port",
    "-1",
    "-serf-lan-port",
    String(serfLan),
    "-serf-wan-port",
    String(serfWan),
    "-server-port",
    String(server),
    // Lets the TTL-expiry test use a 2 s session instead of the 10 s minimum.
    "-hcl",
    'session_ttl_min = "1s"',
    ...(opts.hcl === undefined ? [] : ["-hcl", opts.hcl]),
    "-log-level",
    "warn",
  ];
  const child = spawn(CONSUL_BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  let exited: string | undefined;
  child.once("exit", (code, signal) => (exited = `consul exited (code ${code}, signal ${signal})`));
  child.once("error", (err) => (exited = `consul failed to start: ${err.message}`));

  const addr = `127.0.0.1:${http}`;
  try {
    await eventually(
      opts.leaderless ? "the consul agent to answer" : "the consul agent to elect itself leader",
      async () => {
        if (exited !== undefined) return "exited"; // stop waiting at once: nothing will answer
        const res = await fetch(`http://${addr}/v1/status/leader`);
        const leader = (await res.json()) as string;
        return leader !== "" || opts.leaderless === true;
      },
      { timeoutMs: 30_000, everyMs: 100 },
    );
    if (exited !== undefined) throw new Error(exited);
  } catch (err) {
    if (child.pid !== undefined && !exited) process.kill(child.pid, "SIGKILL");
    const message = `${exited ?? (err as Error).message}\n${output}`;
    if (exited !== undefined && /address already in use/i.test(output)) throw new PortTaken(message, { cause: err });
    throw new Error(message, { cause: err });
  }
  return { addr, process: child, output: () => output };
}

async function stopConsulAgent(agent: Agent | undefined): Promise<void> {
  const pid = agent?.process.pid;
  if (!agent || pid === undefined || agent.process.exitCode !== null || agent.process.signalCode !== null) return;
  const exited = new Promise((resolve) => agent.process.once("exit", resolve));
  process.kill(pid, "SIGTERM");
  const killTimer = setTimeout(() => process.kill(pid, "SIGKILL"), 5_000);
  await exited;
  clearTimeout(killTimer);
}

describe("ConsulStore against a real agent", () => {
  let agent: Agent | undefined;
  let store: ConsulStore;
  let other: ConsulStore;
  let testNumber = 0;
  // Every case works under its own prefix so no case sees another's keys.
  const fresh = (): string => `t${++testNumber}/`;

  beforeAll(async () => {
    agent = await startConsulAgent();
    store = await openConsulStore({ connection: consulAt(agent.addr), log });
    other = await openConsulStore({ connection: consulAt(`http://${agent.addr}`), log });
  }, 60_000);

  afterAll(async () => {
    await store?.close();
    await other?.close();
    await stopConsulAgent(agent);
  }, 30_000);

  storeContract("ConsulStore", {
    // Two clients of the case's own (a case may close one), the second given as a URL.
    open: async () => {
      const caseStore = await openConsulStore({ connection: consulAt(agent!.addr), log });
      const caseOther = await openConsulStore({ connection: consulAt(`http://${agent!.addr}`), log });
      const dispose = async (): Promise<void> => {
        await caseStore.close();
        await caseOther.close();
      };
      return { store: caseStore, other: caseOther, ns: fresh(), dispose };
    },
    indexes: "increasing",
    watchDelivery: { withinMs: 1_000 },
    timeoutMs: 30_000,
  });

  describe("Consul's own: sessions with TTLs, independent clients", () => {
    it("an ephemeral key survives while renewed and expires after its TTL once renewal stops", async () => {
      const key = `${fresh()}hosts/a`;
      const ttlSeconds = 2;
      const handle = await store.putEphemeral(key, "alive", ttlSeconds);
      // Consul invalidates a session up to 2×TTL after the last renewal; 3×TTL proves renewal works.
      await quiet(ttlSeconds * 3 * 1000, "three TTLs: the key is still there only if renewal works");
      expect((await other.get(key))?.value).toBe("alive");

      handle.detach();
      const abandonedAt = Date.now();
      await eventually("the abandoned ephemeral key to expire", async () => (await other.get(key)) === undefined, {
        timeoutMs: ttlSeconds * 2 * 1000 + 5_000,
        everyMs: 100,
      });
      expect(Date.now() - abandonedAt).toBeGreaterThanOrEqual(ttlSeconds * 1000 - 500);
    }, 30_000);

    it("an ephemeral key comes back when its session is destroyed behind its back", async () => {
      const key = `${fresh()}hosts/a`;
      const handle = await store.putEphemeral(key, "alive", 3);
      const firstSession = handle.session!;
      const res = await fetch(`http://${agent!.addr}/v1/session/destroy/${firstSession}`, { method: "PUT" });
      expect(res.ok).toBe(true);
      expect(await other.get(key)).toBeUndefined();
      await eventually("the ephemeral key to be re-created", async () => (await other.get(key)) !== undefined, { timeoutMs: 10_000, everyMs: 100 });
      expect(handle.session).not.toBe(firstSession);
      await handle.release();
      expect(await other.get(key)).toBeUndefined();
    }, 20_000);

    it("a restarted owner takes over the session still holding its key: the key never disappears", async () => {
      const ns = fresh();
      const key = `${ns}hosts/a`;
      const previous = await store.putEphemeral(key, "before restart", 2);
      previous.detach(); // the process "dies": nobody renews the session any more
      const seen: (string | undefined)[] = [];
      const w = other.watch(`${ns}hosts`, (kvs) => seen.push(kvs.find((kv) => kv.key === key)?.value));
      const successor = await other.putEphemeral(key, "after restart", 2);
      expect(successor.session).toBe(previous.session);
      await quiet(5_000, "well past the 2 s TTL: the key must not lapse while the successor renews it");
      w.stop();
      expect((await store.get(key))?.value).toBe("after restart");
      expect(seen).not.toContain(undefined);
      await successor.release();
      expect(await store.get(key)).toBeUndefined();
    });

    it("close releases the client's ephemeral keys (another client sees them go) and stops its watches", async () => {
      const ns = fresh();
      const third = await openConsulStore({ connection: consulAt(agent!.addr), log });
      await third.putEphemeral(`${ns}hosts/a`, "alive", 10);
      const calls: KV[][] = [];
      third.watch(`${ns}hosts`, (kvs) => calls.push(kvs));
      await eventually("the initial watch call", () => calls.length > 0);
      await third.close();
      expect(await store.get(`${ns}hosts/a`)).toBeUndefined();
      await quiet(300, "the closed client's watch must not report its own release");
      expect(calls).toHaveLength(1);
      await expect(third.get(`${ns}hosts/a`)).rejects.toThrow(/store is closed/);
    });
  });
});

describe("ConsulStore failure modes (real agents that cannot answer)", () => {
  it("nothing listening: opening still works (the plugin must start without Consul), and a call fails at once saying the agent refused", async () => {
    const store = await openConsulStore({ connection: consulAt("127.0.0.1:1"), log });
    try {
      const started = Date.now();
      const error = await store.get("a/b").catch((err: unknown) => err);
      expect(error).toBeInstanceOf(StoreError);
      expect((error as StoreError).transient).toBe(true);
      expect((error as StoreError).unavailable).toBe("Consul at 127.0.0.1:1 refused the connection (is the agent running?)");
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      await store.close();
    }
  });

  it("an agent that is frozen (accepts connections, never answers) times out with a StoreError", async () => {
    const agent = await startConsulAgent();
    const store = await openConsulStore({ connection: consulAt(agent.addr), log, requestTimeoutMs: 1_000 });
    process.kill(agent.process.pid!, "SIGSTOP");
    try {
      // Every thread of the agent has stopped (a loaded machine can take a moment to deliver the stop to all of them).
      await eventually("the agent to be stopped", () => /^\d+ \(.*\) T /.test(readFileSync(`/proc/${agent.process.pid}/stat`, "utf8")), {
        timeoutMs: 5_000,
      });
      const started = Date.now();
      const error = await store.get("a/b").then(
        (v: unknown) => `answered ${JSON.stringify(v)}; agent output:\n${agent.output()}`,
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(StoreError);
      expect((error as StoreError).unavailable).toMatch(/^Consul at 127\.0\.0\.1:\d+ did not answer in time$/);
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      process.kill(agent.process.pid!, "SIGCONT");
      await store.close();
      await stopConsulAgent(agent);
    }
  });

  describe("a server without a leader", () => {
    let agent: Agent | undefined;
    beforeAll(async () => {
      agent = await startConsulAgent({ leaderless: true });
    });
    afterAll(async () => {
      await stopConsulAgent(agent);
    });

    it("opens, and every KV call fails with a StoreError that says there is no leader", async () => {
      const store = await openConsulStore({ connection: consulAt(agent!.addr), log });
      try {
        const error = await store.put("a/b", "v").catch((err: unknown) => err);
        expect(error).toBeInstanceOf(StoreError);
        expect((error as StoreError).transient).toBe(true);
        expect((error as StoreError).message).toMatch(/^store put a\/b: Consul at 127\.0\.0\.1:\d+ has no leader$/);
      } finally {
        await store.close();
      }
    });

    it("a failing watch reports errors through onError, retries with backoff, and is silent after stop", async () => {
      const store = await openConsulStore({ connection: consulAt(agent!.addr), log });
      const errors: Error[] = [];
      let changes = 0;
      const watch = store.watch(
        "net",
        () => changes++,
        (err) => errors.push(err),
      );
      // Each attempt is held by the server (about 1 s, longer on a loaded machine), then backoff 250, 500 ms:
      // three reports take at least 0.75 s of pauses plus the holds, never a hot loop.
      const started = Date.now();
      await eventually("three reported failures", () => errors.length >= 3, { timeoutMs: 20_000 });
      const took = Date.now() - started;
      watch.stop();
      const reported = errors.length;
      expect(took).toBeGreaterThanOrEqual(750);
      expect(reported).toBeLessThanOrEqual(4);
      expect(errors[0]).toBeInstanceOf(StoreError);
      expect(errors[0]!.message).toMatch(/^store watch net: Consul at .* has no leader/);
      await quiet(1_000, "a stopped watch must stay silent");
      expect(errors).toHaveLength(reported);
      expect(changes).toBe(0);
      await store.close();
    });
  });

  describe("an agent with ACLs (default deny)", () => {
    let agent: Agent | undefined;
    const token = "tsoverlay-test-management-token";
    beforeAll(async () => {
      agent = await startConsulAgent({ hcl: `acl { enabled = true\n default_policy = "deny"\n tokens { initial_management = "${token}" } }` });
    });
    afterAll(async () => {
      await stopConsulAgent(agent);
    });

    it("sends the token (CONSUL_HTTP_TOKEN, read by the plugin's config); without one the refusal is not mistaken for an outage", async () => {
      const config = loadConfig({ CONSUL_HTTP_ADDR: agent!.addr, CONSUL_HTTP_TOKEN: token });
      if (!config.ok) throw new Error(config.error);
      const explicit = await openConsulStore({ connection: config.value.consul!, log });
      await explicit.put("acl/a", "1");
      expect((await explicit.get("acl/a"))?.value).toBe("1");
      await explicit.close();

      const none = await openConsulStore({ connection: consulAt(agent!.addr), log });
      try {
        const error = await none.put("acl/b", "2").catch((err: unknown) => err);
        expect(error).toBeInstanceOf(StoreError);
        expect((error as StoreError).transient).toBe(false);
        expect((error as StoreError).message).toMatch(/^store put acl\/b: Consul at 127\.0\.0\.1:\d+ refused the request: HTTP 403/);
      } finally {
        await none.close();
      }
    });
  });
});
