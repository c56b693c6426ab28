/**
 * The composition root of a running host: every kernel, store, DNS and Docker
 * adapter made from the configuration and handed to the domain (assemble.ts).
 *
 * Design note. The order is the dependency order, and nothing in it waits for
 * the cluster store: the underlay first (every adapter needs the VTEP), the
 * stores (opened, not yet reached), the datapath (its namespaces pinned in the
 * state folder as well, so that they outlive a `docker plugin disable`), the
 * egress, DNAT and guards, then the domain, whose restore re-adopts what this
 * host had. What fails is returned with what it was; what was made is stopped.
 * iptables has one owner (driver/kernel/iptables.ts), made here and handed to
 * every part that has chains; the RuleKeeper sets all of them up before the
 * domain starts and, once the restore is over, keeps them every reconcile
 * period, so that no Docker call waits for a chain.
 */
import path from "node:path";
import { assembleDomain } from "./assemble.js";
import { EgressGateway } from "../../driver/kernel/egress/egress-gateway.js";
import { KernelPortRules } from "../../driver/kernel/port-rules.js";
import { Iptables } from "../../driver/kernel/iptables.js";
import { RuleKeeper, type KeptRules } from "../../driver/kernel/rule-keeper.js";
import { runHostCommand } from "../../driver/kernel/host-command.js";
import { KernelDatapath } from "../../driver/kernel/datapath/kernel-datapath.js";
import { egressPortOf } from "../../driver/kernel/egress/egress-port.js";
import { resolveUnderlay } from "../../driver/kernel/underlay.js";
import { parseIpamConfig } from "../../driver/ipam/ipam-config.js";
import type { DomainApi } from "../../driver/api.js";
import type { Logger } from "../../lib/log.js";
import { failure, success, type Result } from "../../lib/result.js";
import { openEmbeddedStore } from "../../driver/store/embedded-store.js";
import { openStore } from "../../driver/store/open-store.js";
import { endpointText } from "../../driver/store/consul-connection.js";
import type { Store } from "../../driver/contracts/store.js";
import { PortPublisher } from "../../driver/publish/port-publisher.js";
import { AcceptWorkers, ProxyManager } from "../../proxy/index.js";
import { DockerApi } from "../../driver/docker/docker-api.js";
import { DnsListener } from "../../driver/dns/dns-listener.js";
import { HostResolvers } from "../../driver/dns/upstreams.js";
import { DnsGuard } from "../../driver/kernel/dns-guard.js";
import { VxlanGuard } from "../../driver/kernel/vxlan-guard.js";
import { DockerBridgeGuard } from "./dns-bridges.js";
import type { PluginConfig } from "./config.js";
import { onScrape } from "../../lib/metrics.js";
import { hostGauges } from "./metric-sources.js";
import { clockReadings, runDoctor } from "./doctor.js";
import { runProbe } from "./probe.js";
import { messageOf } from "../../lib/errors.js";
import { loadOrCreateHostKey, readPrivateKey } from "../../driver/kernel/wireguard/host-key.js";
import { WIREGUARD_IFACE, WireGuardDevice } from "../../driver/kernel/wireguard/wireguard-device.js";
import { tunnelAddressOf } from "../../driver/encryption/tunnel-address.js";
import { WIREGUARD_OVERHEAD } from "../../driver/network/network-options.js";
import { VERSION } from "../../lib/version.js";
import { readKernelTables } from "../../driver/kernel/kernel-tables.js";
import { collectSupport } from "./support.js";

/** How long after Docker programs `-p 8080:80` the [::] half is bound (see PortPublisherOptions.deferIpv6Ms). */
const IPV6_HALF_DELAY_MS = 2_000;

/** A running host: what the HTTP edge calls, and how to stop it. */
export interface Domain extends DomainApi {
  /** This host's underlay (VTEP) address, as resolved at start. */
  vtep: string;
  /** Values no answer may hold: this host's WireGuard private key (read at each call: it can be rotated). */
  secrets(): Promise<string[]>;
  stop(): Promise<void>;
}

