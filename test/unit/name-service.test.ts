import { describe, expect, it } from "vitest";
import type { EndpointRecord } from "../../driver/cluster/records.js";
import type { LocalEndpoint } from "../../driver/local/local-state.js";
import { NameService, type NameServiceDeps } from "../../driver/names/name-service.js";

/** Two networks; this host has containers on both (one of them on both); other hosts' records as the peer watches hold them. */
const local: LocalEndpoint[] = [
  { endpointId: "e1", networkId: "n1", subnet: "10.70.0.0/24", addressCidr: "10.70.0.2/24", mac: "02:00:00:00:00:01", sandbox: "/var/run/docker/netns/a" },
  { endpointId: "e2", networkId: "n2", subnet: "10.71.0.0/24", addressCidr: "10.71.0.2/24", mac: "02:00:00:00:00:02", sandbox: "/var/run/docker/netns/a" },
  { endpointId: "e3", networkId: "n2", subnet: "10.71.0.0/24", addressCidr: "10.71.0.3/24", mac: "02:00:00:00:00:03", sandbox: "/var/run/docker/netns/b" },
];
const rec = (subnet: string, ip: string, host: string, names: string[]): EndpointRecord => ({
  endpointId: `${host}-${ip}`,
  networkId: subnet,
  hostId: host,
  vtep: host,
  ip,
  mac: "02:00:00:00:00:ff",
  names,
});
const records: Record<string, EndpointRecord[]> = {
  "10.70.0.0/24": [rec("10.70.0.0/24", "10.70.0.9", "h2", ["web", "api"]), rec("10.70.0.0/24", "10.70.0.10", "h3", ["api"])],
  "10.71.0.0/24": [rec("10.71.0.0/24", "10.71.0.9", "h2", ["db"]), { ...rec("10.71.0.0/24", "10.71.0.11", "h3", []), name: "Cache" }],
};
/** This host's local state as the name service reads it: its endpoints, and its networks' records (internal or not). */
function localState(endpoints: LocalEndpoint[], internal: Record<string, boolean>): NameServiceDeps["local"] {
  return {
    endpoints: async () => endpoints,
    getNetwork: async (networkId) => {
      const isInternal = internal[networkId];
      if (isInternal === undefined) return undefined;
      const record = { subnet: "", gatewayCidr: "", vni: 1, createdAt: "", ...(isInternal ? { internal: true } : {}) };
      return { networkId, subnet: "", record };
    },
  };
}
const service = new NameService({ local: localState(local, { n1: false, n2: false }), recordsOf: (s) => records[s] ?? [] });
const ask = (name: string, source: string, type: "A" | "AAAA" | "other" = "A") => service.decide({ name, type, class: "IN", source });

describe("the name service", () => {
  it("answers a container with the names of every tsoverlay network it is on, on any host", async () => {
    expect(await ask("web", "10.70.0.2")).toEqual({ kind: "addresses", ips: ["10.70.0.9"] });
    // The same container (sandbox a) is on n2 too: it resolves db, through either of its addresses.
    expect(await ask("db", "10.70.0.2")).toEqual({ kind: "addresses", ips: ["10.71.0.9"] });
    expect(await ask("db.", "10.71.0.2")).toEqual({ kind: "addresses", ips: ["10.71.0.9"] });
  });

  it("never answers names of a network the asking container is not on", async () => {
    // sandbox b is on n2 only: web (n1) is not its to resolve; it goes to the host's resolvers like any unknown name.
    expect(await ask("web", "10.71.0.3")).toEqual({ kind: "forward" });
    expect(await ask("db", "10.71.0.3")).toEqual({ kind: "addresses", ips: ["10.71.0.9"] });
  });

  it("an alias shared by containers on two hosts answers with both, in varying order", async () => {
    const orders = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const r = await ask("API", "10.70.0.2");
      expect(r.kind).toBe("addresses");
      if (r.kind === "addresses") {
        expect([...r.ips].sort()).toEqual(["10.70.0.10", "10.70.0.9"]);
        orders.add(r.ips.join(","));
      }
    }
    expect(orders.size).toBe(2);
  });

  it("a known name has no IPv6 or other records (no data); Docker 29's container name counts, in any case", async () => {
    expect(await ask("web", "10.70.0.2", "AAAA")).toEqual({ kind: "no-data" });
    expect(await ask("web", "10.70.0.2", "other")).toEqual({ kind: "no-data" });
    expect(await ask("cache", "10.71.0.3")).toEqual({ kind: "addresses", ips: ["10.71.0.11"] });
  });

  it("forwards what is not an overlay name, and everything from clients that are not our containers", async () => {
    expect(await ask("example.org", "10.70.0.2")).toEqual({ kind: "forward" });
    expect(await ask("web", "172.17.0.2")).toEqual({ kind: "forward" });
    expect(await ask("web", "127.0.0.1")).toEqual({ kind: "forward" });
    expect(await ask("", "10.70.0.2")).toEqual({ kind: "forward" });
  });
});

