import { z } from "zod";

/**
 * Cluster records, as stored under the keys of keys.ts (JSON values). Every
 * reader parses with these schemas and then checks what a schema cannot
 * (record-checks.ts): a record is another host's word, never trusted as is.
 * Strings that only name things are bounded, so that a forged record cannot
 * make every host hold or print megabytes.
 */
const Name = z.string().max(255);

/** `by-host/<host>/alive` (and revision 1's `hosts/<host>`): a live host, as it describes itself. */
export const HostRecord = z.object({
  hostId: z.string().max(64),
  vtep: z.string().max(64),
  hostname: Name,
  startedAt: z.string().max(64),
  /** The plugin's version, and the Docker daemon's once it has answered (`tsoverlay hosts`). */
  pluginVersion: z.string().max(64).optional(),
  dockerVersion: z.string().max(64).optional(),
  /** The host's WireGuard public key (encrypted networks); its private key never leaves the host. */
  wireguardKey: z.string().max(64).optional(),
});
export type HostRecord = z.infer<typeof HostRecord>;

export const NetworkRecord = z.object({
  subnet: z.string(),
  gatewayCidr: z.string(),
  vni: z.number().int(),
  /** The MTU asked for with -o; absent = each host derives it from its underlay. */
  mtu: z.number().int().optional(),
  /** `-o proxy-protocol=v1|v2`: published ports send a PROXY header to the container. */
  proxyProtocol: z.enum(["v1", "v2"]).optional(),
  /** `--internal`: no way out (no uplink, no NAT, no gateway for containers, no published ports). */
  internal: z.boolean().optional(),
  /** `-o com.docker.network.container_iface_prefix=…`: the container's interface name prefix. */
  ifacePrefix: z.string().optional(),
  /** `-o encrypted`: its VXLAN runs between the hosts' tunnel addresses, inside WireGuard. */
  encrypted: z.boolean().optional(),
  createdAt: z.string(),
});
export type NetworkRecord = z.infer<typeof NetworkRecord>;

export const NetworkHostRecord = z.object({ hostId: z.string(), networkId: z.string() });
export type NetworkHostRecord = z.infer<typeof NetworkHostRecord>;

/** A published port as the cluster sees it (`tsoverlay ps` on any host): which host port reaches which container port, and what carries it. */
export const RecordPort = z.object({
  proto: z.enum(["tcp", "udp"]),
  hostIp: z.string(),
  hostPort: z.number().int(),
  containerPort: z.number().int(),
  /** "dnat": the kernel forwards non-loopback IPv4 (the proxy keeps the rest); "proxy": the userland proxy carries all. */
  via: z.enum(["dnat", "proxy"]),
});
export type RecordPort = z.infer<typeof RecordPort>;

export const EndpointRecord = z.object({
  endpointId: z.string().max(128),
  networkId: z.string().max(128),
  hostId: z.string().max(64),
  vtep: z.string().max(64),
  ip: z.string().max(64),
  mac: z.string().max(64),
  /** The endpoint name Docker gave the IPAM: the container's name on 29; on 28, its short ID (as seen on the lab). */
  name: Name.optional(),
  /** Every name the container answers to on this network: its name and its network aliases (from the Docker API). */
  names: z.array(Name).max(256).optional(),
  /** Its published ports (absent: none, or written by an older plugin). */
  ports: z.array(RecordPort).optional(),
});
export type EndpointRecord = z.infer<typeof EndpointRecord>;

/** `gone/<host>`: a host seen gone, since when, and who collects its records. */
export const GoneMarker = z.object({
  since: z.string(),
  by: z.string(),
  collector: z.string().optional(),
  claimedAt: z.string().optional(),
  /** Set once collected when the store refused deleting the host's own records (a per-host ACL policy): why, and how an operator removes them. */
  leftover: z.string().optional(),
});
export type GoneMarker = z.infer<typeof GoneMarker>;

export function parseRecord<T>(schema: z.ZodType<T>, value: string): T | undefined {
  try {
    const r = schema.safeParse(JSON.parse(value));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