/**
 * Builds the domain from the configuration: underlay → stores → datapath →
 * host registry → peers → driver, then restores what this host had before a
 * restart. Nothing here waits for the cluster store: a plugin that starts
 * while Consul is away restores its datapath from host-private state, answers
 * Docker at once, and catches up (registration, peers, queued teardown, its
 * own records) when the store answers. Any failure is returned with what
 * failed; nothing is left running.
 */
export async function startDomain(config: PluginConfig, log: Logger): Promise<Result<Domain>> {
  const underlay = await resolveUnderlay({ advertiseAddr: config.advertiseAddr, advertiseIface: config.advertiseIface });
  if (!underlay.ok) return failure(underlay.error);
  const { vtep, mtu, ifindex, ifname } = underlay.value;
  const hostId = vtep;
  const ipamCfg = parseIpamConfig({ hostId, ...config.ipam });
  if (!ipamCfg.ok) return failure(ipamCfg.error);

  let raw: Store | undefined;
  let local: Store | undefined;
  let workers: AcceptWorkers | undefined;
  let docker: DockerApi | undefined;
  let keeper: RuleKeeper | undefined;
  try {
    raw = await openStore({ consul: config.consul, stateDir: config.stateDir }, log);
    local = await openEmbeddedStore(path.join(config.stateDir, "local"), log);
    // Namespaces are pinned in the state folder too, so that they outlive a `docker plugin disable` (network.ts).
    const datapath = new KernelDatapath({
      runDir: config.runDir,
      keepDir: config.stateDir,
      vtepAddr: vtep,
      vxlanPort: config.vxlanPort,
      underlayIfindex: ifindex,
      log,
    });
    // The plugin's one iptables owner: no two iptables processes of ours ever run at once.
    const iptables = new Iptables();
    const gateway = new EgressGateway({
      iptables,
      bridgeName: config.gatewayBridge,
      subnet: config.gatewaySubnet,
      procRoot: config.procRoot,
      keepBridge: config.dnsPort !== undefined,
      log,
    });
    // The name service listens on the gateway bridge's own address: every container reaches it through its network's uplink.
    const nameServer = config.dnsPort === undefined ? undefined : gateway.bridgeIp;
    docker = config.dockerSocket === undefined ? undefined : new DockerApi({ socketPath: config.dockerSocket, log });
    const egress = egressPortOf(gateway, config.runDir);
    const proxyLog = log.child({ component: "proxy" });
    workers = new AcceptWorkers({ count: config.proxyWorkers, log: proxyLog, logLevel: config.logLevel });
    await workers.start();
    const proxies = new ProxyManager({ log: proxyLog, workers, tcp: config.proxyTcp, udp: config.proxyUdp });
    const dnsPort = config.dnsPort;
    const nameService = nameServer === undefined || dnsPort === undefined ? undefined : { address: nameServer, port: dnsPort };
    // From the gateway bridge, containers reach the name service and published ports, nothing else of the host.
    const portRules = new KernelPortRules({
      iptables,
      gatewayBridge: config.gatewayBridge,
      fastPath: config.proxyMode === "hybrid",
      ...(nameService === undefined ? {} : { nameServer: nameService }),
      log,
    });
    const publisher = new PortPublisher(proxies, log, { mode: config.proxyMode, rules: portRules, deferIpv6Ms: IPV6_HALF_DELAY_MS });
    // VXLAN only from live hosts' VTEPs, never from containers.
    const tunnelAddress = tunnelAddressOf(vtep, config.wireguard.subnet);
    const tunnelSubnet = `${config.wireguard.subnet.base}/${config.wireguard.subnet.prefix}`;
    const vxlanGuard = new VxlanGuard({
      iptables,
      vtep,
      underlay: ifname,
      vxlanPort: config.vxlanPort,
      tunnel: { iface: WIREGUARD_IFACE, address: tunnelAddress, subnet: tunnelSubnet },
      log,
    });
    const dnsGuard = nameService === undefined ? undefined : new DnsGuard({ iptables, ...nameService, gatewayBridge: config.gatewayBridge, log });
    // Every chain, rule and jump before any container is restored and any tunnel exists: one iptables-save, one iptables-restore.
    const kept: KeptRules[] = [gateway.rules, portRules, vxlanGuard, ...(dnsGuard === undefined ? [] : [dnsGuard])];
    keeper = new RuleKeeper({ iptables, parts: kept, log });
    await keeper.start();
    const bridgeGuard =
      docker === undefined || dnsGuard === undefined
        ? undefined
        : new DockerBridgeGuard({ docker, allow: (bridges) => dnsGuard.allowDockerBridges(bridges), log });
    // Made on first start, kept in the host-private state; only its public half is published. A host
    // that cannot make one still serves plain networks, and says why.
    const hostKey = await loadOrCreateHostKey(path.join(config.stateDir, "wireguard")).then(
      (k) => k,
      (e: unknown) => {
        log.error({ err: messageOf(e) }, "no WireGuard host key: this host cannot join encrypted networks");
        return undefined;
      },
    );
    const wireguardKey = hostKey?.publicKey;
    const wireguard =
      hostKey === undefined
        ? undefined
        : new WireGuardDevice({
            iface: WIREGUARD_IFACE,
            address: tunnelAddress,
            prefix: config.wireguard.subnet.prefix,
            subnet: tunnelSubnet,
            listenPort: config.wireguard.port,
            mtu: mtu - WIREGUARD_OVERHEAD,
            privateKeyFile: hostKey.privateKeyFile,
            log: log.child({ component: "wireguard" }),
          });
    const domain = await assembleDomain(
      {
        cluster: raw,
        local,
        datapath,
        egress,
        publisher,
        vxlanAdmission: vxlanGuard,
        ...(wireguard === undefined ? {} : { wireguard }),
        ...(docker === undefined ? {} : { docker }),
        ...(bridgeGuard === undefined ? {} : { daemonListeners: [bridgeGuard] }),
      },
      {
        hostId,
        vtep,
        pluginVersion: VERSION,
        ...(wireguardKey === undefined ? {} : { wireguardKey }),
        encryption: config.wireguard,
        underlayMtu: mtu,
        ipam: ipamCfg.value,
        storeRetryMs: config.storeRetryMs,
        reconcileMs: config.reconcileMs,
        gcIntervalMs: config.gcIntervalMs,
        gcGraceMs: config.gcGraceMs,
        propagate: config.propagate,
        driverNames: config.driverNames,
        ...(nameServer === undefined ? {} : { nameServer }),
      },
      log,
    );
    await domain.start();
    let dns: DnsListener | undefined;
    let dnsDown = nameServer === undefined ? "the name service is off (TSOVERLAY_DNS=false)" : "";
    if (nameServer !== undefined && config.dnsPort !== undefined) {
      const listen = [{ host: nameServer, port: config.dnsPort }];
      await gateway.ensureBridge();
      if (bridgeGuard !== undefined) bridgeGuard.start();
      else
        log.warn(
          "no Docker API (TSOVERLAY_DOCKER_SOCKET=off): the name service refuses the containers of Docker's own bridges; only tsoverlay's and the host may ask",
        );
      const upstreams = new HostResolvers({ ...(config.dnsUpstreams === undefined ? {} : { servers: config.dnsUpstreams }), exclude: listen, log });
      dns = new DnsListener({ listen, resolver: domain.names, upstreams, log });
      const started = await dns.start();
      // Not fatal: networks work without names (a host DNS server may hold the port).
      if (!started.ok) {
        log.error({ err: started.error }, "the name service is not running");
        dnsDown = `the name service could not start: ${started.error}`;
        dns = undefined;
      }
    }
    const unscrape = onScrape(
      hostGauges(
        publisher,
        () => dns?.stats(),
        () => iptables.runs(),
        () => raw?.watchAnswers?.(),
      ),
    );
    // After re-publishing: DNAT rules of endpoints gone while we were down, or all of them after a switch to userland.
    await publisher.pruneFastPath();
    // From now on the chains are compared with what is wanted every period, off Docker's calls.
    keeper.run(config.reconcileMs);
    const rulesKeeper = keeper;
    const consulAt = config.consul === undefined ? "" : endpointText(config.consul.endpoint);
    log.info({ hostId, vtep, underlayMtu: mtu, consul: consulAt || "embedded", proxyMode: config.proxyMode }, "tsoverlay ready");
    const [r, l, w, d] = [raw, local, workers, docker];
    const backend = config.consul === undefined ? "embedded" : "consul";
    return success({
      vtep,
      secrets: async () => (hostKey === undefined ? [] : [await readPrivateKey(hostKey.privateKeyFile)].flatMap((k) => k ?? [])),
      driver: domain.driver,
      ipam: domain.ipam,
      ports: () => publisher.list(),
      view: () => domain.view.read(),
      peers: () => domain.peerReport(),
      probe: async (target, network) =>
        runProbe({
          target,
          network,
          snapshot: await domain.view.read(),
          vtep,
          vxlanPort: config.vxlanPort,
          underlay: { ifindex, mtuAtStart: mtu },
          localEndpoints: await domain.localEndpoints(),
          localNetworks: await domain.localNetworks(),
        }),
      rotateKey: async () => {
        const encryption = domain.encryption;
        if (encryption === undefined) throw Object.assign(new Error("this host has no WireGuard key (the plugin's log at start says why)"), { status: 400 });
        const away = domain.store.health().condition;
        // The new key must reach the other hosts at once, or they stop talking to this one until it does.
        if (away !== undefined) throw Object.assign(new Error(`the key is kept: the cluster store cannot publish a new one now (${away})`), { status: 503 });
        return encryption.rotate();
      },
      doctor: () =>
        runDoctor({
          procRoot: config.procRoot,
          underlay: { ifindex, mtuAtStart: mtu },
          iptables,
          store: r,
          consulAddr: consulAt,
          docker: d,
          networks: () => domain.localNetworks(),
          clocks: () => clockReadings(domain.asks),
          encryption: async () => domain.encryption?.report(),
          status: async () => {
            const health = domain.store.health();
            const teardown = domain.outbox.status();
            const layout = domain.layout();
            return {
              ...(layout.state === "refused" ? { layoutProblem: layout.problem } : {}),
              pendingTeardown: teardown.pending,
              failingTeardown: teardown.failing ?? [],
              storeCondition: health.condition,
              names: dns === undefined ? { serving: false, reason: dnsDown } : { serving: true, address: `${nameServer}:${config.dnsPort}` },
            };
          },
        }),
      support: () =>
        collectSupport({
          store: r,
          kernel: () =>
            readKernelTables({
              runDir: config.runDir,
              wireguardIface: WIREGUARD_IFACE,
              // iptables-save too goes through the owner: one iptables process at a time, counted.
              run: (bin, args, opts) => (bin === "iptables-save" ? iptables.exclusive((s) => s.saveText(opts.netnsPath)) : runHostCommand(bin, args, opts)),
            }),
          networks: () => domain.localNetworks(),
          names: async () => new Map((await domain.view.read()).networks.map((n) => [n.subnet, n.names])),
        }),
      cluster: async () => {
        const st = await domain.status();
        return {
          ...st,
          store: { backend, ...(st.store as object) },
          names:
            dns === undefined
              ? { serving: false, reason: dnsDown }
              : {
                  serving: true,
                  address: `${nameServer}:${config.dnsPort}`,
                  // The one setting per host that names across hosts need (README, "Names across hosts").
                  setting: `containers use it when the daemon's "dns" setting (daemon.json) lists ${nameServer} before the host's resolvers`,
                  ...dns.stats(),
                },
        };
      },
      stop: async () => {
        unscrape();
        await rulesKeeper.stop();
        bridgeGuard?.stop();
        await dns?.close();
        await domain.stop();
        d?.close();
        await publisher.closeAll();
        await w.close();
        await datapath.close();
        await gateway.close();
        await r.close();
        await l.close();
      },
    });
  } catch (e) {
    await keeper?.stop();
    await workers?.close().catch(() => undefined);
    docker?.close();
    await raw?.close().catch(() => undefined);
    await local?.close().catch(() => undefined);
    return failure(messageOf(e));
  }
}
