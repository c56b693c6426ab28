import { afterEach, describe, expect, it, vi } from "vitest";
import { NetworkCatalog } from "../../driver/catalog/catalog.js";
import { NetworkPropagation } from "../../driver/catalog/propagation.js";
import { createLogger } from "../../lib/log.js";
import { FakeDocker, tsoverlaySpec } from "../support/fake-docker.js";
import { FlakyStore } from "../support/flaky-store.js";
import { MemoryStore } from "../support/memory-store.js";
import { LocalState } from "../../driver/local/local-state.js";
import { eventually } from "../support/eventually.js";
import { keys } from "../../driver/cluster/keys.js";

const log = createLogger("silent");
const stops: (() => void)[] = [];
afterEach(() => {
  vi.useRealTimers();
  for (const s of stops.splice(0)) s();
});

interface Host {
  docker: FakeDocker;
  prop: NetworkPropagation;
  catalog: NetworkCatalog;
}

/** A host whose daemon's events and the catalog's changes reach its propagation, as the DockerFollower wires them. */
function host(store: MemoryStore, hostId: string, now: () => number = Date.now): Host {
  const docker = new FakeDocker();
  const catalog = new NetworkCatalog(store, now);
  const prop = new NetworkPropagation({ docker, catalog, hostId, drivers: ["tsoverlay"], log, pruneWindowMs: 30, tombstoneTtlMs: 3_600_000 });
  docker.subscribe((e) => prop.onEvent(e));
  const watch = catalog.watch(
    () => void prop.reconcile("catalog changed"),
    () => undefined,
  );
  stops.push(() => {
    watch.stop();
    prop.stop();
  });
  return { docker, prop, catalog };
}

/** The prune window's timer on a clock the test moves. */
const fakePruneTimers = () => vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });

