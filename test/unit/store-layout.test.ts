/**
 * Layout revision 2 of the cluster store (driver/cluster/keys.ts, layout.ts,
 * previous-layout.ts): a cluster upgraded host by host, the revision marker,
 * and hosts held to least privilege by the README's ACL policy.
 */
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { keys, parseByHostKey, previousKeys } from "../../driver/cluster/keys.js";
import { EndpointRecord, HostRecord, parseRecord } from "../../driver/cluster/records.js";
import type { KV } from "../../driver/contracts/store.js";
import { POLICY_TEMPLATE, hostPolicy } from "../support/acl-store.js";
import { eventually, quiet } from "../support/eventually.js";
import { FlakyStore } from "../support/flaky-store.js";
import { MemoryStore } from "../support/memory-store.js";
import { simHost, stopSimHost, stopSimHosts, type SimHost } from "../support/sim-host.js";
import { value } from "../support/store-helpers.js";
import { createNetworkOn } from "../support/docker-calls.js";

afterEach(stopSimHosts);

const SUBNET = "10.96.0.0/24";
const [H1, H2, H3] = ["198.18.0.11", "198.18.0.12", "198.18.0.13"];

async function join(h: SimHost, endpointId: string, names: string[]): Promise<string> {
  const poolId = await createNetworkOn(h.d, "n", SUBNET);
  const ip = value(await h.d.ipam.requestAddress({ poolId, address: "" }));
  value(await h.d.driver.createEndpoint({ networkId: "n", endpointId, addressCidr: ip.address, mac: "" }));
  expect(await h.d.driver.setNames(endpointId, names)).toBe(true);
  return ip.address.split("/")[0]!;
}

async function resolves(h: SimHost, source: string, name: string): Promise<string[]> {
  const r = await h.d.names.decide({ name, type: "A", class: "IN", source });
  return r.kind === "addresses" ? [...r.ips].sort() : [];
}

/** What a plugin of layout revision 1 programs for `self`: the records at the previous layout of the hosts alive there. */
async function previousReader(store: FlakyStore, self: string): Promise<{ ip: string; vtep: string }[]> {
  const alive = new Set((await store.list(previousKeys.hosts())).flatMap((kv) => parseRecord(HostRecord, kv.value)?.hostId ?? []));
  return (await store.list(previousKeys.endpoints(SUBNET)))
    .flatMap((kv) => parseRecord(EndpointRecord, kv.value) ?? [])
    .filter((r) => r.hostId !== self && alive.has(r.hostId))
    .map((r) => ({ ip: r.ip, vtep: r.vtep }));
}

describe("a cluster upgraded host by host", () => {
  it("a host of the previous layout and one of this layout see each other both ways; once it is upgraded, the previous layout's records are gone", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    // h1's host-private state is made by this plugin; the store is then made to hold what a plugin of revision 1 keeps there.
    const h1 = await simHost(cluster, H1);
    const ip1 = await join(h1, "e1", ["one"]);
    const rec1 = (await cluster.get(keys.hostEndpoint(H1, SUBNET, "e1")))!.value;
    const host1 = (await cluster.get(keys.alive(H1)))!.value;
    await stopSimHost(h1);
    await cluster.deleteTree(keys.hostPrefix(H1));
    const previousPlugin = await cluster.putEphemeral(previousKeys.host(H1), host1, 15);
    await cluster.put(previousKeys.endpoint(SUBNET, "e1"), rec1);
    // It answers questions where revision 1 does.
    const answering = cluster.watch(keys.asks(), (kvs) => {
      for (const kv of kvs) void cluster.put(previousKeys.answer(kv.key.slice(keys.asks().length), H1), JSON.stringify({ now: 1 }));
    });

    const h2 = await simHost(cluster, H2);
    const ip2 = await join(h2, "e2", ["two"]);
    expect(h2.d.hosts.previousOnly()).toEqual([H1]);
    // This layout's host reaches the previous one's endpoint, by address and by name.
    await eventually("h2 to program e1", () => h2.datapath.peers(SUBNET).some((p) => p.ip === ip1 && p.vtep === H1));
    expect(await resolves(h2, ip2, "one")).toEqual([ip1]);
    // And the previous one reaches it: its liveness and its endpoint at the previous layout.
    expect(
      await eventually("h2's copies at the previous layout", async () =>
        (await previousReader(cluster, H1)).length === 1 ? previousReader(cluster, H1) : undefined,
      ),
    ).toEqual([{ ip: ip2, vtep: H2 }]);
    // Questions cross too: h2 reads h1's answer where h1 writes it, and answers where h1 reads.
    const asked = await h2.d.asks.ask("clock", 2_000);
    expect([...asked.answers.keys()].sort()).toEqual([H1, H2]);
    expect(asked.missing).toEqual([]);
    await cluster.cas(keys.ask("from-h1"), JSON.stringify({ kind: "clock", by: H1, at: new Date().toISOString() }), 0);
    await eventually("h2 to answer h1 where h1 reads", async () => (await cluster.get(previousKeys.answer("from-h1", H2))) !== undefined);
    answering.stop();
    // As a revision 1 asker does when done.
    await cluster.delete(keys.ask("from-h1"));
    await cluster.deleteTree(previousKeys.answers("from-h1"));

    // h1 is upgraded: the old plugin stops (its liveness key goes), this one starts on the same host-private state.
    const seen: KV[][] = [];
    const watching = cluster.watch(keys.hostPrefix(H1), (kvs) => seen.push(kvs));
    await previousPlugin.release();
    const up = await simHost(cluster, H1, h1);
    await eventually("the previous layout's records to be gone", async () => {
      const left = [
        ...(await cluster.list(previousKeys.hosts())),
        ...(await cluster.list(previousKeys.allEndpoints())),
        ...(await cluster.list("tsoverlay/v1/answers/")),
      ];
      return left.length === 0;
    });
    watching.stop();
    await eventually("h2 to program e1 from its new place", () => h2.datapath.peers(SUBNET).some((p) => p.ip === ip1 && p.vtep === H1));
    await eventually("h1 to program e2", () => up.datapath.peers(SUBNET).some((p) => p.ip === ip2 && p.vtep === H2));
    expect(await resolves(up, ip1, "two")).toEqual([ip2]);
    expect(h2.d.hosts.previousOnly()).toEqual([]);
    const byHost = (await cluster.list(keys.byHost())).map((kv) => parseByHostKey(kv.key)).filter((k) => k?.kind !== "answer");
    expect(byHost).toEqual([
      { kind: "alive", hostId: H1 },
      { kind: "endpoint", hostId: H1, subnet: SUBNET, endpointId: "e1" },
      { kind: "alive", hostId: H2 },
      { kind: "endpoint", hostId: H2, subnet: SUBNET, endpointId: "e2" },
    ]);
    // The upgraded host's endpoint was under its prefix before the host was seen alive there.
    const firstAlive = seen.find((kvs) => kvs.some((kv) => kv.key === keys.alive(H1)));
    expect(firstAlive?.map((kv) => kv.key)).toContain(keys.hostEndpoint(H1, SUBNET, "e1"));
  }, 15_000);
});

