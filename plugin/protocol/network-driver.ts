import { z } from "zod";

/**
 * libnetwork remote NetworkDriver request shapes (Docker 20.10+). Fields the
 * daemon always sends are required; the rest are optional. Unknown fields are
 * tolerated: newer daemons add keys.
 */
const Id = z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, "must be a non-empty identifier");
const Cidr = z.string().regex(/^[0-9a-fA-F.:]+\/\d{1,3}$/, "must be an address in CIDR form");
const StringMap = z.record(z.string(), z.string());

const IpamData = z.object({
  AddressSpace: z.string().default(""),
  Pool: Cidr,
  Gateway: Cidr.optional(),
  AuxAddresses: z.record(z.string(), Cidr).nullish(),
});
export type IpamData = z.infer<typeof IpamData>;

const NetworkOptions = z
  .object({
    "com.docker.network.generic": z.record(z.string(), z.unknown()).nullish(),
    "com.docker.network.enable_ipv6": z.boolean().optional(),
    "com.docker.network.internal": z.boolean().optional(),
  })
  .passthrough();

export const CreateNetworkRequest = z.object({
  NetworkID: Id,
  Options: NetworkOptions.nullish(),
  IPv4Data: z.array(IpamData).nullish(),
  IPv6Data: z.array(IpamData).nullish(),
});
export type CreateNetworkRequest = z.infer<typeof CreateNetworkRequest>;

export const NetworkIdRequest = z.object({ NetworkID: Id });

export const AllocateNetworkRequest = z.object({
  NetworkID: Id,
  Options: StringMap.nullish(),
  IPv4Data: z.array(IpamData).nullish(),
  IPv6Data: z.array(IpamData).nullish(),
});

export const PortBinding = z.object({
  Proto: z.number().int(),
  IP: z.string().optional(),
  Port: z.number().int().min(0).max(65535),
  HostIP: z.string().optional(),
  HostPort: z.number().int().min(0).max(65535),
  HostPortEnd: z.number().int().min(0).max(65535),
});
export type PortBinding = z.infer<typeof PortBinding>;

const ExposedPort = z.object({ Proto: z.number().int(), Port: z.number().int().min(0).max(65535) });

const EndpointOptions = z
  .object({
    "com.docker.network.portmap": z.array(PortBinding).nullish(),
    "com.docker.network.endpoint.exposedports": z.array(ExposedPort).nullish(),
  })
  .passthrough();

const EndpointInterface = z.object({
  Address: z.string().default(""),
  AddressIPv6: z.string().default(""),
  MacAddress: z.string().default(""),
});

export const CreateEndpointRequest = z.object({
  NetworkID: Id,
  EndpointID: Id,
  Interface: EndpointInterface.nullish(),
  Options: EndpointOptions.nullish(),
});
export type CreateEndpointRequest = z.infer<typeof CreateEndpointRequest>;

export const EndpointIdRequest = z.object({ NetworkID: Id, EndpointID: Id });

export const JoinRequest = z.object({
  NetworkID: Id,
  EndpointID: Id,
  SandboxKey: z.string().min(1),
  Options: EndpointOptions.nullish(),
});
export type JoinRequest = z.infer<typeof JoinRequest>;

/** Docker 28+: true when another endpoint of the container is its IPv6 gateway (so this one must not proxy IPv6 to IPv4). */
export const NO_PROXY_6TO4 = "com.docker.network.driver.private.no_proxy_6to4";

export const ProgramExternalConnectivityRequest = z.object({
  NetworkID: Id,
  EndpointID: Id,
  Options: EndpointOptions.extend({ [NO_PROXY_6TO4]: z.boolean().optional() })
    .passthrough()
    .nullish(),
});

export const DiscoveryRequest = z.object({
  DiscoveryType: z.number().int(),
  DiscoveryData: z.unknown(),
});
