import express, { type NextFunction, type Request, type Response } from "express";
import { scrubSecrets, type Logger } from "../../lib/log.js";
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

/** The answer could not be made ready (the secrets to scrub it of could not be had): nothing of it goes out. */
function unanswered(res: Response, log: Logger, name: string, err: unknown): void {
  log.error({ view: name, err: messageOf(err) }, "answer withheld");
  if (!res.headersSent) send(res, 500, errorBody(`${name}: the answer is withheld: ${messageOf(err)}`));
}

/** Read-only views served with GET /tsoverlay/<name>; a thrown error with a `status` (e.g. 503) answers with it. */
export type Views = Readonly<Record<string, (query: Readonly<Record<string, string>>) => Promise<unknown>>>;

/** Operator actions served with POST /tsoverlay/<name> (no body); errors as for views. */
export type Actions = Readonly<Record<string, () => Promise<unknown>>>;

export interface AppOptions {
  /**
   * Values scrubbed from every view's and action's answer, asked for each
   * answer (a key can be rotated): the ACL token, the WireGuard private key.
   * No view should hold one; this makes sure none is handed out.
   */
  secrets?: () => Promise<readonly string[]>;
}

/** The plugin's HTTP edge: POST /<Subsystem>.<Method>, JSON in, JSON out. */
export function createApp(routes: RouteTable, log: Logger, views: Views = {}, actions: Actions = {}, opts: AppOptions = {}): express.Express {
  const app = express();
  app.disable("x-powered-by");
  const answer = async (res: Response, status: number, body: unknown, type: string): Promise<void> => {
    const text = JSON.stringify(body);
    res
      .status(status)
      .type(type)
      .send(scrubSecrets(text, (await opts.secrets?.()) ?? []));
  };
  const failed = (res: Response, name: string, e: unknown): Promise<void> => {
    const status = (e as { status?: unknown }).status;
    return answer(res, typeof status === "number" ? status : 500, errorBody(`${name}: ${messageOf(e)}`), PLUGIN_MEDIA_TYPE);
  };
  // Not part of Docker's protocol: what `docker ps` cannot show for a remote driver
  // (published ports, the cluster), for the `tsoverlay` CLI and `curl --unix-socket …/tsoverlay.sock http://x/tsoverlay/status`.
  for (const [name, view] of Object.entries(views)) {
    app.get(`/tsoverlay/${name}`, async (req: Request, res: Response) => {
      const query = Object.fromEntries(Object.entries(req.query).flatMap(([k, v]) => (typeof v === "string" ? [[k, v]] : [])));
      let body: unknown;
      try {
        body = await view(query);
      } catch (e) {
        if (typeof (e as { status?: unknown }).status !== "number") log.error({ view: name, err: messageOf(e) }, "view failed");
        return failed(res, name, e).catch((err: unknown) => unanswered(res, log, name, err));
      }
      await answer(res, 200, body, "application/json").catch((err: unknown) => unanswered(res, log, name, err));
    });
  }
  for (const [name, action] of Object.entries(actions)) {
    app.post(`/tsoverlay/${name}`, async (_req: Request, res: Response) => {
      let body: unknown;
      try {
        body = await action();
      } catch (e) {
        log.error({ action: name, err: messageOf(e) }, "action failed");
        return failed(res, name, e).catch((err: unknown) => unanswered(res, log, name, err));
      }
      await answer(res, 200, body, "application/json").catch((err: unknown) => unanswered(res, log, name, err));
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
