import http from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DockerApi, olderOf } from "../../driver/docker/docker-api.js";
import type { DockerEvent } from "../../driver/contracts/docker.js";
import { createLogger } from "../../lib/log.js";
import { eventually } from "../support/eventually.js";

// The adapter's own logic — version negotiation, Docker's JSON into the
// domain's shapes, the event stream's framing, status codes into outcomes —
// against canned answers on a unix socket. What real daemons answer is the
// e2e tests' business (all three Docker versions).
const log = createLogger("silent");
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

async function daemon(apiVersion: string, routes: Record<string, Handler>): Promise<{ api: DockerApi; seen: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), "tso-docker-api-"));
  const socketPath = join(dir, "docker.sock");
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    res.setHeader("Api-Version", apiVersion);
    const key = `${req.method} ${(req.url ?? "").replace(/^\/v[\d.]+/, "").replace(/\?.*$/, "")}`;
    const h = routes[key];
    if (h === undefined) {
      res.statusCode = 404;
      res.end(JSON.stringify({ message: `no route ${key}` }));
      return;
    }
    h(req, res);
  });
  await new Promise<void>((r) => server.listen(socketPath, r));
  const api = new DockerApi({ socketPath, log });
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  cleanups.push(() => {
    server.closeAllConnections();
    api.close();
  });
  return { api, seen };
}

const json =
  (status: number, body: unknown): Handler =>
  (_req, res) => {
    res.statusCode = status;
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify(body));
  };
const ok = (_req: http.IncomingMessage, res: http.ServerResponse) => res.end("OK");

const NETWORK = {
  Id: "n1",
  Name: "web",
  Driver: "tsoverlay",
  Internal: false,
  Attachable: true,
  Options: { mtu: "1400" },
  Labels: null,
  IPAM: { Driver: "tsoverlay", Options: { name: "web" }, Config: [{ Subnet: "10.80.0.0/24", IPRange: "10.80.0.128/25", Gateway: "10.80.0.1" }] },
  Containers: { c1: {}, c2: {} },
};

