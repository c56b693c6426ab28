import { describe, expect, it } from "vitest";
import { consulKeys, docker, dockerOk, readLab } from "./support/lab.js";
import { createNetworkOn, networkVni, ping, removeContainers, removeNetworkOn, startContainer, subnetKey } from "./support/overlay.js";

const lab = readLab();
const [h1, h2, h3] = [lab.hosts[0]!, lab.hosts[1]!, lab.hosts[2]!];

describe("network isolation", () => {
  it("keeps two networks apart, and a container on both reaches both", async () => {
    await createNetworkOn([h1, h2], "iso-1", "10.35.1.0/24");
    await createNetworkOn([h1, h2], "iso-2", "10.35.2.0/24");
    try {
      const ip1 = await startContainer(lab, h1, "iso-a", "iso-1");
      const ip2 = await startContainer(lab, h1, "iso-b", "iso-2");
      await startContainer(lab, h2, "iso-both", "iso-1");
      await dockerOk(h2, ["network", "connect", "iso-2", "iso-both"]);
      expect(await ping(h2, "iso-both", ip1)).toBe(true);
      expect(await ping(h2, "iso-both", ip2)).toBe(true);
      expect(await ping(h1, "iso-a", ip2, 1)).toBe(false);
      expect(await ping(h1, "iso-b", ip1, 1)).toBe(false);
      expect(await networkVni(h1, "10.35.1.0/24")).not.toBe(await networkVni(h1, "10.35.2.0/24"));
    } finally {
      await removeContainers(h1, ["iso-a", "iso-b"]);
      await removeContainers(h2, ["iso-both"]);
      await removeNetworkOn([h1, h2], "iso-1");
      await removeNetworkOn([h1, h2], "iso-2");
    }
  });
});

describe("network removal across hosts", () => {
  it("keeps working for the others after one host removes it, and releases everything with the last", async () => {
    const subnet = "10.36.0.0/24";
    await createNetworkOn([h1, h2, h3], "life", subnet);
    const vni = await networkVni(h1, subnet);
    const ipA = await startContainer(lab, h1, "life-a", "life");
    const ipB = await startContainer(lab, h2, "life-b", "life");
    expect((await docker(h3, ["network", "rm", "life"])).code).toBe(0);
    expect(await ping(h1, "life-a", ipB)).toBe(true);
    expect(await ping(h2, "life-b", ipA)).toBe(true);
    const stillThere = await consulKeys(h1, `tsoverlay/v1/networks/${subnetKey(subnet)}`);
    expect(stillThere.length).toBeGreaterThan(0);

    await removeContainers(h1, ["life-a"]);
    await removeContainers(h2, ["life-b"]);
    await removeNetworkOn([h1, h2], "life");
    const left = (await consulKeys(h1, "tsoverlay/v1/")).filter((k) => k.includes(subnetKey(subnet)) || k.endsWith(`/vnis/${vni}`));
    expect(left).toEqual([]);
  });
});
