/**
 * The ACL token never leaves the process except in the X-Consul-Token header:
 * not in a log line, not in an error's message, not in an error as inspected
 * (causes included). A fake Consul on loopback fails session destroys, KV
 * calls, renewals and blocking queries with 500s (and one 403 whose body echoes
 * the request, as a misbehaving proxy might); everything the store logs and
 * throws is searched for the token.
 *
 * The store logs through a bare pino logger, without lib/log.ts's safety net,
 * so that what is checked is the adapter's own hygiene; the safety net has its
 * own tests below.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { inspect } from "node:util";
import { pino } from "pino";
import { openConsulStore } from "../../driver/store/consul-store.js";
import { loadConfig } from "../../plugin/compose/config.js";
import { createLogger } from "../../lib/log.js";
import { messageOf } from "../../lib/errors.js";
import { Secret } from "../../lib/secret.js";
import type { StoreError } from "../../driver/contracts/store.js";
import { eventually } from "../support/eventually.js";

const TOKEN = "d3adb33f-5ec2-4e7a-9c1d-70ken5ecre70";

/** Lines written to it, as one string. */
function capture(): { stream: Writable; text: () => string } {
  let out = "";
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      out += chunk.toString();
      done();
    },
  });
  return { stream, text: () => out };
}

/** Everything an error can show: its message, and util.inspect of it with every cause. */
function shown(err: unknown): string {
  return `${messageOf(err)}\n${inspect(err, { depth: Infinity, showHidden: true })}`;
}

interface FakeConsul {
  server: Server;
  addr: string;
  /** The X-Consul-Token of every request, in order. */
  tokens: (string | undefined)[];
  paths: string[];
}

/**
 * Answers the leader, session creation, and key "ok/…" reads and acquires;
 * everything else fails: 500, or 403 echoing the request's headers for "echo/…".
 */
async function fakeConsul(): Promise<FakeConsul> {
  const tokens: (string | undefined)[] = [];
  const paths: string[] = [];
  let sessions = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? "";
    tokens.push(req.headers["x-consul-token"] as string | undefined);
    paths.push(`${req.method} ${url}`);
    const json = (status: number, body: unknown): void => void res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    if (url.startsWith("/v1/status/leader")) return json(200, "127.0.0.1:8300");
    if (url.startsWith("/v1/session/create")) return json(200, { ID: `session-${++sessions}` });
    if (req.method === "GET" && /^\/v1\/kv\/(eph|ok)[^?]*(\?(?!.*recurse).*)?$/.test(url)) return void res.writeHead(404).end();
    if (req.method === "PUT" && url.startsWith("/v1/kv/ok") && url.includes("acquire=")) return json(200, true);
    if (url.startsWith("/v1/kv/echo"))
      return void res.writeHead(403, { "content-type": "text/plain" }).end(`Permission denied; request headers: ${JSON.stringify(req.headers)}`);
    res.writeHead(500, { "content-type": "text/plain" }).end("rpc error making call: internal failure");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, addr: `127.0.0.1:${(server.address() as AddressInfo).port}`, tokens, paths };
}

