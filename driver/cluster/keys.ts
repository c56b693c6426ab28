/**
 * Cluster key layout (Consul KV, or the embedded store on a single host).
 * Everything lives under one root so that a cluster can be inspected or wiped
 * with one prefix. A network's cluster identity is its IPv4 subnet; keys carry
 * the subnet in a slash-free form ("10.10.0.0/24" → "10.10.0.0_24").
 *
 *   tsoverlay/v1/hosts/<hostId>                       host record, ephemeral (session TTL)
 *   tsoverlay/v1/pools/<subnet>                       pool record (subnet, name?)
 *   tsoverlay/v1/pools/<subnet>/refs/<hostId>         this host holds the pool (when it took it)
 *   tsoverlay/v1/pools/<subnet>/cursor                the address last handed out (allocation goes on after it)
 *   tsoverlay/v1/names/<name>                         --ipam-opt name=… → subnet
 *   tsoverlay/v1/addresses/<subnet>/<ip>              one allocated address (create-only CAS)
 *   tsoverlay/v1/vnis/<vni>                           VNI claim → subnet (create-only CAS)
 *   tsoverlay/v1/networks/<subnet>                    network record (vni, gateway, mtu, options)
 *   tsoverlay/v1/networks/<subnet>/hosts/<hostId>     this host has the network (its Docker NetworkID)
 *   tsoverlay/v1/endpoints/<subnet>/<endpointId>      endpoint (ip, mac, host, vtep) — what peers program
 *   tsoverlay/v1/gone/<hostId>                        a host seen gone (since when; who collects its records)
 *   tsoverlay/v1/catalog/<name>                       a Docker network name, cluster-wide: how to create it, or that it was removed
 *   tsoverlay/v1/asks/<id>                            a question to every host (`tsoverlay peers`), short-lived
 *   tsoverlay/v1/answers/<id>/<hostId>                one host's answer to it
 */
const ROOT = "tsoverlay/v1";

export function subnetKey(subnet: string): string {
  return subnet.replace("/", "_");
}

export function subnetFromKey(key: string): string {
  return key.replace("_", "/");
}

export const keys = {
  hosts: () => `${ROOT}/hosts/`,
  host: (hostId: string) => `${ROOT}/hosts/${hostId}`,
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
  allEndpoints: () => `${ROOT}/endpoints/`,
  catalog: () => `${ROOT}/catalog/`,
  catalogEntry: (name: string) => `${ROOT}/catalog/${name}`,
  gone: () => `${ROOT}/gone/`,
  goneHost: (hostId: string) => `${ROOT}/gone/${hostId}`,
  asks: () => `${ROOT}/asks/`,
  ask: (id: string) => `${ROOT}/asks/${id}`,
  answers: (id: string) => `${ROOT}/answers/${id}/`,
  answer: (id: string, hostId: string) => `${ROOT}/answers/${id}/${hostId}`,
  endpoints: (subnet: string) => `${ROOT}/endpoints/${subnetKey(subnet)}/`,
  endpoint: (subnet: string, endpointId: string) => `${ROOT}/endpoints/${subnetKey(subnet)}/${endpointId}`,
};
