import { availableParallelism } from "node:os";
import { z } from "zod";
import { failure, success, type Result } from "../../lib/result.js";
import { PROXY_MODES, type ProxyMode } from "../../driver/publish/port-publisher.js";
import type { ConsulConnection } from "../../driver/store/consul-connection.js";
import { consulSettings } from "./consul-settings.js";
import { parseTunnelSubnet, type TunnelSubnet } from "../../driver/encryption/tunnel-address.js";
import { applyRenames } from "./setting-renames.js";

/**
 * The one place the process's configuration is read. Everything below takes
 * typed values from here; nothing else reads the environment. tsoverlay's own
 * settings are named TSOVERLAY_*, durations in seconds (_S), switches
 * true/false; Consul's keep the consul CLI's names. Old names and values are
 * translated first (setting-renames.ts).
 */

/** A boolean as Go's strconv.ParseBool reads it: Consul reads its own switches that way, and tsoverlay's are read alike. */
const GO_TRUE = ["1", "t", "T", "TRUE", "true", "True"] as const;
const GO_FALSE = ["0", "f", "F", "FALSE", "false", "False"] as const;
const goBool = z.enum([...GO_TRUE, ...GO_FALSE]).transform((v) => (GO_TRUE as readonly string[]).includes(v));
/** How many connections or flows: at least one, at most what one process could hold open. */
const count = z.coerce.number().int().min(1).max(1_048_576);

/**
 * Process configuration, read once from the environment. The managed plugin
 * gets these from config.json `env` (set with `docker plugin set`); the host
 * service gets them from its unit file.
 */