describe("the ACL token stays out of logs and errors", () => {
  let consul: FakeConsul | undefined;
  afterEach(async () => {
    await new Promise<void>((resolve) => (consul ? consul.server.close(() => resolve()) : resolve()));
    consul = undefined;
  });

  it("when Consul fails session destroys, KV calls, renewals and watches", async () => {
    consul = await fakeConsul();
    const config = loadConfig({ CONSUL_HTTP_ADDR: consul.addr, CONSUL_HTTP_TOKEN: TOKEN });
    if (!config.ok) throw new Error(config.error);
    const logs = capture();
    const store = await openConsulStore({ connection: config.value.consul!, log: pino({ level: "trace" }, logs.stream) });
    const thrown: unknown[] = [];
    const keep = (err: unknown): void => void thrown.push(err);

    // The acquire fails (500), then the session destroy fails (500) and is logged.
    await store.putEphemeral("eph", "v", 10).catch(keep);
    await store.get("other").catch(keep);
    await store.put("other", "1").catch(keep);
    await store.cas("other", "1", 3).catch(keep);
    await store.delete("other").catch(keep);
    await store.deleteTree("other").catch(keep);
    await store.list("other").catch(keep);
    await store.put("echo/a", "1").catch(keep);
    // Held; its renewal (every TTL/3) fails, and so does its release at close.
    const held = await store.putEphemeral("ok/host", "v", 1);
    const watchErrors: Error[] = [];
    const watch = store.watch(
      "failing/",
      () => undefined,
      (err) => watchErrors.push(err),
    );
    await eventually(
      "a failed renewal and a failed watch query in the log",
      () => /renewing ephemeral key's session failed/.test(logs.text()) && watchErrors.length > 0,
    );
    watch.stop();
    expect(held.key).toBe("ok/host");
    await store.close();

    // Every request carried the token: what follows is not vacuous.
    expect(consul.tokens.length).toBeGreaterThan(10);
    expect(new Set(consul.tokens)).toEqual(new Set([TOKEN]));
    expect(consul.paths).toContain("PUT /v1/session/destroy/session-1");
    expect(thrown).toHaveLength(8);
    // The token is nowhere.
    const log = logs.text();
    expect(log).not.toContain(TOKEN);
    for (const err of [...thrown, ...watchErrors]) expect(shown(err)).not.toContain(TOKEN);
    // And the failures are all there, in words.
    expect(log).toMatch(/destroying session failed; it will expire by TTL/);
    expect(log).toMatch(/releasing ephemeral key at close failed/);
    expect(log).toMatch(/consul watch failed; retrying/);
    expect(messageOf(thrown[0])).toMatch(
      /^store putEphemeral eph: Consul at 127\.0\.0\.1:\d+ cannot reach its servers \(rpc error making call: internal failure\)$/,
    );
    expect(messageOf(thrown[7])).toMatch(
      /^store put echo\/a: Consul at 127\.0\.0\.1:\d+ refused the request: HTTP 403: Permission denied; request headers: .*\[redacted\]/,
    );
    // The causes the store keeps are its own words and codes, not the client's error.
    const cause = (thrown[1] as StoreError).cause as Error;
    expect(cause.name).toBe("ConsulError");
    expect(Object.keys(cause).sort()).toEqual(["code", "name", "statusCode"]);
  });

  it("the configuration shows no token: not as JSON, not inspected", () => {
    const config = loadConfig({ CONSUL_HTTP_ADDR: "127.0.0.1:8500", CONSUL_HTTP_TOKEN: TOKEN });
    if (!config.ok) throw new Error(config.error);
    expect(config.value.consul?.token?.reveal()).toBe(TOKEN);
    expect(JSON.stringify(config.value)).not.toContain(TOKEN);
    expect(inspect(config.value, { depth: Infinity })).not.toContain(TOKEN);
    expect(String(config.value.consul?.token)).toBe("[redacted]");
  });
});

describe("the logger's safety net (lib/log.ts)", () => {
  /** What an HTTP client error looks like: the request it made, with its raw header block. */
  function clientError(): Error {
    const request = {
      method: "PUT",
      path: "/v1/session/destroy/x",
      _header: `PUT /v1/session/destroy/x HTTP/1.1\r\nx-consul-token: ${TOKEN}\r\n\r\n`,
      headers: { "x-consul-token": TOKEN },
    };
    return Object.assign(new Error("internal server error"), {
      statusCode: 500,
      response: { statusCode: 500, req: request },
      request,
      config: { headers: { "x-consul-token": TOKEN } },
    });
  }

  it("drops transport objects from logged errors and redacts token fields and headers", () => {
    const logs = capture();
    const log = createLogger("info", { destination: logs.stream });
    log.warn({ err: clientError() }, "a client error");
    log.warn({ err: new Error("wrapped", { cause: clientError() }) }, "a wrapped client error");
    log.info({ token: TOKEN, request: { headers: { "x-consul-token": TOKEN, authorization: `Bearer ${TOKEN}` } } }, "fields");
    const text = logs.text();
    expect(text).not.toContain(TOKEN);
    const [first, , third] = text
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    // Still useful: the words and the status survive.
    expect(first!.err).toMatchObject({ message: "internal server error", statusCode: 500, type: "Error" });
    expect(third).toMatchObject({ token: "[redacted]", request: { headers: { "x-consul-token": "[redacted]", authorization: "[redacted]" } } });
  });

  it("replaces a known secret wherever it appears, whatever carried it", () => {
    const logs = capture();
    const log = createLogger("info", { destination: logs.stream, secrets: [TOKEN] }).child({ component: "x" });
    log.error({ note: `a message that quotes the token ${TOKEN}`, nested: { deep: { deeper: [TOKEN] } } }, `and the message too: ${TOKEN}`);
    log.info({ secret: new Secret(TOKEN) }, "a Secret logs as redacted");
    const text = logs.text();
    expect(text).not.toContain(TOKEN);
    expect(text.match(/\[redacted\]/g)).toHaveLength(4);
  });
});
