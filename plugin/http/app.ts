import express, { type NextFunction, type Request, type Response } from "express";
import type { Logger } from "../../lib/log.js";
import { metrics } from "../../lib/metrics.js";
import { errorBody, type Answer } from "./answer.js";
import { messageOf } from "../../lib/errors.js";

const PLUGIN_MEDIA_TYPE = "application/vnd.docker.plugins.v1.2+json";
const MAX_BODY_BYTES = 1024 * 1024;

export type Handler = (body: unknown) => Answer | Promise<Answer>;
export type RouteTable = ReadonlyMap<string, Handler>;

/** Parses a request body as JSON whatever its Content-Type: the daemon sends none. */
export function parseBody(raw: Buffer | undefined): { ok: true; value: unknown } | { ok: false; error: string } {
  if (raw === undefined || raw.length === 0) return { ok: true, value: {} };
  const text = raw.toString("utf8");
  if (text.trim().length === 0) return { ok: true, value: {} };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (e) {
    return { ok: false, error: `malformed JSON body: ${messageOf(e)}` };
  }
}

function send(res: Response, status: number, body: unknown): void {
  res.status(status).type(PLUGIN_MEDIA_TYPE).send(JSON.stringify(body));
}

/** The plugin's HTTP edge: POST /<Subsystem>.<Method>, JSON in, JSON out. */
/** Read-only views served with GET /tsoverlay/<name>; a thrown error with a `status` (e.g. 503) answers with it. */
export type Views = Readonly<Record<string, (query: Readonly<Record<string, string>>) => Promise<unknown>>>;

/** Operator actions served with POST /tsoverlay/<name> (no body); errors as for views. */
export type Actions = Readonly<Record<string, () => Promise<unknown>>>;

export function createApp(routes: RouteTable, log: Logger, views: Views = {}, actions: Actions = {}): express.Express {
  const app = express();
  app.disable("x-powered-by");
  // Not part of Docker's protocol: what `docker ps` cannot show for a remote driver
  // (published ports, the cluster), for the `tsoverlay` CLI and `curl --unix-socket …/tsoverlay.sock http://x/tsoverlay/status`.
  for (const [name, view] of Object.entries(views)) {
    app.get(`/tsoverlay/${name}`, async (req: Request, res: Response) => {
      const query = Object.fromEntries(Object.entries(req.query).flatMap(([k, v]) => (typeof v === "string" ? [[k, v]] : [])));
      try {
        res.json(await view(query));
      } catch (e) {
        const status = (e as { status?: unknown }).status;
        if (typeof status !== "number") log.error({ view: name, err: messageOf(e) }, "view failed");
        send(res, typeof status === "number" ? status : 500, errorBody(`${name}: ${messageOf(e)}`));
      }
    });
  }
  for (const [name, action] of Object.entries(actions)) {
    app.post(`/tsoverlay/${name}`, async (_req: Request, res: Response) => {
      try {
        res.json(await action());
      } catch (e) {
        const status = (e as { status?: unknown }).status;
        log.error({ action: name, err: messageOf(e) }, "action failed");
        send(res, typeof status === "number" ? status : 500, errorBody(`${name}: ${messageOf(e)}`));
      }
    });
  }
  app.use(express.raw({ type: () => true, limit: MAX_BODY_BYTES }));

  app.post("/:method", async (req: Request, res: Response) => {
    const path = `/${String(req.params.method)}`;
    const handler = routes.get(path);
    if (handler === undefined) {
      log.warn({ path }, "unknown plugin endpoint");
      send(res, 404, errorBody(`unknown plugin endpoint ${path}`));
      return;
    }
    const parsed = parseBody(Buffer.isBuffer(req.body) ? req.body : undefined);
    if (!parsed.ok) {
      log.warn({ path, err: parsed.error }, "rejected request");
      send(res, 400, errorBody(`${path}: ${parsed.error}`));
      return;
    }
    const started = process.hrtime.bigint();
    let answer: Answer;
    try {
      answer = await handler(parsed.value);
    } catch (e) {
      // A handler bug must not take the plugin down: answer and keep serving.
      log.error({ path, err: e }, "handler failed unexpectedly");
      answer = { ok: false, status: 500, error: `${path}: internal error: ${messageOf(e)}` };
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    metrics.driverCallSeconds.observe({ call: path.slice(1), result: answer.ok ? "ok" : "error" }, ms / 1000);
    if (answer.ok) {
      log.debug({ path, ms }, "request served");
      send(res, 200, answer.body);
    } else {
      log.warn({ path, ms, err: answer.error }, "request failed");
      send(res, answer.status, errorBody(answer.error));
    }
  });

  app.use((req: Request, res: Response) => {
    send(res, 404, errorBody(`unknown plugin endpoint ${req.method} ${req.path}`));
  });

  // Body-parser failures (oversized body, bad encoding) arrive here.
  app.use((err: Error & { status?: number }, req: Request, res: Response, _next: NextFunction) => {
    log.warn({ path: req.path, err: err.message }, "rejected request");
    send(res, err.status ?? 400, errorBody(`${req.path}: ${err.message}`));
  });

  return app;
}
