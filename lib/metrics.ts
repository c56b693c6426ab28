import { Counter, Gauge, Histogram, Registry } from "prom-client";

/**
 * Every Prometheus family the plugin exports, in one place (names, help,
 * labels, buckets), on a registry of our own rather than prom-client's
 * global one. Two kinds:
 *
 *  - events, counted where they happen: store requests, driver calls, peer
 *    syncs and repairs, peer announcements;
 *  - state, read at scrape time from what the status endpoint already
 *    knows (endpoints, peers, ports, proxy and DNS counters): a scrape
 *    source registered by the composition sets those gauges just before the
 *    registry is rendered, so no copy of that state is kept up to date here.
 *    Cumulative ones (proxy, DNS) are counters set from the owner's own
 *    count: they restart at 0 when their port (or the plugin) does, which
 *    Prometheus reads as a counter reset.
 *
 * Nothing is served unless TSOVERLAY_METRICS_ADDR is set (plugin/http/metrics.ts).
 */

export const registry = new Registry();

/** Seconds buckets for calls that take a millisecond to a few seconds. */
const CALL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export const metrics = {
  driverCallSeconds: new Histogram({
    name: "tsoverlay_driver_call_duration_seconds",
    help: "Time to answer a call of Docker's plugin protocol, by endpoint (e.g. NetworkDriver.CreateEndpoint) and result",
    labelNames: ["call", "result"] as const,
    buckets: CALL_BUCKETS,
    registers: [registry],
  }),
  storeRequestSeconds: new Histogram({
    name: "tsoverlay_store_request_duration_seconds",
    help: "Time of one request to the cluster store, by operation (get, put, cas, delete, list, ...)",
    labelNames: ["op"] as const,
    buckets: CALL_BUCKETS,
    registers: [registry],
  }),
  storeErrors: new Counter({
    name: "tsoverlay_store_errors_total",
    help: "Failed requests to the cluster store, by operation and kind (unavailable: no answer or no leader; refused: the store answered no)",
    labelNames: ["op", "kind"] as const,
    registers: [registry],
  }),
  peerSyncSeconds: new Histogram({
    name: "tsoverlay_watch_lag_seconds",
    help: "From a change of a network's endpoint records reaching this host (store watch) to its kernel tables programmed",
    buckets: CALL_BUCKETS,
    registers: [registry],
  }),
  peerSyncPassSeconds: new Histogram({
    name: "tsoverlay_peer_sync_duration_seconds",
    help: "Time of one pass that makes a network's kernel tables match its peers (read the tables, diff, write the difference), by trigger (change: endpoint records or hosts changed; periodic: the reconcile loop)",
    labelNames: ["trigger"] as const,
    buckets: CALL_BUCKETS,
    registers: [registry],
  }),
  storeWatchAnswers: new Counter({
    name: "tsoverlay_store_watch_answers_total",
    help: "Answers to the store's blocking queries that brought a change, by watched prefix (each answer carries every key under it)",
    labelNames: ["prefix"] as const,
    registers: [registry],
  }),
  reconcileRepairs: new Counter({
    name: "tsoverlay_reconcile_repairs_total",
    help: "Kernel entries the periodic reconcile found wrong and fixed, by table (neighbor, fdb, bridge_fdb) and action (added, removed)",
    labelNames: ["table", "action"] as const,
    registers: [registry],
  }),
  peerAnnouncements: new Counter({
    name: "tsoverlay_peer_announcements_total",
    help: "Gratuitous ARPs (ipv4) and unsolicited neighbor advertisements (ipv6) sent into a network's bridge for each neighbor entry a sync added or changed, so that local containers already asking for it learn it at once; by family and result (sent, failed)",
    labelNames: ["family", "result"] as const,
    registers: [registry],
  }),
  iptablesRuns: new Counter({
    name: "tsoverlay_iptables_runs_total",
    help: "iptables processes the plugin started since it started, by command (iptables, iptables-restore, iptables-save)",
    labelNames: ["command"] as const,
    registers: [registry],
  }),
  iptablesRepairs: new Counter({
    name: "tsoverlay_iptables_repairs_total",
    help: "Chains of the plugin (or their jumps) found changed behind its back and written again, by chain (at start: the ones set up)",
    labelNames: ["chain"] as const,
    registers: [registry],
  }),
  networks: new Gauge({
    name: "tsoverlay_networks",
    help: "Networks with at least one endpoint on this host",
    registers: [registry],
  }),
  endpoints: new Gauge({
    name: "tsoverlay_endpoints",
    help: "Container endpoints on this host, by network subnet",
    labelNames: ["network"] as const,
    registers: [registry],
  }),
  peersProgrammed: new Gauge({
    name: "tsoverlay_peers_programmed",
    help: "Remote endpoints this host programs (neighbor + FDB entries), by network subnet",
    labelNames: ["network"] as const,
    registers: [registry],
  }),
  hostsAlive: new Gauge({
    name: "tsoverlay_hosts_alive",
    help: "Hosts of the cluster alive as this host sees them (itself included)",
    registers: [registry],
  }),
  storeUp: new Gauge({
    name: "tsoverlay_store_up",
    help: "1 when the cluster store answered the last request, 0 while it is unavailable",
    registers: [registry],
  }),
  pendingTeardown: new Gauge({
    name: "tsoverlay_pending_teardown",
    help: "Teardown steps queued and not yet done (waiting for the cluster store, or behind a failing step of their network)",
    registers: [registry],
  }),
  failingTeardown: new Gauge({
    name: "tsoverlay_failing_teardown",
    help: "Teardown steps that failed for a reason other than the store being away and are retried with a growing pause (each holds up its network's later steps)",
    registers: [registry],
  }),
  teardownFailures: new Counter({
    name: "tsoverlay_teardown_failures_total",
    help: "Failed attempts of teardown steps for a reason other than the store being away, by step (withdraw-endpoint, release-address, leave-network, release-pool, remove-name; unreadable: an entry dropped)",
    labelNames: ["op"] as const,
    registers: [registry],
  }),
  unhandledErrors: new Counter({
    name: "tsoverlay_unhandled_errors_total",
    help: "Errors nothing handled, logged and survived, by kind (rejection: a promise nobody awaited; exception: a throw out of a callback)",
    labelNames: ["kind"] as const,
    registers: [registry],
  }),
  publishedPorts: new Gauge({
    name: "tsoverlay_published_ports",
    help: "Ports published on this host, by protocol and by what carries non-loopback IPv4 (dnat or proxy)",
    labelNames: ["proto", "via"] as const,
    registers: [registry],
  }),
  proxyConnections: new Counter({
    name: "tsoverlay_proxy_connections_total",
    help: "Connections (TCP) or flows (UDP) the proxy accepted per published port, since the port was published",
    labelNames: ["host_port", "proto"] as const,
    registers: [registry],
  }),
  proxyBytes: new Counter({
    name: "tsoverlay_proxy_bytes_total",
    help: "Payload bytes the proxy carried per published port (in: client to container, out: container to client), since the port was published",
    labelNames: ["host_port", "proto", "direction"] as const,
    registers: [registry],
  }),
  proxyRefused: new Counter({
    name: "tsoverlay_proxy_refused_total",
    help: "TCP connections the proxy reset at accept, or new UDP flows it dropped, per published port, by the limit reached (port: TSOVERLAY_PROXY_TCP_CONNS / TSOVERLAY_PROXY_UDP_FLOWS; source: TSOVERLAY_PROXY_TCP_CONNS_PER_SOURCE), since the port was published",
    labelNames: ["host_port", "proto", "limit"] as const,
    registers: [registry],
  }),
  proxyEvicted: new Counter({
    name: "tsoverlay_proxy_evicted_total",
    help: "Connections or flows the proxy closed itself per published port, by reason (port_limit: the oldest UDP flow its container had not answered, for a new client of a full table; source_limit: a source's own oldest UDP flow, beyond its limit; idle: a TCP connection idle for TSOVERLAY_PROXY_TCP_IDLE_S), since the port was published",
    labelNames: ["host_port", "proto", "reason"] as const,
    registers: [registry],
  }),
  dnsQueries: new Counter({
    name: "tsoverlay_dns_queries_total",
    help: "Queries the name service handled since the plugin started, by result (answered, no_data, forwarded, forward_failed, resolver_failed, not_forwarded, refused; rate_limited and client_busy: dropped, the client over its share)",
    labelNames: ["result"] as const,
    registers: [registry],
  }),
};

type ScrapeSource = () => Promise<void> | void;
const sources = new Set<ScrapeSource>();

/** Registers what sets the state gauges at scrape time; returns its removal. */
export function onScrape(source: ScrapeSource): () => void {
  sources.add(source);
  return () => sources.delete(source);
}

/** The exposition text: state gauges refreshed first (a failing source leaves its gauges as they were). */
export async function scrape(): Promise<string> {
  await Promise.all([...sources].map(async (s) => s()));
  return registry.metrics();
}

export const CONTENT_TYPE = registry.contentType;
