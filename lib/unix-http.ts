/**
 * HTTP over a unix socket, with JSON bodies: how this project talks to local
 * daemons (Docker's API) and how its own socket is reached (the CLI, the
 * tests). Errors are Node's, or "no answer within …"; callers add what they
 * were doing and to whom.
 */
import http from "node:http";

export interface UnixRequestOptions {
  /** Sent as given (a JSON body adds its Content-Type; any body, its Content-Length). */
  headers?: http.OutgoingHttpHeaders;
  /** The request fails when the socket stays silent this long. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** A keep-alive agent whose connections to reuse; Node's global agent otherwise. */
  agent?: http.Agent;
}

export interface UnixReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The body parsed as JSON; undefined when it is empty or not JSON. */
  json: unknown;
}

/**
 * One request. `body`: a string is sent as is (the caller's headers say what
 * it is), anything else as JSON.
 */
export function request(socketPath: string, method: string, path: string, body: string | object | undefined, o: UnixRequestOptions): Promise<UnixReply> {
  const payload = body === undefined || typeof body === "string" ? body : JSON.stringify(body);
  const headers: http.OutgoingHttpHeaders = {
    ...(payload !== undefined && typeof body !== "string" ? { "Content-Type": "application/json" } : {}),
    ...(payload === undefined ? {} : { "Content-Length": Buffer.byteLength(payload) }),
    ...o.headers,
  };
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath,
        path,
        method,
        headers,
        timeout: o.timeoutMs,
        ...(o.agent === undefined ? {} : { agent: o.agent }),
        ...(o.signal === undefined ? {} : { signal: o.signal }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: parseJson(text) });
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${duration(o.timeoutMs)}`)));
    req.on("error", reject);
    req.end(payload);
  });
}

/**
 * A long-lived GET read line by line as it arrives (Docker's event stream),
 * on a connection of its own: a stream must not hold a pooled socket. Resolves
 * with the status when the answer ends, at once (body unread) when the status
 * is not 200, and when `signal` aborts (status 0 if none came yet). A last
 * line without its newline is dropped.
 */
export function streamLines(socketPath: string, path: string, onLine: (line: string) => void, o: { signal: AbortSignal }): Promise<number> {
  return new Promise((resolve, reject) => {
    let status = 0;
    const failed = (err: Error): void => (o.signal.aborted ? resolve(status) : reject(err));
    const req = http.request({ socketPath, path, method: "GET", agent: false, signal: o.signal }, (res) => {
      status = res.statusCode ?? 0;
      if (status !== 200) {
        res.resume();
        resolve(status);
        return;
      }
      let buffered = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buffered += chunk;
        let nl: number;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          onLine(line);
        }
      });
      res.on("end", () => resolve(status));
      res.on("error", failed);
    });
    req.on("error", failed);
    req.end();
  });
}

function parseJson(text: string): unknown {
  if (text === "") return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function duration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
