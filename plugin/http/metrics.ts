import http from "node:http";
import type { Logger } from "../../lib/log.js";
import { CONTENT_TYPE, scrape } from "../../lib/metrics.js";
import type { Listener } from "./listen.js";
import { messageOf } from "../../lib/errors.js";

/**
 * The Prometheus endpoint: GET /metrics on a TCP address, only when one is
 * set (TSOVERLAY_METRICS_ADDR). A plain node server rather than the plugin's
 * express app: it serves one read-only path and none of the protocol.
 */
export async function listenMetrics(address: { host: string; port: number }, log: Logger): Promise<Listener> {
  const server = http.createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("only GET /metrics is served here\n");
      return;
    }
    scrape().then(
      (text) => res.writeHead(200, { "content-type": CONTENT_TYPE }).end(text),
      (e: unknown) => {
        log.error({ err: messageOf(e) }, "metrics scrape failed");
        res.writeHead(500, { "content-type": "text/plain" }).end(`scrape failed: ${messageOf(e)}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) => reject(new Error(`cannot serve metrics on ${address.host}:${address.port}: ${e.message}`)));
    server.listen(address.port, address.host, () => resolve());
  });
  return {
    path: `${address.host}:${address.port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
