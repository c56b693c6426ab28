import { afterEach, describe, expect, it } from "vitest";
import { WireGuardPeers } from "../../driver/encryption/wireguard-peers.js";
import type { HostRegistry } from "../../driver/hosts/host-registry.js";
import type { WireGuardPeer, WireGuardPort, WireGuardState } from "../../driver/contracts/wireguard.js";
import type { HostRecord } from "../../driver/cluster/records.js";
import { createLogger } from "../../lib/log.js";

const KEY = (c: string): string => `${c.repeat(42)}A=`;
const SELF = { hostId: "10.99.0.11", vtep: "10.99.0.11", wireguardKey: KEY("a") };

/** The part of the host registry WireGuardPeers reads, over a fixed list of live hosts. */
function registry(live: HostRecord[]): HostRegistry & { published: string[] } {
  const published: string[] = [];
  const self = { ...SELF };
  return {
    self,
    ready: true,
    hosts: () => live,
    onChange: () => () => undefined,
    describeWireGuard: async (k: string) => {
      self.wireguardKey = k;
      published.push(k);
    },
    published,
  } as unknown as HostRegistry & { published: string[] };
}

function host(vtep: string, key?: string): HostRecord {
  return { hostId: vtep, vtep, hostname: vtep, startedAt: "", ...(key === undefined ? {} : { wireguardKey: key }) };
}

class FakePort implements WireGuardPort {
  peers: WireGuardPeer[] = [];
  ensured = 0;
  rotations = 0;
  async ensure(): Promise<"userspace"> {
    this.ensured++;
    return "userspace";
  }
  async syncPeers(peers: readonly WireGuardPeer[]): Promise<{ added: number; removed: number }> {
    this.peers = [...peers];
    return { added: peers.length, removed: 0 };
  }
  async state(): Promise<WireGuardState | undefined> {
    return undefined;
  }
  async rotateKey(): Promise<string> {
    this.rotations++;
    return KEY("z");
  }
}

const made: WireGuardPeers[] = [];
function peersOf(live: HostRecord[], port = new FakePort(), publicKey: string | null = SELF.wireguardKey) {
  const hosts = registry(live);
  const w = new WireGuardPeers(
    hosts,
    port,
    { subnet: { base: "100.76.0.0", prefix: 16 }, port: 51820, ...(publicKey === null ? {} : { publicKey }) },
    createLogger("silent"),
    60_000,
  );
  made.push(w);
  return { w, port, hosts };
}
afterEach(() => made.splice(0).forEach((w) => w.stop()));

describe("WireGuard peers (encrypted networks)", () => {
  it("makes every other live host with a key a peer: its key, VTEP:port, its tunnel address alone", async () => {
    const { w, port } = peersOf([host("10.99.0.11", SELF.wireguardKey), host("10.99.0.12", KEY("b")), host("10.99.0.13", KEY("c"))]);
    expect(port.ensured).toBe(0); // nothing before the first encrypted network
    await w.activate();
    expect(port.ensured).toBe(1);
    expect(port.peers).toEqual([
      { publicKey: KEY("b"), endpoint: "10.99.0.12:51820", allowedIp: "100.76.0.12/32" },
      { publicKey: KEY("c"), endpoint: "10.99.0.13:51820", allowedIp: "100.76.0.13/32" },
    ]);
    expect(w.selfAddress).toBe("100.76.0.11");
  });

  it("leaves out, with the reason, a host without a key, one whose tunnel address collides, and one that shows this host's key; two hosts sharing a key are both left out", () => {
    const { w } = peersOf([
      host("10.99.0.11", SELF.wireguardKey),
      host("10.99.0.12"),
      host("10.98.0.20", KEY("d")),
      host("10.97.0.20", KEY("e")),
      host("10.99.0.14", SELF.wireguardKey),
      host("10.99.0.15", KEY("f")),
      host("10.99.0.16", KEY("f")),
    ]);
    const d = w.desired();
    expect(d.peers).toEqual([]);
    expect(d.leftOut.map((l) => [l.hostId, l.why.split(" ").slice(0, 4).join(" ")])).toEqual([
      ["10.99.0.12", "its record has no"],
      ["10.98.0.20", "its tunnel address 100.76.0.20"],
      ["10.97.0.20", "its tunnel address 100.76.0.20"],
      ["10.99.0.14", "it publishes this host's"],
    ]);
  });

  it("refuses to bring WireGuard up, or rotate, without a key of its own", async () => {
    const { w, port } = peersOf([host("10.99.0.12", KEY("b"))], new FakePort(), null);
    await expect(w.activate()).rejects.toThrow(/no WireGuard key/);
    await expect(w.rotate()).rejects.toThrow(/no WireGuard key/);
    expect(port.ensured + port.rotations).toBe(0);
  });

  it("rotation hands the new key to WireGuard first, then publishes it", async () => {
    const live = [host("10.99.0.12", KEY("b"))];
    const { w, port, hosts } = peersOf(live);
    expect(await w.rotate()).toEqual({ publicKey: KEY("z") });
    expect(port.rotations).toBe(1);
    expect(hosts.published).toEqual([KEY("z")]);
    // The new key is this host's own from now on: another record showing it is no peer.
    live.push(host("10.99.0.13", KEY("z")));
    expect(w.desired().leftOut).toEqual([{ hostId: "10.99.0.13", why: "it publishes this host's own public key" }]);
  });
});
