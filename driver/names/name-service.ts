import type { EndpointRecord } from "../cluster/records.js";
import type { LocalEndpoint, LocalState } from "../local/local-state.js";
import type { NameDecision, NameQuestion, NameResolver } from "../contracts/names.js";
import { addressOf } from "../../lib/net.js";

/**
 * Names across hosts: which container names a container may resolve, and to
 * what.
 *
 * Design note. Docker's embedded DNS answers the names of its own host's
 * containers and forwards the rest to the daemon's `dns` servers, from the
 * container's own network namespace. tsoverlay's listener is one of those
 * servers; a forwarded query therefore arrives with the asking container's
 * overlay address as its source. That address names an endpoint of this host,
 * the endpoint names its sandbox (from Join), and the sandbox's endpoints name
 * every tsoverlay network the container is on: the scope, exactly as Docker
 * scopes names. Within the scope a name is a container name or a network
 * alias of any endpoint on any live host (the endpoint records the peer
 * watches already hold), so nothing else is stored or watched for names. A
 * source that is no endpoint of this host (a container on a Docker bridge,
 * the host itself) is forwarded as is: the listener must not break their DNS.
 *
 * `--internal` means no way out, names included. A container whose every
 * tsoverlay network is internal gets its networks' names and nothing from the
 * host's resolvers: a forwarded name is a way out for data (ask for
 * <secret>.attacker.example and the attacker's server reads it), the class of
 * CVE-2024-29018, which Docker closed (23.0.11, 25.0.5, 26.0) by not
 * forwarding for containers whose networks are all internal; its resolver
 * then answers SERVFAIL (daemon/libnetwork/resolver.go, serveDNS), and so do
 * we ("not-forwarded"). One non-internal network among them and the
 * container's questions are forwarded, as Docker does. A network whose record
 * this host does not hold counts as internal: a way out is granted only when
 * it is known. Only tsoverlay networks are seen here: a container on an
 * internal tsoverlay network and a Docker bridge asks from its overlay address
 * (the route to the name service goes through the overlay) and gets SERVFAIL;
 * Docker's resolver then asks the next of the daemon's `dns` servers through
 * the bridge.
 */
export interface NameServiceDeps {
  /** This host's endpoints (with their sandbox, from Join) and networks (with the cluster record Join keeps of each). */
  local: Pick<LocalState, "endpoints" | "getNetwork">;
  /** Every endpoint record of the network on live hosts, this host's included. */
  recordsOf: (subnet: string) => EndpointRecord[];
}

export class NameService implements NameResolver {
  constructor(private readonly d: NameServiceDeps) {}

  async decide(q: NameQuestion): Promise<NameDecision> {
    const scope = await this.scopeOf(q.source);
    if (scope.length === 0) return { kind: "forward" };
    const wanted = q.class === "IN" ? normalizeName(q.name) : "";
    if (wanted !== "") {
      const ips = new Set<string>();
      for (const subnet of new Set(scope.map((e) => e.subnet))) {
        for (const rec of this.d.recordsOf(subnet)) if (namesOf(rec).includes(wanted)) ips.add(rec.ip);
      }
      if (ips.size > 0) return q.type === "A" ? { kind: "addresses", ips: shuffled([...ips]) } : { kind: "no-data" };
    }
    return (await this.hasWayOut(scope)) ? { kind: "forward" } : { kind: "not-forwarded" };
  }

  /** The endpoints here of the container with this address: one per tsoverlay network it is on ([] if it is none of ours). */
  private async scopeOf(source: string): Promise<LocalEndpoint[]> {
    const eps = await this.d.local.endpoints();
    const asker = eps.find((e) => addressOf(e.addressCidr) === source);
    if (asker === undefined) return [];
    if (asker.sandbox === undefined) return [asker];
    return eps.filter((e) => e.sandbox === asker.sandbox);
  }

  /** True when one of the container's networks is known not to be --internal (see the design note). */
  private async hasWayOut(scope: LocalEndpoint[]): Promise<boolean> {
    for (const networkId of new Set(scope.map((e) => e.networkId))) {
      const rec = (await this.d.local.getNetwork(networkId))?.record;
      if (rec !== undefined && rec.internal !== true) return true;
    }
    return false;
  }
}

/** The names a record answers to: the container's name and its network aliases, lower case. */
export function namesOf(rec: EndpointRecord): string[] {
  const all = [...(rec.names ?? []), ...(rec.name === undefined ? [] : [rec.name])];
  return [...new Set(all.map(normalizeName).filter((n) => n !== ""))];
}

/** DNS names compare without case and without the root's trailing dot. */
export function normalizeName(name: string): string {
  return name.replace(/\.$/, "").toLowerCase();
}

/** Docker answers several addresses of one name in a random order (round robin for clients that take the first). */
function shuffled<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}
