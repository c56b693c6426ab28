/**
 * The name service, as the DNS listener (driver/dns) sees it: one question
 * from one client address in, what to do with it out. The listener owns the
 * wire format, the sockets and the forwarding; the domain decides.
 */
export type QueryType = "A" | "AAAA" | "other";

export interface NameQuestion {
  /** As asked, any case, with or without the trailing dot. */
  name: string;
  type: QueryType;
  /** Only class IN questions are about our names; the others are asked so that the resolver can say whether they may go out. */
  class: "IN" | "other";
  /** The client's address as the listener saw it (no port). */
  source: string;
}

export type NameDecision =
  /** A name of the asker's overlay networks: these IPv4 addresses (already in round-robin order). */
  | { kind: "addresses"; ips: string[] }
  /** A name of the asker's overlay networks that has no record of this type (IPv6, MX, …). */
  | { kind: "no-data" }
  /** Not ours to answer: relay the query to the host's resolvers unchanged. */
  | { kind: "forward" }
  /**
   * Not ours to answer, and the asker has no way out (its container is only
   * on --internal networks): never relayed; SERVFAIL, as Docker's resolver
   * answers when it does not forward.
   */
  | { kind: "not-forwarded" };

export interface NameResolver {
  decide(q: NameQuestion): Promise<NameDecision>;
}