/** A store that counts the writes that changed the layout marker, and takes a while for each (as Consul does), so that two hosts race. */
class CountingStore extends MemoryStore {
  markerWrites = 0;
  override async cas(key: string, value: string, index: number): Promise<boolean> {
    if (key === keys.layout()) await quiet(20, "a marker write takes a while, as Consul's does, so that two hosts race");
    const ok = await super.cas(key, value, index);
    if (ok && key === keys.layout()) this.markerWrites++;
    return ok;
  }
  override async put(key: string, value: string): Promise<void> {
    if (key === keys.layout()) {
      await quiet(20, "a marker write takes a while, as Consul's does, so that two hosts race");
      this.markerWrites++;
    }
    return super.put(key, value);
  }
}

describe("the layout marker", () => {
  it("is written once, by one of two hosts that both found it absent", async () => {
    const inner = new CountingStore();
    const cluster = new FlakyStore(inner);
    cluster.down();
    const [a, b] = [await simHost(cluster, H1), await simHost(cluster, H2)];
    await cluster.up(); // both watches find no marker at once
    await Promise.all([a.d.hosts.started(), b.d.hosts.started()]);
    expect(inner.markerWrites).toBe(1);
    const marker = JSON.parse((await inner.get(keys.layout()))!.value) as { revision: number; by: string; since: string };
    expect(marker.revision).toBe(2);
    expect([H1, H2]).toContain(marker.by);
    expect(a.d.layout()).toMatchObject({ state: "ok", revision: 2 });
    expect(b.d.layout()).toMatchObject({ state: "ok", revision: 2 });
  });

  it("naming a newer revision makes the plugin take no part, and say why in words: log, status, and every call that needs the store", async () => {
    const inner = new MemoryStore();
    await inner.put(keys.layout(), JSON.stringify({ revision: 3, since: "2030-01-01T00:00:00Z", by: "198.18.0.99" }));
    const cluster = new FlakyStore(inner);
    const a = await simHost(cluster, H1, undefined, { waitForHosts: false });
    const words = "cluster store layout revision 3 is newer than this plugin understands (2): upgrade this plugin";
    await eventually("the refusal", () => a.d.layout().state === "refused");
    expect(a.d.layout()).toEqual({ state: "refused", problem: words });
    expect(((await a.d.status()) as { layout: unknown }).layout).toEqual({ state: "refused", problem: words });
    const refused = await a.d.ipam.requestPool({ pool: SUBNET, subPool: "", v6: false });
    expect(refused).toMatchObject({ ok: false, error: expect.objectContaining({ message: expect.stringContaining(words) }) });
    // Nothing of this host was written: it never registered.
    expect((await inner.list("tsoverlay/v1/")).map((kv) => kv.key)).toEqual([keys.layout()]);
    expect(a.d.hosts.ready).toBe(false);
  });

  it("raised while the plugin runs stops its part in the cluster; an unreadable marker is refused alike", async () => {
    const inner = new MemoryStore();
    const cluster = new FlakyStore(inner);
    const a = await simHost(cluster, H1);
    await join(a, "e1", ["one"]);
    await inner.put(keys.layout(), JSON.stringify({ revision: 7 }));
    await eventually("the refusal", () => a.d.layout().state === "refused");
    expect(a.d.layout()).toMatchObject({ problem: expect.stringMatching(/revision 7 is newer than this plugin understands \(2\)/) });
    expect(await a.d.ipam.requestPool({ pool: "10.97.0.0/24", subPool: "", v6: false })).toMatchObject({ ok: false });

    const other = new MemoryStore();
    await other.put(keys.layout(), "revision two");
    const b = await simHost(new FlakyStore(other), H2, undefined, { waitForHosts: false });
    await eventually("the refusal", () => b.d.layout().state === "refused");
    expect(b.d.layout()).toMatchObject({ problem: expect.stringMatching(/layout marker \(tsoverlay\/v1\/layout\) is not one this plugin can read/) });
  });
});

