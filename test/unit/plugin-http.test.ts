import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../lib/log.js";
import { createApp } from "../../plugin/http/app.js";
import { ok } from "../../plugin/http/answer.js";
import { listenUnix, type Listener } from "../../plugin/http/listen.js";
import { ReadinessGate } from "../../plugin/readiness.js";
import { buildRoutes } from "../../plugin/routes/index.js";
import { postPlugin } from "../support/plugin-client.js";

const dir = mkdtempSync(join(tmpdir(), "tso-http-"));
const sock = join(dir, "plugin.sock");
const seen: unknown[] = [];
let listener: Listener;

beforeAll(async () => {
  const routes = new Map(buildRoutes(new ReadinessGate()));
  routes.set("/Test.Echo", (body: unknown) => {
    seen.push(body);
    return ok({ got: body });
  });
  routes.set("/Test.Throw", () => {
    throw new Error("boom");
  });
  listener = await listenUnix(createApp(routes, createLogger("silent")), sock);
});

afterAll(async () => {
  await listener.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("plugin HTTP edge", () => {
  it("answers Plugin.Activate with both interfaces in the plugin media type", async () => {
    const r = await postPlugin(sock, "/Plugin.Activate");
    expect(r.status).toBe(200);
    expect(r.contentType).toMatch(/^application\/vnd\.docker\.plugins\.v1\.2\+json/);
    expect(r.body).toEqual({ Implements: ["NetworkDriver", "IpamDriver"] });
  });

  it("parses a JSON body sent without any Content-Type", async () => {
    const r = await postPlugin(sock, "/Test.Echo", '{"a":1}');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ got: { a: 1 } });
  });

  it("treats an empty body as an empty object", async () => {
    const r = await postPlugin(sock, "/Test.Echo", "");
    expect(r.body).toEqual({ got: {} });
  });

  it("answers unknown paths with 404 and an Err, then keeps serving", async () => {
    const r = await postPlugin(sock, "/NetworkDriver.NoSuchThing", "{}");
    expect(r.status).toBe(404);
    expect(r.body).toMatchObject({ Err: expect.stringContaining("/NetworkDriver.NoSuchThing") });
    const again = await postPlugin(sock, "/Plugin.Activate");
    expect(again.status).toBe(200);
  });

  it("answers malformed JSON with an Err (and Error, for IPAM) and keeps serving", async () => {
    const r = await postPlugin(sock, "/NetworkDriver.CreateNetwork", '{"NetworkID": ');
    expect(r.status).toBe(400);
    const body = r.body as { Err: string; Error: string };
    expect(body.Err).toMatch(/malformed JSON/);
    expect(body.Error).toBe(body.Err);
    expect((await postPlugin(sock, "/Plugin.Activate")).status).toBe(200);
  });

  it("turns a handler crash into an Err and keeps serving", async () => {
    const r = await postPlugin(sock, "/Test.Throw", "{}");
    expect(r.status).toBe(500);
    expect(r.body).toMatchObject({ Err: expect.stringContaining("boom") });
    expect((await postPlugin(sock, "/Plugin.Activate")).status).toBe(200);
  });

  it("rejects GET and other methods with an Err", async () => {
    const { get } = await import("node:http");
    const r = await new Promise<number>((resolve, reject) => {
      get({ socketPath: sock, path: "/Plugin.Activate" }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on("error", reject);
    });
    expect(r).toBe(404);
  });

  it("refuses an oversized body without crashing", async () => {
    const big = JSON.stringify({ x: "a".repeat(2 * 1024 * 1024) });
    const r = await postPlugin(sock, "/Test.Echo", big);
    expect(r.status).toBe(413);
    expect(r.body).toMatchObject({ Err: expect.any(String) });
    expect((await postPlugin(sock, "/Plugin.Activate")).status).toBe(200);
  });

  it("reports GetCapabilities as local scope (global fails outside swarm)", async () => {
    const r = await postPlugin(sock, "/NetworkDriver.GetCapabilities");
    expect(r.body).toMatchObject({ Scope: "local" });
  });

  it("validates CreateNetwork and names the bad field", async () => {
    const r = await postPlugin(sock, "/NetworkDriver.CreateNetwork", { NetworkID: "", IPv4Data: [] });
    expect(r.status).toBe(400);
    expect((r.body as { Err: string }).Err).toMatch(/CreateNetwork: invalid request: NetworkID/);
  });

  it("refuses a socket that another process still serves", async () => {
    await expect(listenUnix(createApp(new Map(), createLogger("silent")), sock)).rejects.toThrow(/another process is serving it/);
    expect(existsSync(sock)).toBe(true);
  });

  it("replaces a socket file left by a killed process", async () => {
    const stale = join(dir, "stale.sock");
    const child = spawn(process.execPath, ["-e", `require("net").createServer().listen(${JSON.stringify(stale)}, () => console.log("up"))`]);
    await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    expect(existsSync(stale)).toBe(true);
    const l = await listenUnix(createApp(buildRoutes(new ReadinessGate()), createLogger("silent")), stale);
    expect((await postPlugin(stale, "/Plugin.Activate")).status).toBe(200);
    await l.close();
    expect(existsSync(stale)).toBe(false);
  });
});
