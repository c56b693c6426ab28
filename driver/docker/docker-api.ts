/**
 * (Over 300 lines on purpose: the one home of talking to dockerd: version, networks, containers, events, and their errors.)
 *
 * This host's Docker daemon over its HTTP API on a unix socket: the handful
 * of calls the propagation of networks and the names of containers need.
 *
 * Design note.
 *  - Plain node:http rather than dockerode: six endpoints, and what matters is
 *    ours to control — the API version (no one version works on 20.10 and on
 *    29.0–29.2: we ask /_ping for the daemon's newest and use at most 1.44),
 *    per-call timeouts, and an event stream that ends cleanly when the daemon
 *    restarts.
 *  - The daemon binds its socket long before it serves it (plugins, networks
 *    and restart-policy containers come first): a call made then connects and
 *    hangs. `waitReady` pings with a long timeout and backs off; no driver or
 *    IPAM call ever waits for it.
 *  - Docker's JSON is read with zod here and turned into the domain's shapes
 *    (driver/contracts/docker.ts); unknown fields are ignored.
 */
import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { refuse, type Outcome } from "../errors.js";
import type { ContainerEndpoint, DaemonFacts, DockerEvent, DockerNetwork, DockerPort, NetworkSpec, RemoveResult } from "../contracts/docker.js";
import type { Logger } from "../../lib/log.js";
import { Backoff } from "../../lib/retry.js";
import { success } from "../../lib/result.js";
import { messageOf } from "../../lib/errors.js";

/** The newest API version we speak; older daemons (20.10: 1.41) are spoken to in theirs. */
const NEWEST_API = "1.44";
const CALL_TIMEOUT_MS = 15_000;
/** A daemon that is starting does not answer until it is done: wait long before calling it down. */
const PING_TIMEOUT_MS = 60_000;
const RECORD_SEPARATOR = new RegExp(`^${String.fromCharCode(0x1e)}`);

export interface DockerApiOptions {
  socketPath: string;
  log: Logger;
  callTimeoutMs?: number;
}

interface Reply {
  status: number;
  body: unknown;
  headers: http.IncomingHttpHeaders;
}

export class DockerApiError extends Error {
  constructor(
    readonly call: string,
    readonly status: number | undefined,
    message: string,
    options?: ErrorOptions,
  ) {
    super(`Docker API ${call}: ${message}`, options);
    this.name = "DockerApiError";
  }
}

const StringMap = z
  .record(z.string(), z.string())
  .nullish()
  .transform((m) => m ?? {});

const NetworkJson = z.object({
  Id: z.string(),
  Name: z.string(),
  Driver: z.string(),
  Internal: z.boolean().optional().default(false),
  Attachable: z.boolean().optional().default(false),
  Options: StringMap,
  Labels: StringMap,
  IPAM: z
    .object({
      Driver: z.string().optional().default(""),
      Options: StringMap,
      Config: z
        .array(z.object({ Subnet: z.string().optional(), IPRange: z.string().optional(), Gateway: z.string().optional() }))
        .nullish()
        .transform((c) => c ?? []),
    })
    .optional(),
  Containers: z.record(z.string(), z.unknown()).nullish(),
});

const ContainerJson = z.object({
  Name: z.string(),
  NetworkSettings: z
    .object({
      Networks: z
        .record(
          z.string(),
          z.object({
            NetworkID: z.string().optional().default(""),
            EndpointID: z.string().optional().default(""),
            Aliases: z.array(z.string()).nullish(),
            DNSNames: z.array(z.string()).nullish(),
          }),
        )
        .nullish(),
    })
    .optional(),
});

const EventJson = z.object({
  Type: z.string(),
  Action: z.string(),
  Actor: z.object({ ID: z.string(), Attributes: StringMap }),
});

export class DockerApi implements DockerPort {
  private version: string | undefined;
  private readonly agent = new http.Agent({ keepAlive: true });
  private readonly log: Logger;
  private readonly callTimeoutMs: number;

  constructor(private readonly opts: DockerApiOptions) {
    this.log = opts.log.child({ component: "docker-api" });
    this.callTimeoutMs = opts.callTimeoutMs ?? CALL_TIMEOUT_MS;
  }

  async waitReady(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff(500, 10_000);
    for (;;) {
      signal.throwIfAborted();
      try {
        const r = await this.raw("GET", "/_ping", undefined, { timeoutMs: PING_TIMEOUT_MS, signal });
        if (r.status === 200) {
          const newest = String(r.headers["api-version"] ?? NEWEST_API);
          const version = olderOf(newest, NEWEST_API);
          if (version !== this.version) this.log.info({ socket: this.opts.socketPath, daemonApi: newest, using: version }, "Docker API answers");
          this.version = version;
          return;
        }
        this.log.warn({ status: r.status }, "Docker API ping refused; retrying");
      } catch (err) {
        if (signal.aborted) throw err;
        this.log.debug({ err: messageOf(err) }, "Docker API not answering yet");
      }
      await sleep(backoff.next(), undefined, { signal });
    }
  }

