import { afterEach, describe, expect, it, vi } from "vitest";
import { bridgeInterface, DockerBridgeGuard } from "../../plugin/compose/dns-bridges.js";
import { createLogger } from "../../lib/log.js";
import type { NetworkSpec } from "../../driver/contracts/docker.js";
import { FakeDocker } from "../support/fake-docker.js";

const bridge = (name: string, subnet: string, options: Record<string, string> = {}): NetworkSpec => ({
  name,
  driver: "bridge",
  subnet,
  gateway: "",
  options,
  labels: {},
  ipamDriver: "default",
  ipamOptions: {},
  internal: false,
  attachable: false,
});
/** The default network as the daemon lists it. */
const defaultBridge = bridge("bridge", "172.17.0.0/16", { "com.docker.network.bridge.default_bridge": "true", "com.docker.network.bridge.name": "docker0" });

afterEach(() => {
  vi.useRealTimers();
});

describe("Docker's bridges and the name service's guard", () => {
  it("names each bridge's interface as Docker's bridge driver does", () => {
    expect(bridgeInterface({ id: "0123456789abcdef0123", options: { "com.docker.network.bridge.name": "docker0" } })).toBe("docker0");
    expect(bridgeInterface({ id: "0123456789abcdef0123", options: { "com.docker.network.bridge.default_bridge": "true" } })).toBe("docker0");
    expect(bridgeInterface({ id: "0123456789abcdef0123", options: { "com.docker.network.bridge.name": "edge0" } })).toBe("edge0");
    expect(bridgeInterface({ id: "0123456789abcdef0123", options: {} })).toBe("br-0123456789ab");
  });

  it("allows exactly the daemon's bridges by their interfaces' names: read when started and again on each bridge network's create and destroy", async () => {
    const docker = new FakeDocker();
    const told: string[][] = [];
    const guard = new DockerBridgeGuard({ docker, allow: async (b) => void told.push([...b]), log: createLogger("silent") });
    docker.subscribe((e) => guard.onEvent(e));
    docker.userCreates(defaultBridge);
    // Before the guard's chain exists: nothing is read or told.
    guard.resync();
    await guard.settled();
    expect(told).toEqual([]);

    guard.start();
    await guard.settled();
    expect(told).toEqual([["docker0"]]);
    docker.userCreates(bridge("edge", "172.30.0.0/24", { "com.docker.network.bridge.name": "edge0" }));
    const plainId = docker.userCreates(bridge("plain", "172.31.0.0/24"));
    await guard.settled();
    expect(told.at(-1)).toEqual(["docker0", "edge0", `br-${plainId.slice(0, 12)}`]);
    docker.userRemoves("edge");
    await guard.settled();
    expect(told.at(-1)).toEqual(["docker0", `br-${plainId.slice(0, 12)}`]);
    // Other drivers' networks do not make it read again.
    const count = told.length;
    docker.userCreates({ ...bridge("ov", "10.0.9.0/24"), driver: "tsoverlay" });
    await guard.settled();
    expect(told.length).toBe(count);
  });

  it("a read that fails (the daemon still starting) is tried again with a growing pause until it works", async () => {
    vi.useFakeTimers();
    const docker = new FakeDocker();
    docker.userCreates(defaultBridge);
    let fail = 3;
    const told: { at: number; bridges: string[] }[] = [];
    const t0 = Date.now();
    const guard = new DockerBridgeGuard({
      docker,
      allow: async (b) => {
        if (fail-- > 0) throw new Error("iptables: resource busy");
        told.push({ at: Date.now() - t0, bridges: [...b] });
      },
      log: createLogger("silent"),
    });
    guard.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(told).toEqual([]);
    // Tried again after 1, 2 and 4 s: the fourth read works.
    await vi.advanceTimersByTimeAsync(7_000);
    expect(told).toEqual([{ at: 7_000, bridges: ["docker0"] }]);
    guard.stop();
  });

  it("an event reads at once, without waiting for the pause of a failed read; a stopped guard reads nothing", async () => {
    const docker = new FakeDocker();
    let fail = true;
    const told: string[][] = [];
    const guard = new DockerBridgeGuard({
      docker,
      allow: async (b) => {
        if (fail) throw new Error("iptables: resource busy");
        told.push([...b]);
      },
      log: createLogger("silent"),
    });
    docker.subscribe((e) => guard.onEvent(e));
    guard.start();
    docker.userCreates(bridge("edge", "172.30.0.0/24", { "com.docker.network.bridge.name": "edge0" }));
    await guard.settled();
    expect(told).toEqual([]);
    fail = false;
    docker.userCreates(bridge("edge2", "172.29.0.0/24", { "com.docker.network.bridge.name": "edge2" }));
    await guard.settled();
    expect(told).toEqual([["edge0", "edge2"]]);
    guard.stop();
    docker.userRemoves("edge2");
    await guard.settled();
    expect(told).toHaveLength(1);
  });
});
