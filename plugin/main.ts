import { createLogger } from "../lib/log.js";
import { retry } from "../lib/retry.js";
import { loadConfig } from "./compose/config.js";
import { startDomain, type Domain } from "./compose/host.js";
import { createApp } from "./http/app.js";
import { listenUnix, type Listener } from "./http/listen.js";
import { listenMetrics } from "./http/metrics.js";
import { ReadinessGate } from "./readiness.js";
import { buildRoutes, clusterOf, doctorOf, peersOf, probeOf, statusOf } from "./routes/index.js";
import { messageOf } from "../lib/errors.js";

/**
 * Process entry: the same program runs as a managed plugin (config.json) and
 * as a host service. Sockets are opened first — a managed plugin has ~10 s
 * after start before the daemon gives up on it — then the domain is started,
 * retrying while the cluster store is unreachable; until then driver calls
 * are answered with the reason.
 */
async function main(): Promise<void> {
  const cfg = loadConfig(process.env);
  if (!cfg.ok) {
    createLogger("info").fatal({ err: cfg.error }, "cannot start");
    process.exit(2);
  }
  const config = cfg.value;
  const log = createLogger(config.logLevel);
  const gate = new ReadinessGate();

  const app = createApp(buildRoutes(gate), log, {
    status: () => statusOf(gate),
    cluster: () => clusterOf(gate),
    peers: () => peersOf(gate),
    doctor: () => doctorOf(gate),
    probe: (q) => probeOf(gate, q),
  });
  const listeners: Listener[] = [];
  for (const path of config.sockets) {
    try {
      listeners.push(await listenUnix(app, path));
      log.info({ socket: path }, "serving plugin protocol");
    } catch (e) {
      log.fatal({ socket: path, err: messageOf(e) }, "cannot listen");
      process.exit(1);
    }
  }

  if (config.metricsAddr !== undefined) {
    try {
      const l = await listenMetrics(config.metricsAddr, log);
      listeners.push(l);
      log.info({ address: l.path }, "serving Prometheus metrics on /metrics");
    } catch (e) {
      log.fatal({ err: messageOf(e) }, "cannot serve metrics");
      process.exit(1);
    }
  }

  // stop() may run before the start loop below assigns it: not a const (no TDZ).
  // eslint-disable-next-line prefer-const
  let domain: Domain | undefined;
  const stopped = new AbortController();
  const stop = async (signal: string): Promise<void> => {
    if (stopped.signal.aborted) return;
    stopped.abort();
    log.info({ signal }, "stopping");
    await Promise.all(listeners.map((l) => l.close()));
    await domain?.stop().catch((e: unknown) => log.error({ err: messageOf(e) }, "stopping the domain failed"));
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));

  // Only what cannot wait for the cluster store fails a start (no underlay address, a bad setting): retried anyway.
  domain = await retry({ attempts: Infinity, minMs: 500, maxMs: 10_000, signal: stopped.signal }, async () => {
    const started = await startDomain(config, log);
    if (started.ok) return started.value;
    gate.notReady(started.error);
    log.error({ err: started.error }, "cannot start the driver; retrying");
    return undefined;
  });
  if (domain !== undefined) gate.ready(domain);
}

void main();