  async daemonFacts(): Promise<DaemonFacts> {
    const version = z
      .object({ Version: z.string(), Components: z.array(z.object({ Name: z.string(), Version: z.string() })).nullish() })
      .parse((await this.call("GET", "/version", "reading the daemon's version")).body);
    const info = z.object({ LiveRestoreEnabled: z.boolean().optional() }).parse((await this.call("GET", "/info", "reading the daemon's info")).body);
    return {
      version: version.Version,
      liveRestore: info.LiveRestoreEnabled === true,
      runcVersion: version.Components?.find((c) => c.Name === "runc")?.Version,
    };
  }

  async networks(drivers: readonly string[]): Promise<DockerNetwork[]> {
    const filters = JSON.stringify({ driver: Object.fromEntries(drivers.map((d) => [d, true])) });
    const r = await this.call("GET", `/networks?filters=${encodeURIComponent(filters)}`, "listing networks");
    return z
      .array(NetworkJson)
      .parse(r.body)
      .flatMap((n) => toNetwork(n) ?? []);
  }

  async network(id: string): Promise<DockerNetwork | undefined> {
    const r = await this.call("GET", `/networks/${encodeURIComponent(id)}`, `inspecting network ${id}`, [404]);
    return r.status === 404 ? undefined : toNetwork(NetworkJson.parse(r.body));
  }

  async networkContainers(id: string): Promise<string[]> {
    const r = await this.call("GET", `/networks/${encodeURIComponent(id)}`, `inspecting network ${id}`, [404]);
    return r.status === 404 ? [] : Object.keys(NetworkJson.parse(r.body).Containers ?? {});
  }

  async createNetwork(spec: NetworkSpec): Promise<Outcome<string>> {
    const body = {
      Name: spec.name,
      CheckDuplicate: true,
      Driver: spec.driver,
      Internal: spec.internal,
      Attachable: spec.attachable,
      EnableIPv6: false,
      Options: spec.options,
      Labels: spec.labels,
      IPAM: {
        Driver: spec.ipamDriver,
        Options: spec.ipamOptions,
        Config: [{ Subnet: spec.subnet, Gateway: spec.gateway, ...(spec.ipRange === undefined ? {} : { IPRange: spec.ipRange }) }],
      },
    };
    const what = `creating network ${spec.name}`;
    const r = await this.call("POST", "/networks/create", what, [400, 403, 409], body);
    if (r.status === 201 || r.status === 200) return success(z.object({ Id: z.string() }).parse(r.body).Id);
    // 20.10 says 403, 25 and later 409, for "network with name X already exists".
    return refuse(r.status === 400 ? "bad-request" : "conflict", `${what}: ${daemonMessage(r.body)}`);
  }

  async removeNetwork(id: string): Promise<Outcome<RemoveResult>> {
    const r = await this.call("DELETE", `/networks/${encodeURIComponent(id)}`, `removing network ${id}`, [403, 404]);
    if (r.status === 404) return success("gone");
    if (r.status === 403) return success("in-use");
    return success("removed");
  }

