import { messageOf } from "../../lib/errors.js";
import { request } from "../../lib/unix-http.js";

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
export async function postPlugin(socketPath: string, path: string, body?: string | object): Promise<PluginReply> {
  const payload = body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body);
  try {
    const r = await request(socketPath, "POST", path, payload, { headers: { Accept: "application/vnd.docker.plugins.v1.2+json" }, timeoutMs: 10_000 });
    return { status: r.status, contentType: String(r.headers["content-type"] ?? ""), body: r.json, raw: r.text };
  } catch (e) {
    throw new Error(`POST ${path} on ${socketPath}: ${messageOf(e)}`, { cause: e });
  }
}
