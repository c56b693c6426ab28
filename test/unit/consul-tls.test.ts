/**
 * The Consul store over TLS, from the settings to the wire: a fake agent on
 * loopback serves HTTPS with a certificate from a private CA and, like an agent
 * with `verify_incoming`, wants a client certificate from that CA. The store
 * is opened from the plugin's configuration (loadConfig), so what is tested is
 * what a plugin given these settings does. Also: an agent on a unix socket.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import http from "node:http";
import https from "node:https";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { openConsulStore, type ConsulStore } from "../../driver/store/consul-store.js";
import { StoreError } from "../../driver/contracts/store.js";
import { loadConfig } from "../../plugin/compose/config.js";
import { createLogger } from "../../lib/log.js";
import { messageOf } from "../../lib/errors.js";
import { makeTestPki, type TestPki } from "../support/test-pki.js";

const TOKEN = "0a1b2c3d-tls-test-token-5e6f7a8b9c0d";
const log = createLogger("silent");

interface Seen {
  token: string | undefined;
  clientCn: string | undefined;
  host: string | undefined;
}

/** Enough of Consul's HTTP API for the store: the leader, and KV reads and writes. */
function consulApi(seen: Seen[]): http.RequestListener {
  const kv = new Map<string, { value: string; index: number }>();
  let index = 1;
  return (req, res) => {
    const socket = req.socket as Partial<TLSSocket>;
    const peer = typeof socket.getPeerCertificate === "function" ? socket.getPeerCertificate() : undefined;
    const cn = peer?.subject?.CN;
    seen.push({ token: req.headers["x-consul-token"] as string | undefined, clientCn: Array.isArray(cn) ? cn[0] : cn, host: req.headers.host });
    const url = new URL(req.url ?? "/", "http://agent");
    const json = (status: number, body: unknown): void =>
      void res.writeHead(status, { "content-type": "application/json", "x-consul-index": String(index) }).end(JSON.stringify(body));
    if (url.pathname === "/v1/status/leader") return json(200, "127.0.0.1:8300");
    const key = decodeURIComponent(url.pathname.replace(/^\/v1\/kv\//, ""));
    if (req.method === "PUT") {
      let body = "";
      req.on("data", (chunk: Buffer) => (body += chunk.toString()));
      req.on("end", () => {
        kv.set(key, { value: body, index: ++index });
        json(200, true);
      });
      return;
    }
    const item = kv.get(key);
    if (item === undefined) return void res.writeHead(404).end();
    json(200, [{ Key: key, Value: Buffer.from(item.value).toString("base64"), ModifyIndex: item.index }]);
  };
}

function listen(server: http.Server, where: number | string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    if (typeof where === "string") server.listen(where, resolve);
    else server.listen(where, "127.0.0.1", resolve);
  });
}

function close(server: http.Server | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (server === undefined) return resolve();
    server.closeAllConnections();
    server.close(() => resolve());
  });
}

/** Opens a store from these settings, as the plugin would, and runs `use` on it. */
async function withStore<T>(env: Record<string, string>, use: (store: ConsulStore) => Promise<T>): Promise<T> {
  const config = loadConfig(env);
  if (!config.ok) throw new Error(config.error);
  const store = await openConsulStore({ connection: config.value.consul!, log, requestTimeoutMs: 2_000 });
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}

/** What opening and using a store with these settings fails with. */
async function failure(env: Record<string, string>): Promise<StoreError> {
  const err = await withStore(env, (store) => store.get("k")).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof StoreError)) throw new Error(`expected a StoreError, got ${err === undefined ? "success" : messageOf(err)}`);
  expect(messageOf(err)).not.toContain(TOKEN);
  return err;
}

