import { describe, expect, it } from "vitest";
import { keys } from "../../driver/cluster/keys.js";
import { HostRegistry } from "../../driver/hosts/host-registry.js";
import { RecordFeed } from "../../driver/cluster/record-feed.js";
import type { EphemeralKey } from "../../driver/contracts/store.js";
import { createLogger } from "../../lib/log.js";
import { MemoryStore } from "../support/memory-store.js";
import { eventually } from "../support/eventually.js";

/** A store whose ephemeral writes take a while, as a Consul session does. */
class SlowSessions extends MemoryStore {
  taking = false;
  release: () => void = () => undefined;
  override async putEphemeral(key: string, value: string, ttlSeconds: number): Promise<EphemeralKey> {
    this.taking = true;
    await new Promise<void>((r) => (this.release = r));
    return super.putEphemeral(key, value, ttlSeconds);
  }
}

describe("HostRegistry's record", () => {
  it("carries the daemon's version even when told it while the key was still being taken", async () => {
    const store = new SlowSessions();
    const log = createLogger("silent");
    const reg = new HostRegistry(store, new RecordFeed(store, log), { hostId: "198.18.0.9", vtep: "198.18.0.9", pluginVersion: "0.1.0" }, log);
    reg.start();
    await eventually("the key to be being taken", () => store.taking);
    await reg.describeDocker("28.5.2");
    store.release();
    const record = async () => JSON.parse((await store.get(keys.alive("198.18.0.9")))?.value ?? "{}") as { dockerVersion?: string; pluginVersion?: string };
    await eventually("the record to be written", async () => (await record()).dockerVersion !== undefined, { timeoutMs: 1_000 });
    expect(await record()).toMatchObject({ dockerVersion: "28.5.2", pluginVersion: "0.1.0" });
    await reg.describeDocker("29.8.1");
    expect((await record()).dockerVersion).toBe("29.8.1");
    reg.stop();
  });
});
