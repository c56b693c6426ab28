import { request } from "node:http";

export interface PluginReply {
  status: number;
  contentType: string;
  body: unknown;
  raw: string;
}

/**
 * POSTs to a plugin socket the way the daemon does: Accept header, no
 * Content-Type, raw body.
 */
export function postPlugin(socketPath: string, path: string, body?: string | object): Promise<PluginReply> {
  const payload = body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        path,
        method: "POST",
        headers: { Accept: "application/vnd.docker.plugins.v1.2+json", "Content-Length": Buffer.byteLength(payload) },
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const raw = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown;
          try {
            parsed = JSON.parse(raw);
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, contentType: String(res.headers["content-type"] ?? ""), body: parsed, raw });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`POST ${path} on ${socketPath} timed out`)));
    req.on("error", reject);
    req.end(payload);
  });
}
