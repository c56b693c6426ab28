import type { DnsStats } from "../../driver/dns/dns-listener.js";
import type { ResilientStore } from "../../driver/cluster/resilient-store.js";
import type { HostRegistry } from "../../driver/hosts/host-registry.js";
import type { LocalState } from "../../driver/local/local-state.js";
import type { Outbox } from "../../driver/local/outbox.js";
import type { PeerSync } from "../../driver/peers/peer-sync.js";
import type { PortPublisher } from "../../driver/publish/port-publisher.js";
import { metrics } from "../../lib/metrics.js";

/**
 * What the state gauges of lib/metrics.ts read at scrape time, from the
 * parts that already know it (the same sources as the status endpoint).
 * Labelled gauges are reset first, so a network or port that went away
 * stops being exported.
 */

export function domainGauges(d: { local: LocalState; peers: PeerSync; hosts: HostRegistry; store: ResilientStore; outbox: Outbox }): () => Promise<void> {
  return async () => {
    const eps = await d.local.endpoints();
    metrics.networks.set(new Set(eps.map((e) => e.subnet)).size);
    metrics.endpoints.reset();
    metrics.peersProgrammed.reset();
    for (const f of d.peers.followed()) {
      metrics.endpoints.set({ network: f.subnet }, eps.filter((e) => e.subnet === f.subnet).length);
      metrics.peersProgrammed.set({ network: f.subnet }, (await d.peers.desired(f.subnet)).length);
    }
    metrics.hostsAlive.set(d.hosts.hosts().length);
    metrics.storeUp.set(d.store.health().available ? 1 : 0);
    metrics.pendingTeardown.set(d.outbox.status().pending);
  };
}

export function hostGauges(publisher: PortPublisher, dnsStats: () => DnsStats | undefined): () => void {
  return () => {
    metrics.publishedPorts.reset();
    metrics.proxyConnections.reset();
    metrics.proxyBytes.reset();
    metrics.proxyRefused.reset();
    metrics.proxyEvicted.reset();
    for (const p of publisher.list()) {
      const labels = { host_port: String(p.hostPort), proto: p.proto };
      const c = p.counters;
      metrics.publishedPorts.inc({ proto: p.proto, via: p.kernelDnat ? "dnat" : "proxy" });
      metrics.proxyConnections.inc(labels, c.connectionsTotal);
      metrics.proxyBytes.inc({ ...labels, direction: "in" }, c.bytesIn);
      metrics.proxyBytes.inc({ ...labels, direction: "out" }, c.bytesOut);
      // Only what can happen to the protocol: TCP refuses and closes idle connections, UDP refuses and evicts flows.
      metrics.proxyRefused.inc({ ...labels, limit: "port" }, c.refusedPortLimit);
      if (p.proto === "tcp") {
        metrics.proxyRefused.inc({ ...labels, limit: "source" }, c.refusedSourceLimit);
        metrics.proxyEvicted.inc({ ...labels, reason: "idle" }, c.idleTimeouts);
      } else {
        metrics.proxyEvicted.inc({ ...labels, reason: "port_limit" }, c.evictedPortLimit);
        metrics.proxyEvicted.inc({ ...labels, reason: "source_limit" }, c.evictedSourceLimit);
      }
    }
    const names = dnsStats();
    if (names === undefined) return;
    metrics.dnsQueries.reset();
    const byResult = {
      answered: names.answered,
      no_data: names.noData,
      forwarded: names.forwarded,
      forward_failed: names.forwardFailed,
      resolver_failed: names.resolverFailed,
    };
    for (const [result, n] of Object.entries(byResult)) metrics.dnsQueries.inc({ result }, n);
  };
}