describe("networks created once (propagation through the catalog)", () => {
  it("a network created on one host is created on the others with the same subnet, gateway, range, options and labels", async () => {
    const store = new MemoryStore();
    const [a, b] = [host(store, "h1"), host(store, "h2")];
    const spec = tsoverlaySpec("web", "10.60.0.0/24", {
      ipRange: "10.60.0.128/25",
      options: { mtu: "1400" },
      labels: { team: "blue" },
      ipamOptions: { name: "web" },
    });
    a.docker.userCreates(spec);
    await eventually("h2 to have web", () => b.docker.nets.has("web"));
    const { id: _id, ...copy } = b.docker.nets.get("web")!;
    expect(copy).toEqual(spec);
    expect((await a.catalog.get("web"))?.entry).toMatchObject({ state: "active", host: "h1", spec: { subnet: "10.60.0.0/24" } });
    // h2's own create event for its copy publishes nothing new.
    await b.prop.reconcile("test");
    expect(a.docker.calls).toEqual([]);
  });

  it("a host that starts later gets the cluster's networks, and publishes its own", async () => {
    const store = new MemoryStore();
    const a = host(store, "h1");
    a.docker.userCreates(tsoverlaySpec("one", "10.61.0.0/24"));
    await eventually("one to be published", async () => (await a.catalog.get("one")) !== undefined);
    const late = host(store, "h3");
    late.docker.nets.set("mine", { ...tsoverlaySpec("mine", "10.62.0.0/24"), id: "m1" }); // made while its plugin was away
    await late.prop.reconcile("daemon answers");
    expect(late.docker.nets.has("one")).toBe(true);
    await eventually("h1 to get mine", () => a.docker.nets.has("mine"));
  });

  it("docker network rm on any host removes it everywhere; a host with containers on it keeps it until they are gone", async () => {
    const store = new MemoryStore();
    const [a, b, c] = [host(store, "h1"), host(store, "h2"), host(store, "h3")];
    a.docker.userCreates(tsoverlaySpec("db", "10.63.0.0/24"));
    await eventually("db everywhere", () => b.docker.nets.has("db") && c.docker.nets.has("db"));
    c.docker.attach("db", "c1");
    b.docker.userRemoves("db");
    await eventually("db to leave h1", () => !a.docker.nets.has("db"));
    expect((await a.catalog.get("db"))?.entry.state).toBe("removed");
    await eventually("h3 to say db drains", () => c.prop.status().draining.includes("db"));
    expect(c.docker.nets.has("db")).toBe(true);
    c.docker.detach("db", "c1");
    await eventually("db to leave h3", () => !c.docker.nets.has("db"));
    expect(c.prop.status().draining).toEqual([]);
  });

  it("a docker network rm followed at once by a plugin stop (a dockerd restart) is still told to the cluster when the plugin is back", async () => {
    const store = new MemoryStore();
    const a = host(store, "h1");
    const docker = new FakeDocker();
    const catalog = new NetworkCatalog(store);
    const pending = new LocalState(new MemoryStore()).pendingDestroys;
    const start = (): NetworkPropagation => {
      const p = new NetworkPropagation({ docker, catalog, hostId: "h2", drivers: ["tsoverlay"], log, pruneWindowMs: 30, pending });
      stops.push(() => p.stop());
      return p;
    };
    const before = start();
    docker.subscribe((e) => before.onEvent(e));
    a.docker.userCreates(tsoverlaySpec("brief", "10.69.0.0/24"));
    await eventually("brief published", async () => (await catalog.get("brief")) !== undefined);
    await before.reconcile("daemon answers");
    expect(docker.nets.has("brief")).toBe(true);
    fakePruneTimers();
    docker.userRemoves("brief");
    await eventually("the removal to be kept", async () => (await pending.all()).length === 1);
    // The plugin stops inside the prune window: nothing was told yet, nor is after the window.
    before.stop();
    docker.subscribe(() => undefined); // the event stream ends with the plugin
    await vi.advanceTimersByTimeAsync(1_000);
    expect((await catalog.get("brief"))?.entry.state).toBe("active");
    // Back: the removal goes to the cluster instead of the network coming back here.
    const after = start();
    await after.reconcile("daemon answers");
    expect((await catalog.get("brief"))?.entry.state).toBe("removed");
    expect(docker.nets.has("brief")).toBe(false);
    expect(await pending.all()).toEqual([]);
    await eventually("brief to leave h1", () => !a.docker.nets.has("brief"));
  });

  it("a network removed right after its creation stays removed: a reconcile inside the prune window does not bring it back", async () => {
    const store = new MemoryStore();
    const [a, b] = [host(store, "h1"), host(store, "h2")];
    a.docker.userCreates(tsoverlaySpec("blink", "10.68.0.0/24"));
    await eventually("blink published", async () => (await a.catalog.get("blink")) !== undefined);
    a.docker.userRemoves("blink");
    // The catalog still says active (the removal waits for a possible prune event): h1 must not create it again.
    await a.prop.reconcile("catalog changed");
    expect(a.docker.nets.has("blink")).toBe(false);
    await eventually("blink removed in the cluster", async () => (await a.catalog.get("blink"))?.entry.state === "removed");
    await eventually("blink gone from h2", () => !b.docker.nets.has("blink"));
    await a.prop.reconcile("periodic");
    expect(a.docker.nets.has("blink")).toBe(false);
  });

  it("a reconcile that runs before the destroy event is handled does not bring back the network a user just removed", async () => {
    const store = new MemoryStore();
    const [a, b] = [host(store, "h1"), host(store, "h2")];
    a.docker.userCreates(tsoverlaySpec("quick", "10.70.0.0/24"));
    await eventually("quick on h2", () => b.docker.nets.has("quick"));
    const deliver = a.docker.userRemovesEventLater("quick");
    // The daemon no longer has it, the catalog still says active, and no destroy event was seen yet.
    await a.prop.reconcile("catalog changed");
    expect(a.docker.nets.has("quick")).toBe(false);
    deliver();
    await eventually("quick removed in the cluster", async () => (await a.catalog.get("quick"))?.entry.state === "removed");
    await eventually("quick gone from h2", () => !b.docker.nets.has("quick"));
  });

  it("a removal waiting in the durable queue is not undone by a reconcile; a network gone without any event comes back after the hold", async () => {
    // The hold is read off Date, faked before the worker exists (it keeps Date.now) and moved past the hold below.
    vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
    const store = new MemoryStore();
    const a = host(store, "h1");
    const docker = new FakeDocker();
    const catalog = new NetworkCatalog(store);
    const queued: { name: string; subnet: string }[] = [];
    const p = new NetworkPropagation({
      docker,
      catalog,
      hostId: "h2",
      drivers: ["tsoverlay"],
      log,
      pruneWindowMs: 10,
      leavingHoldMs: 150,
      removeName: async (name, subnet) => void queued.push({ name, subnet }), // the store is away: it waits in the queue
    });
    stops.push(() => p.stop());
    docker.subscribe((e) => p.onEvent(e));
    a.docker.userCreates(tsoverlaySpec("slow", "10.71.0.0/24"));
    a.docker.userCreates(tsoverlaySpec("lost", "10.72.0.0/24"));
    await eventually("both published", async () => (await catalog.all()).length === 2);
    await p.reconcile("daemon answers");
    await eventually("both known here", () => p.status().networks.length === 2);
    docker.userRemoves("slow");
    await eventually("the removal to be queued", () => queued.length === 1);
    expect(queued).toEqual([{ name: "slow", subnet: "10.71.0.0/24" }]);
    docker.userRemovesEventLater("lost"); // its event never comes
    await p.reconcile("catalog changed");
    expect(docker.nets.has("slow")).toBe(false);
    expect(docker.nets.has("lost")).toBe(false);
    // The queue delivers: the cluster removes it.
    await catalog.removeName("slow", "10.71.0.0/24", "h2");
    await p.reconcile("catalog changed");
    vi.advanceTimersByTime(200); // past the hold
    await p.reconcile("periodic");
    expect(docker.nets.has("lost")).toBe(true);
    expect(docker.nets.has("slow")).toBe(false);
    // The name is free to be created again here.
    a.docker.userRemoves("slow");
    a.docker.userCreates(tsoverlaySpec("slow", "10.73.0.0/24"));
    await eventually("the new slow published", async () => (await catalog.get("slow"))?.entry.spec.subnet === "10.73.0.0/24");
    await p.reconcile("catalog changed");
    expect(docker.nets.get("slow")?.subnet).toBe("10.73.0.0/24");
  });

  it("docker network prune stays on its host: the cluster keeps the network, and the host gets it back", async () => {
    const store = new MemoryStore();
    const [a, b] = [host(store, "h1"), host(store, "h2")];
    a.docker.userCreates(tsoverlaySpec("keep", "10.64.0.0/24"));
    await eventually("keep on h2", () => b.docker.nets.has("keep"));
    fakePruneTimers();
    b.docker.userPrunes();
    await vi.advanceTimersByTimeAsync(1_000); // well past the prune window
    expect((await a.catalog.get("keep"))?.entry.state).toBe("active");
    expect(a.docker.nets.has("keep")).toBe(true);
    // Back on h2 at once (the prune event reconciles), not only at the next periodic reconcile.
    expect(b.docker.nets.has("keep")).toBe(true);
  });

  it("two hosts creating one name with different subnets: the first to publish wins, the other's is undone and its host told why", async () => {
    const store = new MemoryStore();
    const [a, b] = [host(store, "h1"), host(store, "h2")];
    a.docker.userCreates(tsoverlaySpec("app", "10.65.0.0/24"));
    b.docker.userCreates(tsoverlaySpec("app", "10.66.0.0/24"));
    await eventually(
      "both hosts on the winner's app",
      () => a.docker.nets.get("app")?.subnet === "10.65.0.0/24" && b.docker.nets.get("app")?.subnet === "10.65.0.0/24",
    );
    expect((await a.catalog.get("app"))?.entry.spec.subnet).toBe("10.65.0.0/24");
    expect(b.prop.status().refused).toEqual([
      {
        name: "app",
        problem:
          "network app: this host's is 10.66.0.0/24, the cluster's app is 10.65.0.0/24 (created on h1); one name is one network: remove one of them or pick another name (refused: the 10.66.0.0/24 network was removed again)",
        at: expect.any(String),
      },
    ]);
    expect(b.prop.status().problems).toEqual([]);
  });

  it("a clashing network that was there before the worker is reported, not removed", async () => {
    const store = new MemoryStore();
    const a = host(store, "h1");
    a.docker.userCreates(tsoverlaySpec("app", "10.65.0.0/24"));
    await eventually("app published", async () => (await a.catalog.get("app")) !== undefined);
    const c = host(store, "h3");
    c.docker.nets.set("app", { ...tsoverlaySpec("app", "10.66.0.0/24"), id: "x" }); // created while h3's plugin was away
    await c.prop.reconcile("daemon answers");
    expect(c.prop.status().problems.map((p) => p.problem)).toEqual([
      expect.stringMatching(/this host's is 10\.66\.0\.0\/24, the cluster's app is 10\.65\.0\.0\/24/),
    ]);
    expect(c.docker.nets.get("app")?.subnet).toBe("10.66.0.0/24");
    expect((await a.catalog.get("app"))?.entry.spec.subnet).toBe("10.65.0.0/24");
  });

  it("a tombstone removes a late host's copy; tombstones are swept after their time", async () => {
    const store = new MemoryStore();
    let now = Date.parse("2026-01-01T00:00:00Z");
    const a = host(store, "h1", () => now);
    a.docker.userCreates(tsoverlaySpec("old", "10.68.0.0/24"));
    await eventually("old published", async () => (await a.catalog.get("old")) !== undefined);
    const late = host(store, "h2", () => now);
    late.docker.nets.set("old", { ...tsoverlaySpec("old", "10.68.0.0/24"), id: "o2" }); // its copy, from before it went down
    a.docker.userRemoves("old");
    await eventually("old tombstoned", async () => (await a.catalog.get("old"))?.entry.state === "removed");
    await late.prop.reconcile("daemon answers");
    expect(late.docker.nets.has("old")).toBe(false);
    now += 2 * 3_600_000;
    await a.prop.reconcile("periodic");
    expect(await a.catalog.get("old")).toBeUndefined();
  });
});