describe("the per-host ACL policy", () => {
  it("is what the README shows (scripts/consul-policy.hcl, which the lab gives its hosts)", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const section = readme.slice(readme.indexOf("## Cluster store layout and ACLs"));
    const hcl = /```hcl\n([\s\S]*?)\n```/.exec(section)?.[1];
    expect(hcl).toBe(POLICY_TEMPLATE);
    expect(hostPolicy("198.18.0.11")).toContainEqual({ kind: "key_prefix", path: "tsoverlay/v1/by-host/198.18.0.11/", policy: "write" });
    expect(hostPolicy("198.18.0.11")).toHaveLength(11);
  });

  it("lets a host do all its work, writing only its own prefix and the shared records", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const [a, b] = [await simHost(cluster, H1, undefined, { acl: true }), await simHost(cluster, H2, undefined, { acl: true })];
    const ipA = await join(a, "ea", ["alpha"]);
    const ipB = await join(b, "eb", ["beta"]);
    await eventually("a to program b", () => a.datapath.peers(SUBNET).some((p) => p.ip === ipB));
    await eventually("a to resolve beta", async () => (await resolves(a, ipA, "beta")).join() === ipB);
    const report = await a.d.peerReport();
    expect(report.missing).toEqual([]);
    expect(await a.d.collector.pass()).toMatchObject({ conflicts: [] });
    value(await b.d.driver.deleteEndpoint("n", "eb"));
    await eventually("b's withdrawal to land", () => b.d.outbox.status().pending === 0);
    await eventually("a to drop b's endpoint", () => !a.datapath.peers(SUBNET).some((p) => p.ip === ipB));
    expect([...a.acl!.denied, ...b.acl!.denied]).toEqual([]);
  });

  it("keeps a gone host's own records, says so in its gone marker, and the host removes them when it is back", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const opts = { acl: true, gcGraceMs: 100 };
    const [a, c] = [await simHost(cluster, H1, undefined, opts), await simHost(cluster, H3, undefined, opts)];
    await join(a, "ea", ["alpha"]);
    const ipC = await join(c, "ec", ["gamma"]);
    await stopSimHost(c);
    await cluster.delete(keys.alive(H3)); // its session lapses
    await eventually("h3 seen gone", () => !a.d.hosts.isAlive(H3));
    await a.d.collector.pass(); // marks it
    await quiet(150, "the collector's grace (100 ms) passes on its own clock");
    expect((await a.d.collector.pass())?.collectedHosts).toEqual([H3]);
    // Shared records collected; its own refused, left, and said so.
    expect(await cluster.get(keys.address(SUBNET, ipC))).toBeUndefined();
    expect(await cluster.get(keys.networkHost(SUBNET, H3))).toBeUndefined();
    expect(await cluster.get(keys.hostEndpoint(H3, SUBNET, "ec"))).toBeDefined();
    const marker = JSON.parse((await cluster.get(keys.goneHost(H3)))!.value) as { leftover?: string };
    expect(marker.leftover).toMatch(/could not be deleted .*Permission denied.*consul kv delete -recurse tsoverlay\/v1\/by-host\/198\.18\.0\.13\//);
    // Not collected again.
    expect((await a.d.collector.pass())?.collectedHosts).toEqual([]);
    expect(a.datapath.peers(SUBNET).some((p) => p.ip === ipC)).toBe(false);

    // Back, without the endpoint (its container went meanwhile): it removes its own leftover.
    const c2 = await simHost(cluster, H3, c, opts);
    value(await c2.d.driver.deleteEndpoint("n", "ec"));
    await eventually("h3's own leftover to be gone", async () => (await cluster.get(keys.hostEndpoint(H3, SUBNET, "ec"))) === undefined);
    await a.d.collector.pass();
    expect(await cluster.get(keys.goneHost(H3))).toBeUndefined();
    expect(c2.acl!.denied).toEqual([]);
  });
});
