import { createLogger } from "../driver/log.js";
import { NetworkCatalog } from "../driver/network/network-catalog.js";
import { loadConfig } from "./config.js";
import { createApp } from "./http/app.js";
import { listenUnix, type Listener } from "./http/listen.js";
import { buildRoutes } from "./routes.js";

/**
 * Process entry: the same program runs as a managed plugin (config.json) and
 * as a host service. Sockets are opened first: a managed plugin has ~10 s
 * after start before the daemon gives up on it.
 */
async function main(): Promise<void> {
  const cfg = loadConfig(process.env);
  if (!cfg.ok) {
    createLogger("info").fatal({ err: cfg.error }, "cannot start");
    process.exit(2);
  }
  const config = cfg.config;
  const log = createLogger(config.logLevel);

  const app = createApp(buildRoutes({ networks: new NetworkCatalog() }), log);
  const listeners: Listener[] = [];
  for (const path of config.sockets) {
    try {
      listeners.push(await listenUnix(app, path));
      log.info({ socket: path }, "serving plugin protocol");
    } catch (e) {
      log.fatal({ socket: path, err: (e as Error).message }, "cannot listen");
      process.exit(1);
    }
  }

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "stopping");
    await Promise.all(listeners.map((l) => l.close()));
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

void main();