describe("Consul over TLS with client certificates (verify_incoming)", () => {
  let pki: TestPki;
  let dir: string;
  let agent: https.Server | undefined;
  let port = 0;
  const seen: Seen[] = [];
  let full: Record<string, string>;

  beforeAll(async () => {
    pki = makeTestPki();
    dir = mkdtempSync(join(tmpdir(), "tso-tls-"));
    writeFileSync(join(dir, "token"), `${TOKEN}\n`);
    agent = https.createServer({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true }, consulApi(seen));
    await listen(agent, 0);
    port = (agent.address() as AddressInfo).port;
    full = {
      CONSUL_HTTP_ADDR: `https://127.0.0.1:${port}`,
      CONSUL_CACERT: pki.ca.certFile,
      CONSUL_CLIENT_CERT: pki.client.certFile,
      CONSUL_CLIENT_KEY: pki.client.keyFile,
      CONSUL_TLS_SERVER_NAME: "server.dc1.consul",
      CONSUL_HTTP_TOKEN_FILE: join(dir, "token"),
    };
  });
  afterAll(async () => {
    await close(agent);
    pki.remove();
    rmSync(dir, { recursive: true, force: true });
  });
  afterEach(() => void seen.splice(0));

  it("connects with the CA, the client certificate and its key; sends the token from the file", async () => {
    const value = await withStore(full, async (store) => {
      await store.put("tls/a", "1");
      return (await store.get("tls/a"))?.value;
    });
    expect(value).toBe("1");
    expect(seen.length).toBeGreaterThanOrEqual(3);
    expect(seen.every((s) => s.clientCn === "tsoverlay client" && s.token === TOKEN)).toBe(true);
  });

  it("checks the name the address gives when there is no CONSUL_TLS_SERVER_NAME (localhost is in the certificate)", async () => {
    const { CONSUL_TLS_SERVER_NAME: _, ...rest } = full;
    const value = await withStore({ ...rest, CONSUL_HTTP_ADDR: `localhost:${port}`, CONSUL_HTTP_SSL: "true" }, async (store) => {
      await store.put("tls/b", "2");
      return (await store.get("tls/b"))?.value;
    });
    expect(value).toBe("2");
  });

  it("without a client certificate: a clear error naming the settings, not an outage", async () => {
    const { CONSUL_CLIENT_CERT: _c, CONSUL_CLIENT_KEY: _k, ...noClient } = full;
    const err = await failure(noClient);
    expect(err.transient).toBe(false);
    expect(err.op).toBe("open");
    expect(err.message).toMatch(
      /^store open https:\/\/127\.0\.0\.1:\d+: Consul at https:\/\/127\.0\.0\.1:\d+: TLS: the agent refused the connection's client certificate, or wants one \(ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED\): with verify_incoming, set CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY/,
    );
  });

  it("with a client certificate the agent does not trust: the error points at the client certificate", async () => {
    const err = await failure({ ...full, CONSUL_CLIENT_CERT: pki.otherClient.certFile, CONSUL_CLIENT_KEY: pki.otherClient.keyFile });
    // The agent's alert or its closing the connection, whichever reaches the client first.
    expect(err.message).toMatch(/client certificate.*CONSUL_CLIENT_CERT/);
    expect(seen).toEqual([]);
  });

  it("with the wrong CA: verification fails, naming CONSUL_CACERT; nothing is sent", async () => {
    const err = await failure({ ...full, CONSUL_CACERT: pki.otherCa.certFile });
    expect(err.transient).toBe(false);
    expect(err.message).toMatch(
      /Consul at https:\/\/127\.0\.0\.1:\d+: TLS: the agent's certificate is not signed by a CA we trust \([A-Z_]+\): give the CA that signs it in CONSUL_CACERT or CONSUL_CAPATH$/,
    );
    expect(seen).toEqual([]);
  });

  it("with the wrong server name: verification fails, naming the names and CONSUL_TLS_SERVER_NAME; nothing is sent", async () => {
    const wrong = await failure({ ...full, CONSUL_TLS_SERVER_NAME: "other.example" });
    expect(wrong.transient).toBe(false);
    expect(wrong.message).toMatch(
      /TLS: the agent's certificate is not valid for the name we check: Host: other\.example\. is not in the cert's altnames: DNS:server\.dc1\.consul, DNS:localhost; set CONSUL_TLS_SERVER_NAME to a name the certificate holds$/,
    );
    // No server name: the address's IP is checked, and the certificate names none.
    const { CONSUL_TLS_SERVER_NAME: _, ...byIp } = full;
    expect((await failure(byIp)).message).toMatch(
      /TLS: the agent's certificate is not valid for the name we check: IP: 127\.0\.0\.1 is not in the cert's list; set CONSUL_TLS_SERVER_NAME/,
    );
    expect(seen).toEqual([]);
  });

  it("CONSUL_HTTP_SSL_VERIFY=false, Consul's own switch, connects without checking the agent's certificate", async () => {
    const { CONSUL_TLS_SERVER_NAME: _, ...unchecked } = full;
    const value = await withStore({ ...unchecked, CONSUL_CACERT: pki.otherCa.certFile, CONSUL_HTTP_SSL_VERIFY: "false" }, async (store) => {
      await store.put("tls/c", "3");
      return (await store.get("tls/c"))?.value;
    });
    expect(value).toBe("3");
  });

  it("https to an agent's plain HTTP port: says so", async () => {
    const plain = http.createServer(consulApi([]));
    await listen(plain, 0);
    try {
      const err = await failure({ ...full, CONSUL_HTTP_ADDR: `https://127.0.0.1:${(plain.address() as AddressInfo).port}` });
      expect(err.transient).toBe(false);
      expect(err.message).toMatch(
        /TLS: the agent does not answer TLS at this address \((EPROTO|ERR_SSL_[A-Z_]+)\): is it its HTTP port rather than its HTTPS port/,
      );
    } finally {
      await close(plain);
    }
  });
});