  async container(id: string): Promise<{ name: string; endpoints: ContainerEndpoint[] } | undefined> {
    const r = await this.call("GET", `/containers/${encodeURIComponent(id)}/json`, `inspecting container ${id}`, [404]);
    if (r.status === 404) return undefined;
    const c = ContainerJson.parse(r.body);
    const name = c.Name.replace(/^\//, "");
    const endpoints = Object.values(c.NetworkSettings?.Networks ?? {})
      .filter((n) => n.EndpointID !== "")
      .map((n) => ({
        networkId: n.NetworkID,
        endpointId: n.EndpointID,
        names: [...new Set([name, ...(n.Aliases ?? []), ...(n.DNSNames ?? [])])],
      }));
    return { name, endpoints };
  }

  async events(onEvent: (e: DockerEvent) => void, signal: AbortSignal): Promise<void> {
    const filters = JSON.stringify({
      type: { network: true, container: true },
      event: { create: true, destroy: true, connect: true, disconnect: true, prune: true, start: true },
    });
    const path = `/v${this.apiVersion()}/events?filters=${encodeURIComponent(filters)}`;
    await new Promise<void>((resolve, reject) => {
      // Its own connection (no agent): a long-lived stream must not hold a pooled socket.
      const req = http.request({ socketPath: this.opts.socketPath, path, method: "GET", agent: false, signal }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new DockerApiError("events", res.statusCode, `HTTP ${res.statusCode}`));
          return;
        }
        let buffered = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          buffered += chunk;
          let nl: number;
          while ((nl = buffered.indexOf("\n")) >= 0) {
            // A json-seq record separator (RS, 0x1e) may lead each line.
            const line = buffered.slice(0, nl).replace(RECORD_SEPARATOR, "").trim();
            buffered = buffered.slice(nl + 1);
            if (line === "") continue;
            const e = toEvent(line);
            if (e !== undefined) onEvent(e);
          }
        });
        res.on("end", () => resolve());
        res.on("error", (err) => (signal.aborted ? resolve() : reject(err)));
      });
      req.on("error", (err) => (signal.aborted ? resolve() : reject(new DockerApiError("events", undefined, err.message, { cause: err }))));
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }

  private apiVersion(): string {
    return this.version ?? NEWEST_API;
  }

  /** A versioned call; statuses in `allowed` (and 2xx) come back, anything else is a DockerApiError. */
  private async call(method: string, path: string, what: string, allowed: number[] = [], body?: unknown): Promise<Reply> {
    let r: Reply;
    try {
      r = await this.raw(method, `/v${this.apiVersion()}${path}`, body, { timeoutMs: this.callTimeoutMs });
    } catch (err) {
      throw new DockerApiError(what, undefined, messageOf(err), { cause: err });
    }
    if ((r.status >= 200 && r.status < 300) || allowed.includes(r.status)) return r;
    throw new DockerApiError(what, r.status, `HTTP ${r.status}: ${daemonMessage(r.body)}`);
  }

  private raw(method: string, path: string, body: unknown, o: { timeoutMs: number; signal?: AbortSignal }): Promise<Reply> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          socketPath: this.opts.socketPath,
          path,
          method,
          agent: this.agent,
          timeout: o.timeoutMs,
          ...(o.signal === undefined ? {} : { signal: o.signal }),
          headers: payload === undefined ? {} : { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(payload) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let parsed: unknown = text;
            try {
              parsed = text === "" ? undefined : JSON.parse(text);
            } catch {
              // not JSON: keep the text (e.g. "OK" from /_ping)
            }
            resolve({ status: res.statusCode ?? 0, body: parsed, headers: res.headers });
          });
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer within ${o.timeoutMs} ms`)));
      req.on("error", reject);
      req.end(payload);
    });
  }
}

function toNetwork(n: z.infer<typeof NetworkJson>): DockerNetwork | undefined {
  const v4 = n.IPAM?.Config.find((c) => c.Subnet !== undefined && !c.Subnet.includes(":"));
  if (v4?.Subnet === undefined) return undefined;
  return {
    id: n.Id,
    name: n.Name,
    driver: n.Driver,
    subnet: v4.Subnet,
    gateway: (v4.Gateway ?? "").replace(/\/\d+$/, ""),
    ...(v4.IPRange === undefined || v4.IPRange === "" ? {} : { ipRange: v4.IPRange }),
    options: n.Options,
    labels: n.Labels,
    ipamDriver: n.IPAM?.Driver ?? "",
    ipamOptions: n.IPAM?.Options ?? {},
    internal: n.Internal,
    attachable: n.Attachable,
  };
}

function toEvent(line: string): DockerEvent | undefined {
  let e: z.infer<typeof EventJson>;
  try {
    e = EventJson.parse(JSON.parse(line));
  } catch {
    return undefined;
  }
  const a = e.Actor.Attributes;
  if (e.Type === "container") return e.Action === "start" ? { kind: "container-started", containerId: e.Actor.ID } : undefined;
  if (e.Type !== "network") return undefined;
  const driver = a.type ?? "";
  switch (e.Action) {
    case "create":
      return { kind: "network-created", networkId: e.Actor.ID, name: a.name ?? "", driver };
    case "destroy":
      return { kind: "network-destroyed", networkId: e.Actor.ID, name: a.name ?? "", driver };
    case "prune":
      return { kind: "networks-pruned" };
    case "connect":
    case "disconnect":
      return {
        kind: e.Action === "connect" ? "network-connected" : "network-disconnected",
        networkId: e.Actor.ID,
        containerId: a.container ?? "",
        driver,
      };
    default:
      return undefined;
  }
}

/** The daemon's words in an error reply ({"message": …}), or the reply as text. */
function daemonMessage(body: unknown): string {
  if (typeof body === "object" && body !== null && typeof (body as { message?: unknown }).message === "string") return (body as { message: string }).message;
  return typeof body === "string" ? body.trim() : JSON.stringify(body);
}

/** The older of two API versions ("1.41" < "1.44" < "1.100"). */
export function olderOf(a: string, b: string): string {
  const [am = 0, an = 0] = a.split(".").map(Number);
  const [bm = 0, bn = 0] = b.split(".").map(Number);
  return am < bm || (am === bm && an <= bn) ? a : b;
}
