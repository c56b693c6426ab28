/**
 * Cluster key layout (Consul KV, or the embedded store on a single host).
 * Everything lives under one root so that a cluster can be inspected or wiped
 * with one prefix. A network's cluster identity is its IPv4 subnet; keys carry
 * the subnet in a slash-free form ("10.10.0.0/24" → "10.10.0.0_24").
 *
 * Layout revision 2 (layout.ts): what one host alone writes lives under a
 * prefix of its own, `by-host/<hostId>/`, so that a Consul ACL policy can give
 * each host write on its own prefix and read on everyone else's; the shared
 * records keep the paths and formats of revision 1, so hosts of both
 * revisions never disagree about pools, addresses, VNIs, networks or names.
 *
 *   tsoverlay/v1/layout                                       layout revision marker, written once (create-only)
 *   tsoverlay/v1/by-host/<hostId>/alive                       host record, ephemeral (session TTL)
 *   tsoverlay/v1/by-host/<hostId>/endpoints/<subnet>/<ep>     endpoint (ip, mac, host, vtep) — what peers program
 *   tsoverlay/v1/by-host/<hostId>/answers/<askId>             this host's answer to a question
 *   tsoverlay/v1/pools/<subnet>                               pool record (subnet, name?)
 *   tsoverlay/v1/pools/<subnet>/refs/<hostId>                 this host holds the pool (when it took it)
 *   tsoverlay/v1/pools/<subnet>/cursor                        the address last handed out (allocation goes on after it)
 *   tsoverlay/v1/names/<name>                                 --ipam-opt name=… → subnet
 *   tsoverlay/v1/addresses/<subnet>/<ip>                      one allocated address (create-only CAS)
 *   tsoverlay/v1/vnis/<vni>                                   VNI claim → subnet (create-only CAS)
 *   tsoverlay/v1/networks/<subnet>                            network record (vni, gateway, mtu, options)
 *   tsoverlay/v1/networks/<subnet>/hosts/<hostId>             this host has the network (its Docker NetworkID)
 *   tsoverlay/v1/gone/<hostId>                                a host seen gone (since when; who collects its records)
 *   tsoverlay/v1/catalog/<name>                               a Docker network name, cluster-wide: how to create it, or that it was removed
 *   tsoverlay/v1/asks/<id>                                    a question to every host (`tsoverlay peers`), ephemeral
 *
 * Revision 1 kept the per-host records in shared prefixes; they are still
 * read from hosts that run it, and written beside the new ones while such a
 * host is alive (previous-layout.ts):
 *
 *   tsoverlay/v1/hosts/<hostId>                               host record, ephemeral
 *   tsoverlay/v1/endpoints/<subnet>/<ep>                      endpoint record
 *   tsoverlay/v1/answers/<askId>/<hostId>                     one host's answer
 *
 * A host id is its VTEP address, so it never holds a "/"; a key segment taken
 * back from a key (the parsers below) is whatever lies between two slashes.
 */
const ROOT = "tsoverlay/v1";

export function subnetKey(subnet: string): string {
  return subnet.replace("/", "_");
}

export function subnetFromKey(key: string): string {
  return key.replace("_", "/");
}