const EnvSchema = z.object({
  TSOVERLAY_LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]).default("info"),
  // Comma-separated unix socket paths to serve the plugin protocol on.
  TSOVERLAY_SOCKETS: z.string().min(1).default("/run/docker/plugins/tsoverlay.sock"),
  // A group whose members may use those sockets too (mode 0660); unset: root only (0600).
  TSOVERLAY_SOCKET_GROUP: z
    .string()
    .regex(/^(?:\d+|[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?)$/, "a group name or number")
    .optional(),
  // Consul's own settings, with the consul CLI's meanings (consul-settings.ts). No address: the embedded store.
  CONSUL_HTTP_ADDR: z.string().optional(),
  CONSUL_HTTP_TOKEN: z.string().optional(),
  CONSUL_HTTP_TOKEN_FILE: z.string().optional(),
  CONSUL_HTTP_SSL: goBool.optional(),
  CONSUL_HTTP_SSL_VERIFY: goBool.optional(),
  CONSUL_CACERT: z.string().optional(),
  CONSUL_CAPATH: z.string().optional(),
  CONSUL_CLIENT_CERT: z.string().optional(),
  CONSUL_CLIENT_KEY: z.string().optional(),
  CONSUL_TLS_SERVER_NAME: z.string().optional(),
  TSOVERLAY_ADVERTISE_ADDR: z.string().default(""),
  TSOVERLAY_ADVERTISE_IFACE: z.string().default(""),
  TSOVERLAY_STATE_DIR: z.string().min(1).default("/var/lib/tsoverlay"),
  TSOVERLAY_RUN_DIR: z.string().min(1).default("/run/tsoverlay"),
  TSOVERLAY_PROC: z.string().min(1).default("/proc"),
  TSOVERLAY_VXLAN_PORT: z.coerce.number().int().min(1).max(65535).default(4789),
  // The kernel-vs-store reconcile's period; decimals allowed, at least 0.1.
  TSOVERLAY_RECONCILE_S: z.coerce.number().min(0.1).max(3600).default(5),
  TSOVERLAY_GATEWAY_BRIDGE: z
    .string()
    .regex(/^[a-zA-Z0-9_.-]{1,15}$/, "an interface name of at most 15 characters")
    .default("tsogw0"),
  TSOVERLAY_GATEWAY_SUBNET: z.string().default("100.72.0.0/24"),
  TSOVERLAY_WIREGUARD_SUBNET: z.string().default("100.76.0.0/16"),
  TSOVERLAY_WIREGUARD_PORT: z.coerce.number().int().min(1).max(65535).default(51820),
  TSOVERLAY_PROXY_MODE: z.enum(PROXY_MODES).default("hybrid"),
  TSOVERLAY_PROXY_WORKERS: z.union([z.literal("auto"), z.coerce.number().int().min(0).max(64)]).default("auto"),
  // The userland proxy's limits, per published port; a source is an IPv4 address or an IPv6 /64.
  TSOVERLAY_PROXY_TCP_CONNS: count.default(16_384),
  TSOVERLAY_PROXY_TCP_CONNS_PER_SOURCE: count.default(4096),
  // 0 = never; at most what a Node timer can wait (24.8 days). Default: conntrack's established timeout, 5 days.
  TSOVERLAY_PROXY_TCP_IDLE_S: z.coerce.number().int().min(0).max(2_147_483).default(432_000),
  TSOVERLAY_PROXY_UDP_FLOWS: count.default(16_384),
  TSOVERLAY_PROXY_UDP_FLOWS_PER_SOURCE: count.default(4096),
  // A flow the container has answered (docker-proxy's 90 s), and one it has not answered yet.
  TSOVERLAY_PROXY_UDP_IDLE_S: z.coerce.number().int().min(1).max(86_400).default(90),
  TSOVERLAY_PROXY_UDP_UNREPLIED_S: z.coerce.number().int().min(1).max(86_400).default(5),
  // How long a call retries a cluster store that does not answer (leader election, agent restart).
  TSOVERLAY_STORE_RETRY_S: z.coerce.number().min(0).max(120).default(10),
  // How long a host must be gone before live hosts collect its records.
  TSOVERLAY_GC_GRACE_S: z.coerce
    .number()
    .int()
    .min(1)
    .max(7 * 24 * 3600)
    .default(600),
  // How often this host checks its own records and looks for gone hosts.
  TSOVERLAY_GC_INTERVAL_S: z.coerce
    .number()
    .int()
    .min(1)
    .max(24 * 3600)
    .default(60),
  // This host's Docker API, for networks created once and container names. A path, so not a switch:
  // "off" turns it off (empty already means the default).
  TSOVERLAY_DOCKER_SOCKET: z.string().min(1).default("/var/run/docker.sock"),
  // Create once: a tsoverlay network made on one host appears on every host.
  TSOVERLAY_PROPAGATE: goBool.default(true),
  // The names this daemon knows the plugin by (`docker network create -d NAME`), comma-separated.
  TSOVERLAY_DRIVER_NAMES: z.string().min(1).default("tsoverlay"),
  // The name service for containers (set the daemon's "dns" to the gateway bridge's address to use it).
  TSOVERLAY_DNS: goBool.default(true),
  TSOVERLAY_DNS_PORT: z.coerce.number().int().min(1).max(65535).default(53),
  // Where names that are not the overlay's go; default: the host's /etc/resolv.conf.
  TSOVERLAY_DNS_UPSTREAMS: z.string().optional(),
  // Prometheus metrics on this TCP address (HOST:PORT, [V6]:PORT, or :PORT for the underlay address; 0.0.0.0:PORT for every one); unset: none.
  TSOVERLAY_METRICS_ADDR: z.string().optional(),
  // Checked by the IPAM's own parser (parseIpamConfig), which names the setting in its errors.
  TSOVERLAY_POOL_RANGE: z.string().optional(),
  TSOVERLAY_POOL_SIZE: z.string().optional(),
  TSOVERLAY_VNI_RANGE: z.string().optional(),
});

/** Every setting the schema reads, under its current name (config.json declares these, old names never). */
export const SETTING_NAMES: readonly string[] = Object.keys(EnvSchema.shape);

