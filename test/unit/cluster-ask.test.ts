/**
 * Questions through the store are bounded (driver/cluster/cluster-ask.ts):
 * asks/ is shared, so a question costs little whoever wrote it, and never
 * lives forever, whatever time it claims.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ClusterAsk } from "../../driver/cluster/cluster-ask.js";
import { keys } from "../../driver/cluster/keys.js";
import { RecordFeed } from "../../driver/cluster/record-feed.js";
import type { EphemeralKey } from "../../driver/contracts/store.js";
import { HostRegistry } from "../../driver/hosts/host-registry.js";
import { createLogger } from "../../lib/log.js";
import { eventually } from "../support/eventually.js";
import { MemoryStore } from "../support/memory-store.js";

const log = createLogger("silent");
const SELF = "198.18.0.11";
const stops: (() => void)[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s();
});

/** A store that remembers which keys were written as ephemeral. */
class Sessions extends MemoryStore {
  readonly ephemeral: string[] = [];
  override async putEphemeral(key: string, value: string, ttlSeconds: number): Promise<EphemeralKey> {
    this.ephemeral.push(key);
    return super.putEphemeral(key, value, ttlSeconds);
  }
}

async function answering(store: MemoryStore = new Sessions()) {
  let now = 1_000_000;
  const feed = new RecordFeed(store, log);
  const hosts = new HostRegistry(store, feed, { hostId: SELF, vtep: SELF }, log);
  feed.start();
  hosts.start();
  await hosts.started();
  const asks = new ClusterAsk(store, hosts, log, () => now);
  const ran: string[] = [];
  asks.handle("peers", async () => {
    ran.push("peers");
    return [];
  });
  asks.start();
  stops.push(() => {
    asks.stop();
    hosts.stop();
    feed.stop();
  });
  return { store, asks, ran, tick: (ms: number) => (now += ms) };
}

const question = (over: Record<string, unknown> = {}) => JSON.stringify({ kind: "peers", by: "198.18.0.12", at: new Date().toISOString(), ...over });
const answered = async (store: MemoryStore, id: string) => (await store.get(keys.hostAnswer(SELF, id))) !== undefined;

describe("questions through the store", () => {
  it("a question claiming a time in the future, or none that parses, is answered once and deleted once it is stale by this host's clock, with its answer", async () => {
    const { store, ran, tick } = await answering();
    await store.put(keys.ask("future"), question({ at: "2999-01-01T00:00:00.000Z" }));
    await store.put(keys.ask("garbage"), question({ at: "yesterday" }));
    await store.put(keys.ask("none"), question({ at: undefined }));
    await eventually("three answers", async () => (await answered(store, "future")) && (await answered(store, "garbage")) && (await answered(store, "none")));
    expect(ran).toHaveLength(3);
    // Redelivered (another question comes and goes): nothing is answered twice.
    await store.put(keys.ask("other"), JSON.stringify({ kind: "unknown", by: "x" }));
    expect(ran).toHaveLength(3);
    tick(61_000);
    await store.put(keys.ask("later"), JSON.stringify({ kind: "unknown", by: "x" })); // any change makes the host look again
    await eventually("stale questions and their answers to be gone", async () => {
      const left = (await store.list(keys.asks())).map((kv) => kv.key.slice(keys.asks().length));
      return left.join() === "later" && (await store.list(keys.hostAnswers(SELF))).length === 0;
    });
    expect(ran).toHaveLength(3);
  });

  it("answers only kinds it has a handler for, and only questions of the strict shape and size", async () => {
    const { store, ran } = await answering();
    await store.put(keys.ask("kind"), question({ kind: "rm -rf" }));
    await store.put(keys.ask("extra"), question({ script: "x" }));
    await store.put(keys.ask("big"), question({ by: "x".repeat(2_000) }));
    await store.put(keys.ask("padded"), question() + " ".repeat(1_100)); // well-formed, but over 1 KiB
    await store.put(keys.ask("not-json"), "{");
    await store.put(keys.ask("bad id!"), question());
    await store.put(keys.ask("fine"), question());
    await eventually("the fine question's answer", () => answered(store, "fine"));
    expect(ran).toEqual(["peers"]);
    expect((await store.list(keys.hostAnswers(SELF))).map((kv) => kv.key)).toEqual([keys.hostAnswer(SELF, "fine")]);
  });

  it(`answers at most 16 questions a minute, counted by this host`, async () => {
    const { store, ran, tick } = await answering();
    for (let i = 0; i < 20; i++) await store.put(keys.ask(`q${i}`), question());
    await eventually("16 answers", () => ran.length === 16);
    await store.put(keys.ask("q20"), question());
    expect(ran).toHaveLength(16);
    tick(30_000);
    await store.put(keys.ask("q21"), question());
    expect(ran).toHaveLength(16);
    // A new window: the ones still there get their turn.
    tick(30_001);
    await store.put(keys.ask("q22"), question());
    await eventually("the next window's answers", () => ran.length > 16);
    expect(ran.length).toBeLessThanOrEqual(32);
  });

  it("asks with a question that lapses with the asker's session, and deletes it when done", async () => {
    const store = new Sessions();
    const { asks } = await answering(store);
    const r = await asks.ask("peers", 1_000);
    expect([...r.answers.keys()]).toEqual([SELF]);
    expect(store.ephemeral.filter((k) => k.startsWith(keys.asks()))).toHaveLength(1);
    expect(await store.list(keys.asks())).toEqual([]);
    await eventually("the answer to go with its question", async () => (await store.list(keys.hostAnswers(SELF))).length === 0);
  });
});