export const keys = {
  layout: () => `${ROOT}/layout`,
  byHost: () => `${ROOT}/by-host/`,
  hostPrefix: (hostId: string) => `${ROOT}/by-host/${hostId}/`,
  alive: (hostId: string) => `${ROOT}/by-host/${hostId}/alive`,
  hostEndpoints: (hostId: string) => `${ROOT}/by-host/${hostId}/endpoints/`,
  hostEndpointsOn: (hostId: string, subnet: string) => `${ROOT}/by-host/${hostId}/endpoints/${subnetKey(subnet)}/`,
  hostEndpoint: (hostId: string, subnet: string, endpointId: string) => `${ROOT}/by-host/${hostId}/endpoints/${subnetKey(subnet)}/${endpointId}`,
  hostAnswers: (hostId: string) => `${ROOT}/by-host/${hostId}/answers/`,
  hostAnswer: (hostId: string, askId: string) => `${ROOT}/by-host/${hostId}/answers/${askId}`,
  pools: () => `${ROOT}/pools/`,
  pool: (subnet: string) => `${ROOT}/pools/${subnetKey(subnet)}`,
  poolRefs: (subnet: string) => `${ROOT}/pools/${subnetKey(subnet)}/refs/`,
  poolRef: (subnet: string, hostId: string) => `${ROOT}/pools/${subnetKey(subnet)}/refs/${hostId}`,
  addressCursor: (subnet: string) => `${ROOT}/pools/${subnetKey(subnet)}/cursor`,
  names: () => `${ROOT}/names/`,
  name: (name: string) => `${ROOT}/names/${name}`,
  addresses: (subnet: string) => `${ROOT}/addresses/${subnetKey(subnet)}/`,
  address: (subnet: string, ip: string) => `${ROOT}/addresses/${subnetKey(subnet)}/${ip}`,
  vnis: () => `${ROOT}/vnis/`,
  vni: (vni: number) => `${ROOT}/vnis/${vni}`,
  network: (subnet: string) => `${ROOT}/networks/${subnetKey(subnet)}`,
  networkHosts: (subnet: string) => `${ROOT}/networks/${subnetKey(subnet)}/hosts/`,
  networkHost: (subnet: string, hostId: string) => `${ROOT}/networks/${subnetKey(subnet)}/hosts/${hostId}`,
  allAddresses: () => `${ROOT}/addresses/`,
  allNetworks: () => `${ROOT}/networks/`,
  catalog: () => `${ROOT}/catalog/`,
  catalogEntry: (name: string) => `${ROOT}/catalog/${name}`,
  gone: () => `${ROOT}/gone/`,
  goneHost: (hostId: string) => `${ROOT}/gone/${hostId}`,
  asks: () => `${ROOT}/asks/`,
  ask: (id: string) => `${ROOT}/asks/${id}`,
};

/** Revision 1's per-host keys (see the note at the top): read from hosts that run it, written beside the new ones while they live. */
export const previousKeys = {
  hosts: () => `${ROOT}/hosts/`,
  host: (hostId: string) => `${ROOT}/hosts/${hostId}`,
  allEndpoints: () => `${ROOT}/endpoints/`,
  endpoints: (subnet: string) => `${ROOT}/endpoints/${subnetKey(subnet)}/`,
  endpoint: (subnet: string, endpointId: string) => `${ROOT}/endpoints/${subnetKey(subnet)}/${endpointId}`,
  answers: (askId: string) => `${ROOT}/answers/${askId}/`,
  answer: (askId: string, hostId: string) => `${ROOT}/answers/${askId}/${hostId}`,
};

/** What a key under `by-host/` is, by its shape; undefined for any other shape. */
export type ByHostKey =
  | { kind: "alive"; hostId: string }
  | { kind: "endpoint"; hostId: string; subnet: string; endpointId: string }
  | { kind: "answer"; hostId: string; askId: string };

export function parseByHostKey(key: string): ByHostKey | undefined {
  const prefix = keys.byHost();
  if (!key.startsWith(prefix)) return undefined;
  const parts = key.slice(prefix.length).split("/");
  const [hostId, kind] = parts;
  if (hostId === undefined || hostId === "") return undefined;
  if (kind === "alive" && parts.length === 2) return { kind: "alive", hostId };
  if (kind === "endpoints" && parts.length === 4 && parts[2] !== "" && parts[3] !== "") {
    return { kind: "endpoint", hostId, subnet: subnetFromKey(parts[2]!), endpointId: parts[3]! };
  }
  if (kind === "answers" && parts.length === 3 && parts[2] !== "") return { kind: "answer", hostId, askId: parts[2]! };
  return undefined;
}

/** `hosts/<hostId>` → the host id; undefined for any other shape. */
export function parsePreviousHostKey(key: string): string | undefined {
  const rest = key.startsWith(previousKeys.hosts()) ? key.slice(previousKeys.hosts().length) : undefined;
  return rest === undefined || rest === "" || rest.includes("/") ? undefined : rest;
}

/** `endpoints/<subnet>/<ep>` → its subnet and endpoint id; undefined for any other shape. */
export function parsePreviousEndpointKey(key: string): { subnet: string; endpointId: string } | undefined {
  const prefix = previousKeys.allEndpoints();
  if (!key.startsWith(prefix)) return undefined;
  const m = /^([^/]+)\/([^/]+)$/.exec(key.slice(prefix.length));
  return m === null ? undefined : { subnet: subnetFromKey(m[1]!), endpointId: m[2]! };
}
