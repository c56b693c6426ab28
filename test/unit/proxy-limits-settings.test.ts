import dgram from "node:dgram";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { PortPublisher } from "../../driver/publish/port-publisher.js";
import { createLogger } from "../../lib/log.js";
import { onScrape, scrape } from "../../lib/metrics.js";
import { loadConfig } from "../../plugin/compose/config.js";
import { hostGauges } from "../../plugin/compose/metric-sources.js";
import { ProxyManager } from "../../proxy/index.js";
import { eventually } from "../support/eventually.js";

// The proxy limits' settings (config.ts → ProxyManager) and their metrics (lib/metrics.ts).

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("proxy limit settings", () => {
  it("defaults: 16,384 connections and flows per port, 4,096 per source, TCP idle 5 days, UDP 90 s answered and 5 s unanswered", () => {
    const c = loadConfig({});
    if (!c.ok) throw new Error(c.error);
    expect(c.value.proxyTcp).toEqual({ maxConns: 16_384, maxConnsPerSource: 4096, idleTimeoutMs: 432_000_000 });
    expect(c.value.proxyUdp).toEqual({ maxFlows: 16_384, maxFlowsPerSource: 4096, idleTimeoutMs: 90_000, unrepliedTimeoutMs: 5000 });
  });

  it("reads every setting, TCP idle 0 = never; an empty one is the default", () => {
    const c = loadConfig({
      TSOVERLAY_PROXY_TCP_CONNS: "100",
      TSOVERLAY_PROXY_TCP_CONNS_PER_SOURCE: "10",
      TSOVERLAY_PROXY_TCP_IDLE_S: "0",
      TSOVERLAY_PROXY_UDP_FLOWS: "200",
      TSOVERLAY_PROXY_UDP_FLOWS_PER_SOURCE: "",
      TSOVERLAY_PROXY_UDP_IDLE_S: "30",
      TSOVERLAY_PROXY_UDP_UNREPLIED_S: "2",
    });
    if (!c.ok) throw new Error(c.error);
    expect(c.value.proxyTcp).toEqual({ maxConns: 100, maxConnsPerSource: 10, idleTimeoutMs: 0 });
    expect(c.value.proxyUdp).toEqual({ maxFlows: 200, maxFlowsPerSource: 4096, idleTimeoutMs: 30_000, unrepliedTimeoutMs: 2000 });
  });

  it.each([
    ["TSOVERLAY_PROXY_TCP_CONNS", "0"],
    ["TSOVERLAY_PROXY_TCP_CONNS_PER_SOURCE", "lots"],
    ["TSOVERLAY_PROXY_TCP_IDLE_S", "-1"],
    ["TSOVERLAY_PROXY_TCP_IDLE_S", "2147484"],
    ["TSOVERLAY_PROXY_UDP_FLOWS", "1.5"],
    ["TSOVERLAY_PROXY_UDP_FLOWS_PER_SOURCE", "0"],
    ["TSOVERLAY_PROXY_UDP_IDLE_S", "0"],
    ["TSOVERLAY_PROXY_UDP_UNREPLIED_S", "0"],
  ])("%s=%s is refused with the setting's name", (name, v) => {
    const c = loadConfig({ [name]: v });
    expect(c.ok).toBe(false);
    if (!c.ok) expect(c.error).toContain(`${name}:`);
  });
});

describe("proxy limit metrics", () => {
  it("refusals and evictions per published port, by limit and reason", async () => {
    const proxies = new ProxyManager({ tcp: { maxConns: 1 }, udp: { maxFlowsPerSource: 1 } });
    const publisher = new PortPublisher(proxies, createLogger("silent"), { mode: "userland" });
    cleanups.push(() => proxies.closeAll());
    cleanups.push(
      onScrape(
        hostGauges(
          publisher,
          () => undefined,
          () => ({ iptables: 0, "iptables-restore": 0, "iptables-save": 0 }),
        ),
      ),
    );

    const backend = net.createServer((s) => s.pipe(s));
    await new Promise<void>((resolve) => backend.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => void backend.close());
    const udpBackend = dgram.createSocket("udp4");
    await new Promise<void>((resolve) => udpBackend.bind(0, "127.0.0.1", resolve));
    cleanups.push(() => void udpBackend.close());
    const tcpPort = (backend.address() as net.AddressInfo).port;
    const udpPort = udpBackend.address().port;

    const r = await publisher.publish("ep1", "127.0.0.1", [
      { proto: "tcp", hostIp: "127.0.0.1", hostPort: 0, hostPortEnd: 0, containerPort: tcpPort },
      { proto: "udp", hostIp: "127.0.0.1", hostPort: 0, hostPortEnd: 0, containerPort: udpPort },
    ]);
    if (!r.ok) throw new Error(r.error.message);
    const [tcp, udp] = [r.value.find((p) => p.proto === "tcp")!, r.value.find((p) => p.proto === "udp")!];

    const held = net.connect(tcp.hostPort, "127.0.0.1");
    cleanups.push(() => void held.destroy());
    await eventually("the first connection", () => proxies.list().some((b) => b.binding.proto === "tcp" && b.counters.connectionsActive === 1));
    const refused = net.connect(tcp.hostPort, "127.0.0.1");
    await new Promise<void>((resolve) => refused.once("error", () => resolve()));

    const clients = [dgram.createSocket("udp4"), dgram.createSocket("udp4")];
    for (const c of clients) {
      cleanups.push(() => void c.close());
      c.send("x", udp.hostPort, "127.0.0.1");
      await eventually("its flow", () => proxies.list().some((b) => b.binding.proto === "udp" && b.counters.connectionsTotal === clients.indexOf(c) + 1));
    }

    const text = await scrape();
    expect(text).toContain(`tsoverlay_proxy_refused_total{host_port="${tcp.hostPort}",proto="tcp",limit="port"} 1`);
    expect(text).toContain(`tsoverlay_proxy_refused_total{host_port="${tcp.hostPort}",proto="tcp",limit="source"} 0`);
    expect(text).toContain(`tsoverlay_proxy_evicted_total{host_port="${tcp.hostPort}",proto="tcp",reason="idle"} 0`);
    expect(text).toContain(`tsoverlay_proxy_evicted_total{host_port="${udp.hostPort}",proto="udp",reason="source_limit"} 1`);
    expect(text).toContain(`tsoverlay_proxy_evicted_total{host_port="${udp.hostPort}",proto="udp",reason="port_limit"} 0`);
    expect(text).toContain(`tsoverlay_proxy_refused_total{host_port="${udp.hostPort}",proto="udp",limit="port"} 0`);
  });
});

describe("iptables metrics", () => {
  it("the processes the iptables owner started, by command, as it counts them at scrape time", async () => {
    const runs = { iptables: 2, "iptables-restore": 5, "iptables-save": 3 };
    const publisher = new PortPublisher(new ProxyManager(), createLogger("silent"), { mode: "userland" });
    cleanups.push(
      onScrape(
        hostGauges(
          publisher,
          () => undefined,
          () => runs,
        ),
      ),
    );
    let text = await scrape();
    expect(text).toContain('tsoverlay_iptables_runs_total{command="iptables"} 2');
    expect(text).toContain('tsoverlay_iptables_runs_total{command="iptables-restore"} 5');
    expect(text).toContain('tsoverlay_iptables_runs_total{command="iptables-save"} 3');
    runs["iptables-restore"] = 6;
    text = await scrape();
    expect(text).toContain('tsoverlay_iptables_runs_total{command="iptables-restore"} 6');
  });
});
