import { describe, expect, it } from "vitest";
import type { EndpointRecord } from "../../driver/cluster/records.js";
import type { LocalEndpoint } from "../../driver/local/local-state.js";
import { NameService } from "../../driver/names/name-service.js";

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
const service = new NameService({ localEndpoints: async () => local, recordsOf: (s) => records[s] ?? [] });
const ask = (name: string, source: string, type: "A" | "AAAA" | "other" = "A") => service.decide({ name, type, source });

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