export interface PluginConfig {
  logLevel: string;
  sockets: string[];
  /** The group (name or number) that may use the sockets besides root; undefined: root only. */
  socketGroup: string | undefined;
  /** The Consul agent (address, TLS, ACL token); undefined: the embedded single-host store. */
  consul: ConsulConnection | undefined;
  /** Settings that take effect in a way the operator may not expect: logged at start. */
  warnings: string[];
  advertiseAddr: string;
  advertiseIface: string;
  stateDir: string;
  runDir: string;
  procRoot: string;
  vxlanPort: number;
  reconcileMs: number;
  gatewayBridge: string;
  gatewaySubnet: string;
  /** Encrypted networks: the tunnel subnet (each host's address in it follows from its VTEP) and WireGuard's UDP port; the same on every host. */
  wireguard: { subnet: TunnelSubnet; port: number };
  proxyMode: ProxyMode;
  /**
   * Accept worker processes for the TCP proxy; "auto" = one per two cores beyond the first two,
   * at most 3 (on 2 vCPUs a worker measured slower: the cores are busy with the traffic itself).
   */
  proxyWorkers: number;
  /** The userland proxy's TCP limits per published port (whichever process accepts, see proxy/limits.ts). */
  proxyTcp: { maxConns: number; maxConnsPerSource: number; idleTimeoutMs: number };
  /** The userland proxy's UDP flow limits and idle times per published port. */
  proxyUdp: { maxFlows: number; maxFlowsPerSource: number; idleTimeoutMs: number; unrepliedTimeoutMs: number };
  /** Retry budget of a cluster-store call made while serving Docker (ms). */
  storeRetryMs: number;
  /** A host gone this long has its records collected (ms). */
  gcGraceMs: number;
  /** Period of the record collector (ms). */
  gcIntervalMs: number;
  /** This host's Docker API socket; undefined when turned off. */
  dockerSocket: string | undefined;
  propagate: boolean;
  driverNames: string[];
  /** The DNS listener's port on the gateway bridge address; undefined when turned off. */
  dnsPort: number | undefined;
  /** Explicit upstream resolvers (else the host's resolv.conf). */
  dnsUpstreams: string[] | undefined;
  /** Where Prometheus metrics are served (host undefined: this host's underlay/VTEP address); undefined: not at all. */
  metricsAddr: { host: string | undefined; port: number } | undefined;
  /** The IPAM's settings as given (parsed once the host id is known). */
  ipam: { poolRange?: string; poolSize?: string; vniRange?: string };
}