describe("a removal while the cluster store is away", () => {
  it("is handed to the durable queue (removeName) with its subnet, or with its name alone for a network this host never saw", async () => {
    const store = new FlakyStore(new MemoryStore());
    const docker = new FakeDocker();
    const queued: [string, string][] = [];
    const prop = new NetworkPropagation({
      docker,
      catalog: new NetworkCatalog(store),
      hostId: "h1",
      drivers: ["tsoverlay"],
      log,
      pruneWindowMs: 20,
      removeName: async (name, subnet) => void queued.push([name, subnet]),
    });
    stops.push(() => prop.stop());
    docker.subscribe((e) => prop.onEvent(e));
    docker.nets.set("seen", { ...tsoverlaySpec("seen", "10.69.0.0/24"), id: "s1" });
    await prop.reconcile("daemon answers");
    store.down();
    docker.userRemoves("seen");
    docker.nets.set("unseen", { ...tsoverlaySpec("unseen", "10.69.1.0/24"), id: "u1" }); // appeared while nothing was watching
    docker.userRemoves("unseen");
    await eventually("both removals queued", () => queued.length === 2);
    expect(queued).toEqual([
      ["seen", "10.69.0.0/24"],
      ["unseen", ""],
    ]);
  });
});

describe("the catalog", () => {
  it("removes a name only while it is active and, when given, still that subnet's; a second removal does nothing", async () => {
    const catalog = new NetworkCatalog(new MemoryStore());
    expect(await catalog.publish(tsoverlaySpec("x", "10.69.2.0/24"), "h1", 0)).toBe(true);
    expect(await catalog.removeName("x", "10.69.3.0/24", "h2")).toBe(false);
    expect((await catalog.get("x"))?.entry.state).toBe("active");
    expect(await catalog.removeName("x", "10.69.2.0/24", "h2")).toBe(true);
    expect((await catalog.get("x"))?.entry).toMatchObject({ state: "removed", host: "h2" });
    expect(await catalog.removeName("x", undefined, "h2")).toBe(false);
    expect(await catalog.removeName("never", undefined, "h2")).toBe(false);
  });
});

