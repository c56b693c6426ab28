import type { EndpointRecord } from "../cluster/records.js";
import type { LocalEndpoint } from "../local/local-state.js";
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
 */
export interface NameServiceDeps {
  /** This host's endpoints (with their sandbox, from Join). */
  localEndpoints: () => Promise<LocalEndpoint[]>;
  /** Every endpoint record of the network on live hosts, this host's included. */
  recordsOf: (subnet: string) => EndpointRecord[];
}

export class NameService implements NameResolver {
  constructor(private readonly d: NameServiceDeps) {}

  async decide(q: NameQuestion): Promise<NameDecision> {
    const scope = await this.scopeOf(q.source);
    if (scope.length === 0) return { kind: "forward" };
    const wanted = normalizeName(q.name);
    if (wanted === "") return { kind: "forward" };
    const ips = new Set<string>();
    for (const subnet of scope) {
      for (const rec of this.d.recordsOf(subnet)) if (namesOf(rec).includes(wanted)) ips.add(rec.ip);
    }
    if (ips.size === 0) return { kind: "forward" };
    if (q.type !== "A") return { kind: "no-data" };
    return { kind: "addresses", ips: shuffled([...ips]) };
  }

  /** The subnets of every tsoverlay network the container with this address is on ([] if it is none of ours). */
  private async scopeOf(source: string): Promise<string[]> {
    const eps = await this.d.localEndpoints();
    const asker = eps.find((e) => addressOf(e.addressCidr) === source);
    if (asker === undefined) return [];
    if (asker.sandbox === undefined) return [asker.subnet];
    return [...new Set(eps.filter((e) => e.sandbox === asker.sandbox).map((e) => e.subnet))];
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