describe("the Docker API adapter", () => {
  it("speaks the daemon's version when it is older than 1.44, and 1.44 to newer ones", async () => {
    expect(olderOf("1.41", "1.44")).toBe("1.41");
    expect(olderOf("1.52", "1.44")).toBe("1.44");
    expect(olderOf("1.100", "1.44")).toBe("1.44");
    for (const [daemonVersion, used] of [
      ["1.41", "/v1.41/"],
      ["1.56", "/v1.44/"],
    ] as const) {
      const { api, seen } = await daemon(daemonVersion, { "GET /_ping": ok, "GET /networks": json(200, []) });
      await api.waitReady(new AbortController().signal);
      await api.networks(["tsoverlay"]);
      expect(seen[0]).toBe("GET /_ping");
      expect(seen[1]).toMatch(new RegExp(`^GET ${used.replace(/\./g, "\\.")}networks\\?filters=`));
      expect(decodeURIComponent(seen[1]!.split("filters=")[1]!)).toBe('{"driver":{"tsoverlay":true}}');
    }
  });

  it("reads networks and containers into the domain's shapes", async () => {
    const { api } = await daemon("1.44", {
      "GET /_ping": ok,
      "GET /networks/n1": json(200, NETWORK),
      "GET /containers/c1/json": json(200, {
        Name: "/app",
        NetworkSettings: {
          Networks: {
            web: { NetworkID: "n1", EndpointID: "e1", Aliases: ["api", "app"], DNSNames: ["app", "api", "0123456789ab"] },
            bridge: { NetworkID: "b", EndpointID: "" },
          },
        },
      }),
    });
    await api.waitReady(new AbortController().signal);
    expect(await api.network("n1")).toEqual({
      id: "n1",
      name: "web",
      driver: "tsoverlay",
      subnet: "10.80.0.0/24",
      gateway: "10.80.0.1",
      ipRange: "10.80.0.128/25",
      options: { mtu: "1400" },
      labels: {},
      ipamDriver: "tsoverlay",
      ipamOptions: { name: "web" },
      internal: false,
      attachable: true,
    });
    expect(await api.network("nope")).toBeUndefined();
    expect(await api.networkContainers("n1")).toEqual(["c1", "c2"]);
    expect(await api.container("c1")).toEqual({ name: "app", endpoints: [{ networkId: "n1", endpointId: "e1", names: ["app", "api", "0123456789ab"] }] });
  });

  it("turns Docker's answers to create and remove into outcomes", async () => {
    let body = "";
    const { api } = await daemon("1.41", {
      "GET /_ping": ok,
      "POST /networks/create": (req, res) => {
        req.on("data", (c: Buffer) => (body += c.toString()));
        req.on("end", () => json(403, { message: "network with name web already exists" })(req, res));
      },
      "DELETE /networks/busy": json(403, { message: "network busy has active endpoints" }),
      "DELETE /networks/gone": json(404, { message: "no such network" }),
      "DELETE /networks/n1": (_req, res) => {
        res.statusCode = 204;
        res.end();
      },
    });
    await api.waitReady(new AbortController().signal);
    const spec = {
      name: "web",
      driver: "tsoverlay",
      subnet: "10.80.0.0/24",
      gateway: "10.80.0.1",
      options: {},
      labels: { a: "b" },
      ipamDriver: "tsoverlay",
      ipamOptions: {},
      internal: true,
      attachable: false,
    };
    expect(await api.createNetwork(spec)).toEqual({
      ok: false,
      error: { cause: "conflict", message: "creating network web: network with name web already exists" },
    });
    expect(JSON.parse(body)).toMatchObject({
      Name: "web",
      CheckDuplicate: true,
      Internal: true,
      Labels: { a: "b" },
      IPAM: { Driver: "tsoverlay", Config: [{ Subnet: "10.80.0.0/24", Gateway: "10.80.0.1" }] },
    });
    expect(await api.removeNetwork("busy")).toEqual({ ok: true, value: "in-use" });
    expect(await api.removeNetwork("gone")).toEqual({ ok: true, value: "gone" });
    expect(await api.removeNetwork("n1")).toEqual({ ok: true, value: "removed" });
  });

  it("streams events across chunk boundaries and json-seq separators, and ends with the stream", async () => {
    const lines = [
      { Type: "network", Action: "create", Actor: { ID: "n1", Attributes: { name: "web", type: "tsoverlay" } } },
      { Type: "container", Action: "start", Actor: { ID: "c1", Attributes: { name: "app" } } },
      { Type: "network", Action: "connect", Actor: { ID: "n1", Attributes: { name: "web", type: "tsoverlay", container: "c1" } } },
      { Type: "container", Action: "create", Actor: { ID: "c2", Attributes: {} } },
      { Type: "network", Action: "prune", Actor: { ID: "", Attributes: { reclaimed: "0" } } },
      { Type: "network", Action: "destroy", Actor: { ID: "n1", Attributes: { name: "web", type: "tsoverlay" } } },
    ];
    const { api } = await daemon("1.52", {
      "GET /_ping": ok,
      "GET /events": (_req, res) => {
        res.setHeader("Content-Type", "application/jsonl");
        const text = lines.map((l, i) => (i % 2 === 0 ? "\x1e" : "") + JSON.stringify(l) + "\n").join("") + "not json\n";
        // Split mid-line, in a few writes.
        res.write(text.slice(0, 40));
        res.write(text.slice(40, 170));
        setTimeout(() => res.end(text.slice(170)), 20);
      },
    });
    await api.waitReady(new AbortController().signal);
    const got: DockerEvent[] = [];
    await api.events((e) => got.push(e), new AbortController().signal);
    expect(got).toEqual([
      { kind: "network-created", networkId: "n1", name: "web", driver: "tsoverlay" },
      { kind: "container-started", containerId: "c1" },
      { kind: "network-connected", networkId: "n1", containerId: "c1", driver: "tsoverlay" },
      { kind: "networks-pruned" },
      { kind: "network-destroyed", networkId: "n1", name: "web", driver: "tsoverlay" },
    ]);
  });

  it("waits for a daemon that does not answer yet, and gives up when told to", async () => {
    const { api, seen } = await daemon("1.44", {});
    const stop = new AbortController();
    const waiting = api.waitReady(stop.signal);
    await eventually("a ping, answered with an error", () => seen.includes("GET /_ping"));
    stop.abort();
    await expect(waiting).rejects.toThrow();
  });
});