describe("a forged catalog entry", () => {
  /** An entry as a tsoverlay host publishes it, with `over` changed (written straight into the store). */
  const entry = (name: string, subnet: string, over: { spec?: Record<string, unknown> } & Record<string, unknown> = {}) => {
    const { spec, ...rest } = over;
    const { name: _n, ...plain } = tsoverlaySpec(name, subnet);
    return JSON.stringify({ name, uid: `u-${name}`, state: "active", host: "h9", at: new Date().toISOString(), ...rest, spec: { ...plain, ...spec } });
  };

  it("creates nothing: another driver, a parent= option, an unknown option, another IPAM, an unknown key, a name not its key's, a gateway outside; a valid one is created, also with no gateway (Docker 28 and 20.10 show none when the IPAM chose it)", async () => {
    const store = new MemoryStore();
    const h = host(store, "h1");
    const forged: [string, string][] = [
      ["evil-macvlan", entry("evil-macvlan", "10.64.0.0/24", { spec: { driver: "macvlan", options: { parent: "eth0" }, ipamDriver: "default" } })],
      ["evil-parent", entry("evil-parent", "10.64.1.0/24", { spec: { options: { parent: "eth0" } } })],
      ["evil-bridge-opt", entry("evil-bridge-opt", "10.64.2.0/24", { spec: { options: { "com.docker.network.bridge.name": "docker0" } } })],
      ["evil-ipam", entry("evil-ipam", "10.64.3.0/24", { spec: { ipamDriver: "default" } })],
      ["evil-ipam-opt", entry("evil-ipam-opt", "10.64.4.0/24", { spec: { ipamOptions: { driver: "x" } } })],
      ["evil-key", entry("evil-key", "10.64.5.0/24", { spec: { configFrom: "other" } })],
      ["evil-top", entry("evil-top", "10.64.6.0/24", { extra: true })],
      ["evil-name", entry("somebody-else", "10.64.7.0/24")],
      ["evil-gateway", entry("evil-gateway", "10.64.8.0/24", { spec: { gateway: "10.65.0.1" } })],
      ["evil-labels", entry("evil-labels", "10.64.9.0/24", { spec: { labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`l${i}`, "x"])) } })],
    ];
    for (const [name, value] of forged) await store.put(keys.catalogEntry(name), value);
    // The control, written the same way and last: created, so the reconcile that saw the others has run.
    await store.put(keys.catalogEntry("no-gateway"), entry("no-gateway", "10.64.11.0/24", { spec: { gateway: "" } }));
    await store.put(keys.catalogEntry("fine"), entry("fine", "10.64.10.0/24"));
    await eventually("the valid entries to be created", () => h.docker.nets.has("fine") && h.docker.nets.has("no-gateway"));
    await h.prop.reconcile("test");
    expect([...h.docker.calls].sort()).toEqual(["create fine", "create no-gateway"]);
    const problems = new Map(h.prop.status().problems.map((p) => [p.name, p.problem]));
    expect(problems.get("evil-macvlan")).toMatch(/refused: its driver is macvlan, not tsoverlay/);
    expect(problems.get("evil-parent")).toMatch(/unknown option parent/);
    expect(problems.get("evil-bridge-opt")).toMatch(/belongs to Docker's bridge driver/);
    expect(problems.get("evil-ipam")).toMatch(/its IPAM driver is default/);
    expect(problems.get("evil-ipam-opt")).toMatch(/unknown --ipam-opt driver/);
    expect(problems.get("evil-key")).toMatch(/not an entry a tsoverlay host writes/);
    expect(problems.get("evil-top")).toMatch(/not an entry a tsoverlay host writes/);
    expect(problems.get("evil-name")).toMatch(/names network somebody-else under the key of evil-name/);
    expect(problems.get("evil-gateway")).toMatch(/gateway 10\.65\.0\.1 is not a host address of 10\.64\.8\.0\/24/);
    expect(problems.get("evil-labels")).toMatch(/more than 64 entries/);
  });
});
