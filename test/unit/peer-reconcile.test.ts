/**
 * The periodic reconcile of a network's peer tables takes at most
 * 1/PERIODIC_DUTY of the time (driver/peers/peer-sync.ts): a network whose
 * pass is quick is checked every period, one whose pass is slow (10,000
 * peers) less often, so that repairing nothing does not keep a core busy.
 */
import { afterEach, describe, expect, it } from "vitest";
import { FlakyStore } from "../support/flaky-store.js";
import { MemoryStore } from "../support/memory-store.js";
import { simHost, stopSimHosts } from "../support/sim-host.js";
import { value } from "../support/store-helpers.js";
import { createNetworkOn } from "../support/docker-calls.js";
import { eventually, quiet } from "../support/eventually.js";

afterEach(stopSimHosts);

describe("the periodic peer reconcile", () => {
  it("checks a quick network every period and a slow one at most a twentieth of the time", async () => {
    const cluster = new FlakyStore(new MemoryStore());
    const h = await simHost(cluster, "198.18.0.61", undefined, { reconcileMs: 10 });
    const poolId = await createNetworkOn(h.d, "net-r", "10.61.0.0/24");
    const ip = value(await h.d.ipam.requestAddress({ poolId, address: "" }));
    value(await h.d.driver.createEndpoint({ networkId: "net-r", endpointId: "ep-r", addressCidr: ip.address, mac: "" }));
    const syncs = (): number => h.datapath.calls.filter((c) => c.method === "syncPeers").length;
    await eventually("the first sync", () => syncs() > 0);

    let before = syncs();
    await quiet(500, "periodic passes of a quick network: one every 10 ms period");
    const quick = syncs() - before;
    expect(quick).toBeGreaterThanOrEqual(10);

    h.datapath.syncPeersTakesMs = 40; // each pass 40 ms: at most one per 800 ms
    await quiet(100, "the pass under way ends and the next one measures 40 ms");
    before = syncs();
    await quiet(1_000, "periodic passes of a slow network");
    expect(syncs() - before).toBeLessThanOrEqual(2);
    // Less often, not never.
    await eventually("a pass of the slow network", () => syncs() > before, { timeoutMs: 5_000 });
  });
});