export function loadConfig(env: NodeJS.ProcessEnv): Result<PluginConfig> {
  // An empty setting (`docker plugin set X=`) means "use the default".
  const present = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== ""));
  const renamed = applyRenames(present);
  const parsed = EnvSchema.safeParse(renamed.env);
  if (!parsed.success) {
    const why = parsed.error.issues
      .map((i) => {
        const name = i.path.join(".");
        const given = renamed.givenAs.get(name);
        return `${name}${given === undefined ? "" : ` (given as ${given})`}: ${i.message}`;
      })
      .join("; ");
    return failure(`invalid environment: ${why}`);
  }
  const e = parsed.data;
  const sockets = e.TSOVERLAY_SOCKETS.split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const relative = sockets.find((s) => !s.startsWith("/"));
  if (relative !== undefined) {
    return failure(`invalid environment: TSOVERLAY_SOCKETS: socket path ${relative} is not absolute`);
  }
  const metricsAddr = e.TSOVERLAY_METRICS_ADDR === undefined ? undefined : parseListenAddress(e.TSOVERLAY_METRICS_ADDR);
  if (metricsAddr === null) {
    return failure(`invalid environment: TSOVERLAY_METRICS_ADDR: ${e.TSOVERLAY_METRICS_ADDR} is not HOST:PORT, [IPV6]:PORT or :PORT (the underlay address)`);
  }
  const consul = consulSettings(e);
  if (!consul.ok) return failure(`invalid environment: ${consul.error}`);
  const tunnel = parseTunnelSubnet(e.TSOVERLAY_WIREGUARD_SUBNET);
  if (!tunnel.ok) return failure(`invalid environment: TSOVERLAY_WIREGUARD_SUBNET: ${tunnel.error}`);
  return success({
    metricsAddr,
    logLevel: e.TSOVERLAY_LOG_LEVEL,
    sockets,
    socketGroup: e.TSOVERLAY_SOCKET_GROUP,
    consul: consul.value.connection,
    warnings: [...renamed.warnings, ...consul.value.warnings],
    advertiseAddr: e.TSOVERLAY_ADVERTISE_ADDR,
    advertiseIface: e.TSOVERLAY_ADVERTISE_IFACE,
    stateDir: e.TSOVERLAY_STATE_DIR,
    runDir: e.TSOVERLAY_RUN_DIR,
    procRoot: e.TSOVERLAY_PROC,
    vxlanPort: e.TSOVERLAY_VXLAN_PORT,
    reconcileMs: Math.round(e.TSOVERLAY_RECONCILE_S * 1000),
    gatewayBridge: e.TSOVERLAY_GATEWAY_BRIDGE,
    gatewaySubnet: e.TSOVERLAY_GATEWAY_SUBNET,
    wireguard: { subnet: tunnel.value, port: e.TSOVERLAY_WIREGUARD_PORT },
    proxyMode: e.TSOVERLAY_PROXY_MODE,
    proxyWorkers: e.TSOVERLAY_PROXY_WORKERS === "auto" ? Math.min(3, Math.max(0, Math.floor((availableParallelism() - 2) / 2))) : e.TSOVERLAY_PROXY_WORKERS,
    proxyTcp: {
      maxConns: e.TSOVERLAY_PROXY_TCP_CONNS,
      maxConnsPerSource: e.TSOVERLAY_PROXY_TCP_CONNS_PER_SOURCE,
      idleTimeoutMs: e.TSOVERLAY_PROXY_TCP_IDLE_S * 1000,
    },
    proxyUdp: {
      maxFlows: e.TSOVERLAY_PROXY_UDP_FLOWS,
      maxFlowsPerSource: e.TSOVERLAY_PROXY_UDP_FLOWS_PER_SOURCE,
      idleTimeoutMs: e.TSOVERLAY_PROXY_UDP_IDLE_S * 1000,
      unrepliedTimeoutMs: e.TSOVERLAY_PROXY_UDP_UNREPLIED_S * 1000,
    },
    storeRetryMs: Math.round(e.TSOVERLAY_STORE_RETRY_S * 1000),
    gcGraceMs: e.TSOVERLAY_GC_GRACE_S * 1000,
    gcIntervalMs: e.TSOVERLAY_GC_INTERVAL_S * 1000,
    dockerSocket: e.TSOVERLAY_DOCKER_SOCKET === "off" ? undefined : e.TSOVERLAY_DOCKER_SOCKET,
    propagate: e.TSOVERLAY_PROPAGATE,
    driverNames: list(e.TSOVERLAY_DRIVER_NAMES),
    dnsPort: e.TSOVERLAY_DNS ? e.TSOVERLAY_DNS_PORT : undefined,
    dnsUpstreams: e.TSOVERLAY_DNS_UPSTREAMS === undefined ? undefined : list(e.TSOVERLAY_DNS_UPSTREAMS),
    ipam: {
      ...(e.TSOVERLAY_POOL_RANGE === undefined ? {} : { poolRange: e.TSOVERLAY_POOL_RANGE }),
      ...(e.TSOVERLAY_POOL_SIZE === undefined ? {} : { poolSize: e.TSOVERLAY_POOL_SIZE }),
      ...(e.TSOVERLAY_VNI_RANGE === undefined ? {} : { vniRange: e.TSOVERLAY_VNI_RANGE }),
    },
  });
}

/**
 * "198.18.0.11:9473", "[::1]:9473", "0.0.0.0:9473" (every IPv4 address), "[::]:9473" (every address),
 * ":9473" (host undefined: the underlay address, known once the driver starts); null when it is none of these.
 * Metrics are unauthenticated: a bare port never means every address.
 */
function parseListenAddress(text: string): { host: string | undefined; port: number } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  if (m === null) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  const host = m[1] ?? m[2] ?? "";
  return { host: host === "" ? undefined : host, port };
}

function list(text: string): string[] {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
