import { describe, expect, it } from "vitest";
import { DockerBridgeGuard } from "../../plugin/compose/dns-bridges.js";
import { createLogger } from "../../lib/log.js";
import type { NetworkSpec } from "../../driver/contracts/docker.js";
import { FakeDocker } from "../support/fake-docker.js";

const bridge = (name: string, subnet: string, iface?: string): NetworkSpec => ({
  name,
  driver: "bridge",
  subnet,
  gateway: "",
  options: iface === undefined ? {} : { "com.docker.network.bridge.name": iface },
  labels: {},
  ipamDriver: "default",
  ipamOptions: {},
  internal: false,
  attachable: false,
});

describe("Docker's named bridges and the name service's guard", () => {
  it("allows exactly the bridges' own names: read when started and again on each bridge network's create and destroy", async () => {
    const docker = new FakeDocker();
    const told: string[][] = [];
    const guard = new DockerBridgeGuard({ docker, allow: async (b) => void told.push([...b]), log: createLogger("silent") });
    docker.subscribe((e) => guard.onEvent(e));
    docker.userCreates(bridge("bridge", "172.17.0.0/16", "docker0"));
    // Before the guard's chain exists: nothing is read or told.
    guard.resync();
    await guard.settled();
    expect(told).toEqual([]);

    guard.start();
    await guard.settled();
    expect(told).toEqual([["docker0"]]);
    docker.userCreates(bridge("edge", "172.30.0.0/24", "edge0"));
    docker.userCreates(bridge("plain", "172.31.0.0/24"));
    await guard.settled();
    expect(told.at(-1)).toEqual(["docker0", "edge0"]);
    docker.userRemoves("edge");
    await guard.settled();
    expect(told.at(-1)).toEqual(["docker0"]);
    // Other drivers' networks do not make it read again.
    const count = told.length;
    docker.userCreates({ ...bridge("ov", "10.0.9.0/24"), driver: "tsoverlay" });
    await guard.settled();
    expect(told.length).toBe(count);
  });

  it("a failing read is logged, and the next event reads again", async () => {
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
    docker.userCreates(bridge("edge", "172.30.0.0/24", "edge0"));
    await guard.settled();
    expect(told).toEqual([]);
    fail = false;
    docker.userCreates(bridge("edge2", "172.29.0.0/24", "edge2"));
    await guard.settled();
    expect(told).toEqual([["edge0", "edge2"]]);
  });
});
