import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../lib/log.js";
import { openEmbeddedStore, type EmbeddedStore } from "../../driver/store/embedded-store.js";
import { StoreError } from "../../driver/contracts/store.js";
import { storeContract } from "../support/store-contract.js";
import { incrementWithRetry, keysOf } from "../support/store-helpers.js";

const log = createLogger("silent");

async function tempStoreDir(): Promise<string> {
  return path.join(await mkdtemp(path.join(os.tmpdir(), "tsoverlay-embedded-")), "store");
}

storeContract("EmbeddedStore", {
  open: async () => {
    const dir = await tempStoreDir();
    const store = await openEmbeddedStore(dir, log);
    const dispose = async (): Promise<void> => {
      await store.close();
      await rm(path.dirname(dir), { recursive: true, force: true });
    };
    return { store, other: store, ns: "", dispose };
  },
  indexes: "dense",
  watchDelivery: "before-the-write-resolves",
});

describe("EmbeddedStore's own: a directory, a file, a process", () => {
  let dir: string;
  const opened: EmbeddedStore[] = [];
  const open = async (): Promise<EmbeddedStore> => {
    const store = await openEmbeddedStore(dir, log);
    opened.push(store);
    return store;
  };

  beforeEach(async () => {
    dir = await tempStoreDir();
  });
  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close();
    await rm(path.dirname(dir), { recursive: true, force: true });
  });

  it("creates its directory and starts empty", async () => {
    const store = await open();
    expect(await store.list("")).toEqual([]);
    expect(store.lastIndex).toBe(0);
  });

  it("persists keys, values and the global index across reopen", async () => {
    const first = await open();
    await first.put("a", "1");
    await first.put("b/c", "2");
    await first.delete("a");
    const before = await first.list("");
    const indexBefore = first.lastIndex;
    await first.close();

    const second = await open();
    expect(await second.list("")).toEqual(before);
    expect(second.lastIndex).toBe(indexBefore);
    await second.put("d", "3");
    expect((await second.get("d"))?.modifyIndex).toBe(indexBefore + 1);
  });

  it("writes atomically: only the store file remains, and it is valid JSON after every write", async () => {
    const store = await open();
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.put(`k/${i}`, String(i))));
    expect(await readdir(dir)).toEqual(["kv.json"]);
    const onDisk = JSON.parse(await readFile(path.join(dir, "kv.json"), "utf8")) as { keys: Record<string, unknown> };
    expect(Object.keys(onDisk.keys)).toHaveLength(20);
  });

  it("removes temp files left by a crash at open", async () => {
    const store = await open();
    await store.put("k", "v");
    await store.close();
    await writeFile(path.join(dir, "kv.json.tmp-999-1"), "{half written");
    const reopened = await open();
    expect((await reopened.get("k"))?.value).toBe("v");
    expect(await readdir(dir)).toEqual(["kv.json"]);
  });

  it("50 concurrent CAS-retry increments survive reopen", async () => {
    const store = await open();
    await Promise.all(Array.from({ length: 50 }, () => incrementWithRetry(store, "counter")));
    expect((await store.get("counter"))?.value).toBe("50");
    await store.close();
    expect((await (await open()).get("counter"))?.value).toBe("50");
  });

  it("a corrupt file gives a StoreError naming the file", async () => {
    const first = await open();
    await first.close();
    const file = path.join(dir, "kv.json");
    await writeFile(file, "{not json");
    const error = await openEmbeddedStore(dir, log).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(StoreError);
    expect((error as StoreError).message).toContain(file);
    expect((error as StoreError).message).toMatch(/corrupt/);

    await writeFile(file, JSON.stringify({ format: 1, index: 1, keys: { k: { value: 7, modifyIndex: 1 } } }));
    await expect(openEmbeddedStore(dir, log)).rejects.toThrow(/corrupt store file .*kv\.json: keys\.k\.value/);
  });

  it("ephemeral keys are deleted on release and do not survive a reopen", async () => {
    const store = await open();
    const released = await store.putEphemeral("hosts/a", "alive", 15);
    await store.putEphemeral("hosts/b", "alive", 15);
    await released.release();
    expect(keysOf(await store.list("hosts/"))).toEqual(["hosts/b"]);

    // Simulate a crash: a copy of the file taken while hosts/b was live.
    const snapshot = await readFile(path.join(dir, "kv.json"), "utf8");
    await store.close();
    await writeFile(path.join(dir, "kv.json"), snapshot);
    expect(await (await open()).list("hosts/")).toEqual([]);
  });

  it("a failed write is a StoreError and changes nothing in memory", async () => {
    const store = await open();
    await store.put("k", "v1");
    await rm(dir, { recursive: true });
    const error = await store.put("k", "v2").catch((err: unknown) => err);
    expect(error).toBeInstanceOf(StoreError);
    expect((error as StoreError).message).toMatch(/^store put k: /);
    expect((await store.get("k"))?.value).toBe("v1");
  });
});
