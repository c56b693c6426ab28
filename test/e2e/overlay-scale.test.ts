import { afterAll, describe, expect, it } from "vitest";
import { dockerOk, readLab, type LabHost } from "./support/lab.js";
import { createNetworkOn, ping, removeContainers, removeNetworkOn } from "./support/overlay.js";

const lab = readLab();
const hosts = lab.hosts.slice(0, 3);
const NET = "ovl-scale";
const SUBNET = "10.34.0.0/24";
const PER_HOST = 30;

function names(h: LabHost): string[] {
  return Array.from({ length: PER_HOST }, (_, i) => `scale-${h.name}-${i}`);
}

/** Runs `work` over items with at most `width` in flight. */
async function inBatches<T, R>(items: T[], width: number, work: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += width) out.push(...(await Promise.all(items.slice(i, i + width).map(work))));
  return out;
}

describe("3 hosts × 30 containers in one network", () => {
  afterAll(async () => {
    await Promise.all(hosts.map((h) => removeContainers(h, names(h))));
    await removeNetworkOn(hosts, NET);
  });

  it("hands out distinct addresses cluster-wide and connects cross-host pairs", async () => {
    await createNetworkOn(hosts, NET, SUBNET);
    // Containers start concurrently on all hosts, so the IPAM sees real contention.
    const perHost = await Promise.all(
      hosts.map((h) =>
        inBatches(names(h), 6, async (name) => {
          await dockerOk(h, ["run", "-d", "--name", name, "--network", NET, lab.testImage, "sleep", "3600"], { timeoutMs: 120_000 });
          return { host: h, name, ip: await dockerOk(h, ["inspect", "-f", `{{(index .NetworkSettings.Networks "${NET}").IPAddress}}`, name]) };
        }),
      ),
    );
    const all = perHost.flat();
    expect(all).toHaveLength(hosts.length * PER_HOST);
    expect(new Set(all.map((c) => c.ip)).size).toBe(all.length);
    for (const c of all) expect(c.ip).toMatch(/^10\.34\.0\.\d+$/);

    // A deterministic sample of cross-host pairs.
    for (let i = 0; i < 12; i++) {
      const from = all[(i * 7) % all.length]!;
      const to = all.find((c, j) => j > (i * 13) % all.length && c.host !== from.host) ?? all.find((c) => c.host !== from.host)!;
      expect(await ping(from.host, from.name, to.ip, 1), `${from.name} → ${to.name} (${to.ip})`).toBe(true);
    }
  });
});
