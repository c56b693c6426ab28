import { createLogger, type Logger } from "../lib/log.js";
import { LogRing } from "../lib/log-ring.js";
import { retry } from "../lib/retry.js";
import { loadConfig } from "./compose/config.js";
import { startDomain, type Domain } from "./compose/host.js";
import { createApp } from "./http/app.js";
import { groupId, listenUnix, type Listener } from "./http/listen.js";
import { listenMetrics } from "./http/metrics.js";
import { ReadinessGate } from "./readiness.js";
import { buildRoutes, clusterOf, doctorOf, peersOf, probeOf, rotateKeyOf, statusOf, supportOf } from "./routes/index.js";
import { messageOf } from "../lib/errors.js";
import { guardProcess } from "./process-guard.js";

/**
 * Process entry: the same program runs as a managed plugin (config.json) and
 * as a host service. Sockets are opened first — a managed plugin has ~10 s
 * after start before the daemon gives up on it — then the domain is started,
 * retrying while the cluster store is unreachable; until then driver calls
 * are answered with the reason. An error nothing handled is logged and
 * survived (process-guard.ts). Metrics given as a bare port are served on the
 * underlay address, which is known once the domain has started.
 */
async function main(): Promise<void> {
  const cfg = loadConfig(process.env);
  if (!cfg.ok) {
    processLog.fatal({ err: cfg.error }, "cannot start");
    process.exit(2);
  }
  const config = cfg.value;
  // The token is also scrubbed from every line, whatever carried it there (lib/log.ts).
  const token = config.consul?.token?.reveal();
  const log = createLogger(config.logLevel, { ring: recentLines, ...(token === undefined ? {} : { secrets: [token] }) });
  processLog = log;
  for (const warning of config.warnings) log.warn(warning);
  const gate = new ReadinessGate();

  let socketGid: number | undefined;
  if (config.socketGroup !== undefined) {
    socketGid = await groupId(config.socketGroup);
    if (socketGid === undefined) {
      log.fatal(
        {
          err: `invalid environment: TSOVERLAY_SOCKET_GROUP: no group ${config.socketGroup} in /etc/group (a managed plugin sees its image's /etc/group: give the host group's number)`,
        },
        "cannot start",
      );
      process.exit(2);
    }
  }

  // stop() and the views may run before the start loop below assigns it: not a const (no TDZ).
  // eslint-disable-next-line prefer-const
  let domain: Domain | undefined;
  const app = createApp(
    buildRoutes(gate),
    log,
    {
      status: () => statusOf(gate),
      cluster: () => clusterOf(gate),
      peers: () => peersOf(gate),
      doctor: () => doctorOf(gate),
      probe: (q) => probeOf(gate, q),
      support: () => supportOf(gate, () => recentLines.snapshot()),
    },
    { "rotate-key": () => rotateKeyOf(gate) },
    { secrets: async () => [...(token === undefined ? [] : [token]), ...((await domain?.secrets()) ?? [])] },
  );
  const listeners: Listener[] = [];
  for (const path of config.sockets) {
    try {
      listeners.push(await listenUnix(app, path, socketGid === undefined ? {} : { gid: socketGid }));
      log.info(
        { socket: path, mode: socketGid === undefined ? "0600" : "0660", ...(socketGid === undefined ? {} : { gid: socketGid }) },
        "serving plugin protocol",
      );
    } catch (e) {
      log.fatal({ socket: path, err: messageOf(e) }, "cannot listen");
      process.exit(1);
    }
  }

  const metricsHost = config.metricsAddr?.host;
  if (config.metricsAddr !== undefined && metricsHost !== undefined) {
    try {
      const l = await listenMetrics({ host: metricsHost, port: config.metricsAddr.port }, log);
      listeners.push(l);
      log.info({ address: l.path }, "serving Prometheus metrics on /metrics");
    } catch (e) {
      log.fatal({ err: messageOf(e) }, "cannot serve metrics");
      process.exit(1);
    }
  }

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
  if (domain === undefined) return;
  gate.ready(domain);

  if (config.metricsAddr !== undefined && metricsHost === undefined && !stopped.signal.aborted) {
    // A bare port: the underlay address. Not fatal here: the datapath is up, and a restart would meet the same port taken.
    try {
      const l = await listenMetrics({ host: domain.vtep, port: config.metricsAddr.port }, log);
      listeners.push(l);
      log.info({ address: l.path }, "serving Prometheus metrics on /metrics (the underlay address)");
    } catch (e) {
      log.error({ err: messageOf(e) }, "cannot serve metrics; carrying on without them");
    }
  }
}

/** The plugin's recent log lines, as written (token scrubbed), for `tsoverlay support-bundle`. */
const recentLines = new LogRing();
// Until the configuration is read; then the configured one, which scrubs the token.
let processLog: Logger = createLogger("info", { ring: recentLines });
guardProcess(() => processLog);
main().catch((e: unknown) => {
  processLog.fatal({ err: messageOf(e), stack: e instanceof Error ? e.stack : undefined }, "cannot start");
  process.exit(1);
});