describe("the name service and --internal networks", () => {
  // n3 is --internal, n1 is not. Container c is on n3 only; container d is on n3 and n1; e is on n4, whose record this host does not hold.
  const eps: LocalEndpoint[] = [
    { endpointId: "c3", networkId: "n3", subnet: "10.72.0.0/24", addressCidr: "10.72.0.2/24", mac: "02:00:00:00:00:04", sandbox: "/netns/c" },
    { endpointId: "d3", networkId: "n3", subnet: "10.72.0.0/24", addressCidr: "10.72.0.3/24", mac: "02:00:00:00:00:05", sandbox: "/netns/d" },
    { endpointId: "d1", networkId: "n1", subnet: "10.70.0.0/24", addressCidr: "10.70.0.3/24", mac: "02:00:00:00:00:06", sandbox: "/netns/d" },
    { endpointId: "e4", networkId: "n4", subnet: "10.73.0.0/24", addressCidr: "10.73.0.2/24", mac: "02:00:00:00:00:07", sandbox: "/netns/e" },
  ];
  const recs: Record<string, EndpointRecord[]> = {
    "10.72.0.0/24": [rec("10.72.0.0/24", "10.72.0.9", "h2", ["vault"])],
    "10.70.0.0/24": [rec("10.70.0.0/24", "10.70.0.9", "h2", ["web"])],
  };
  const names = new NameService({ local: localState(eps, { n1: false, n3: true }), recordsOf: (s) => recs[s] ?? [] });
  const askAs = (source: string, name: string, type: "A" | "AAAA" | "other" = "A", klass: "IN" | "other" = "IN") =>
    names.decide({ name, type, class: klass, source });

  it("a container only on internal networks gets its networks' names and nothing forwarded, whatever it asks", async () => {
    expect(await askAs("10.72.0.2", "vault")).toEqual({ kind: "addresses", ips: ["10.72.0.9"] });
    expect(await askAs("10.72.0.2", "vault", "AAAA")).toEqual({ kind: "no-data" });
    expect(await askAs("10.72.0.2", "outside.lab")).toEqual({ kind: "not-forwarded" });
    expect(await askAs("10.72.0.2", "secret.attacker.example", "other")).toEqual({ kind: "not-forwarded" });
    // Another class (CH TXT version.bind and the like), or the root: not out either.
    expect(await askAs("10.72.0.2", "version.bind", "other", "other")).toEqual({ kind: "not-forwarded" });
    expect(await askAs("10.72.0.2", "")).toEqual({ kind: "not-forwarded" });
    // A name of a network it is not on is no way out either.
    expect(await askAs("10.72.0.2", "web")).toEqual({ kind: "not-forwarded" });
  });

  it("a container on an internal and a non-internal network is forwarded, as Docker does; it resolves both networks' names", async () => {
    for (const source of ["10.72.0.3", "10.70.0.3"]) {
      expect(await askAs(source, "outside.lab")).toEqual({ kind: "forward" });
      expect(await askAs(source, "vault")).toEqual({ kind: "addresses", ips: ["10.72.0.9"] });
      expect(await askAs(source, "web")).toEqual({ kind: "addresses", ips: ["10.70.0.9"] });
      expect(await askAs(source, "version.bind", "other", "other")).toEqual({ kind: "forward" });
    }
  });

  it("a network whose record this host does not hold gives no way out; a client that is none of our containers is forwarded as before", async () => {
    expect(await askAs("10.73.0.2", "outside.lab")).toEqual({ kind: "not-forwarded" });
    expect(await askAs("172.17.0.2", "outside.lab")).toEqual({ kind: "forward" });
    expect(await askAs("172.17.0.2", "version.bind", "other", "other")).toEqual({ kind: "forward" });
  });

  it("a question of another class is never answered with our names", async () => {
    expect(await askAs("10.70.0.3", "web", "A", "other")).toEqual({ kind: "forward" });
  });
});