describe("Consul on a unix socket (unix:///path)", () => {
  let pki: TestPki;
  let dir: string;
  beforeAll(() => {
    pki = makeTestPki();
    dir = mkdtempSync(join(tmpdir(), "tso-unix-"));
  });
  afterAll(() => {
    pki.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  it("plain http over the socket", async () => {
    const seen: Seen[] = [];
    const socket = join(dir, "agent.sock");
    const agent = http.createServer(consulApi(seen));
    await listen(agent, socket);
    try {
      const value = await withStore({ CONSUL_HTTP_ADDR: `unix://${socket}`, CONSUL_HTTP_TOKEN: TOKEN }, async (store) => {
        await store.put("unix/a", "1");
        return (await store.get("unix/a"))?.value;
      });
      expect(value).toBe("1");
      expect(seen.length).toBeGreaterThanOrEqual(3);
      expect(seen.every((s) => s.token === TOKEN && s.host === "localhost")).toBe(true);
    } finally {
      await close(agent);
    }
  });

  it("https over the socket (CONSUL_HTTP_SSL=true), the name checked being CONSUL_TLS_SERVER_NAME", async () => {
    const seen: Seen[] = [];
    const socket = join(dir, "agent-tls.sock");
    const agent = https.createServer(
      { cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true },
      consulApi(seen),
    );
    await listen(agent, socket);
    try {
      const env = {
        CONSUL_HTTP_ADDR: `unix://${socket}`,
        CONSUL_HTTP_SSL: "true",
        CONSUL_CACERT: pki.ca.certFile,
        CONSUL_CLIENT_CERT: pki.client.certFile,
        CONSUL_CLIENT_KEY: pki.client.keyFile,
        CONSUL_TLS_SERVER_NAME: "server.dc1.consul",
      };
      const value = await withStore(env, async (store) => {
        await store.put("unix/b", "2");
        return (await store.get("unix/b"))?.value;
      });
      expect(value).toBe("2");
      expect(seen.every((s) => s.clientCn === "tsoverlay client")).toBe(true);
    } finally {
      await close(agent);
    }
  });

  it("no agent at the socket: an outage, named as such", async () => {
    const err = await failure({ CONSUL_HTTP_ADDR: `unix://${join(dir, "nobody.sock")}` });
    expect(err.transient).toBe(true);
    expect(err.unavailable).toBe(`Consul at unix://${join(dir, "nobody.sock")}: no such socket (is the agent running?)`);
  });
});
