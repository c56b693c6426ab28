import type { Datapath } from "../../driver/contracts/datapath.js";
import type { DnsStats } from "../../driver/dns/dns-listener.js";
import type { ResilientStore } from "../../driver/cluster/resilient-store.js";
import type { HostRegistry } from "../../driver/hosts/host-registry.js";
import type { LocalState } from "../../driver/local/local-state.js";
import type { Outbox } from "../../driver/local/outbox.js";
import type { PeerSync } from "../../driver/peers/peer-sync.js";
import type { PortPublisher } from "../../driver/publish/port-publisher.js";
import type { IptablesCommand } from "../../driver/kernel/iptables.js";
import { metrics } from "../../lib/metrics.js";

/**
 * What the state gauges of lib/metrics.ts read at scrape time, from the
 * parts that already know it (the same sources as the status endpoint).
 * Labelled gauges are reset first, so a network or port that went away
 * stops being exported. A scrape only reads: nothing is derived again for it
 * (the peers programmed are the count last handed to the kernel, kept by
 * ProgrammedPeers), so scraping often costs the plugin nothing.
 */

/**
 * The number of remote peers each network's tables were last programmed
 * with (every sync: a store change, a host coming or going, the periodic
 * reconcile), seen on the datapath's way in. A failed sync keeps the count
 * before it; a removed network's count goes.
 */
export class ProgrammedPeers {
  private readonly counts = new Map<string, number>();

  count(subnet: string): number {
    return this.counts.get(subnet) ?? 0;
  }

  /** The datapath, counting what `syncPeers` programs. */
  around(d: Datapath): Datapath {
    return {
      ensureNetwork: (spec) => d.ensureNetwork(spec),
      removeNetwork: async (subnet) => {
        await d.removeNetwork(subnet);
        this.counts.delete(subnet);
      },
      hasNetwork: (subnet) => d.hasNetwork(subnet),
      ensureEndpoint: (subnet, ep, mtu) => d.ensureEndpoint(subnet, ep, mtu),
      removeEndpoint: (subnet, endpointId) => d.removeEndpoint(subnet, endpointId),
      syncPeers: async (subnet, desired, opts) => {
        const r = await d.syncPeers(subnet, desired, opts);
        this.counts.set(subnet, desired.length);
        return r;
      },
      peerTables: (subnet) => d.peerTables(subnet),
      restored: (vnis) => d.restored(vnis),
      close: () => d.close(),
    };
  }
}

export function domainGauges(d: {
  local: LocalState;
  peers: PeerSync;
  programmed: ProgrammedPeers;
  hosts: HostRegistry;
  store: ResilientStore;
  outbox: Outbox;
}): () => Promise<void> {
  return async () => {
    const eps = await d.local.endpoints();
    metrics.networks.set(new Set(eps.map((e) => e.subnet)).size);
    metrics.endpoints.reset();
    metrics.peersProgrammed.reset();
    for (const f of d.peers.followed()) {
      metrics.endpoints.set({ network: f.subnet }, eps.filter((e) => e.subnet === f.subnet).length);
      metrics.peersProgrammed.set({ network: f.subnet }, d.programmed.count(f.subnet));
    }
    metrics.hostsAlive.set(d.hosts.hosts().length);
    metrics.storeUp.set(d.store.health().available ? 1 : 0);
    const teardown = d.outbox.status();
    metrics.pendingTeardown.set(teardown.pending);
    metrics.failingTeardown.set(teardown.failing?.length ?? 0);
  };
}

export function hostGauges(
  publisher: PortPublisher,
  dnsStats: () => DnsStats | undefined,
  iptablesRuns: () => Readonly<Record<IptablesCommand, number>>,
  watchAnswers: () => ReadonlyMap<string, number> | undefined = () => undefined,
): () => void {
  return () => {
    metrics.iptablesRuns.reset();
    for (const [command, n] of Object.entries(iptablesRuns())) metrics.iptablesRuns.inc({ command }, n);
    metrics.storeWatchAnswers.reset();
    for (const [prefix, n] of watchAnswers() ?? []) metrics.storeWatchAnswers.inc({ prefix }, n);
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
      not_forwarded: names.notForwarded,
      refused: names.refused,
      rate_limited: names.rateLimited,
      client_busy: names.clientBusy,
    };
    for (const [result, n] of Object.entries(byResult)) metrics.dnsQueries.inc({ result }, n);
  };
}
