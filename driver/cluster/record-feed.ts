/**
 * The hosts' own records as the store holds them now, from one watch per
 * prefix: `by-host/` (layout revision 2: liveness, endpoints, answers) and
 * the previous layout's `hosts/` and `endpoints/` (hosts not upgraded yet).
 * The host registry reads liveness from it and the peers read endpoints; both
 * check every record (record-checks.ts) before they use it.
 *
 * Design note. Revision 2 files endpoints under their host, so a network's
 * endpoints are no longer one prefix: one watch of all of `by-host/` replaces
 * a watch per network (one blocking query per host instead of one per host
 * and network; each answer carries every network's endpoints). Listeners are
 * told which families changed (liveness, endpoints), so that an answer
 * written under `by-host/<h>/answers/` or a new Docker version in a host
 * record does not make every network re-sync its peers.
 */
import type { Logger } from "../../lib/log.js";
import type { KV, Store, Watch } from "../contracts/store.js";
import { keys, parseByHostKey, previousKeys } from "./keys.js";

export interface FeedState {
  /** Every key under `by-host/`. */
  byHost: readonly KV[];
  /** The previous layout's `hosts/<h>`. */
  previousHosts: readonly KV[];
  /** The previous layout's `endpoints/<s>/<ep>`. */
  previousEndpoints: readonly KV[];
}

export interface FeedChange {
  hosts: boolean;
  endpoints: boolean;
}

type Family = keyof FeedState;

export class RecordFeed {
  private readonly state: { [F in Family]: KV[] | undefined } = { byHost: undefined, previousHosts: undefined, previousEndpoints: undefined };
  private readonly prints = { hosts: "", endpoints: "" };
  private readonly watches: Watch[] = [];
  private readonly listeners = new Set<(c: FeedChange) => void>();
  private started = false;
  private announced = false;

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
  ) {}

  /** Starts the watches (once). */
  start(): void {
    if (this.started) return;
    this.started = true;
    const follow = (family: Family, prefix: string): void => {
      this.watches.push(
        this.store.watch(
          prefix,
          (kvs) => this.update(family, kvs),
          (err) => this.log.warn({ prefix, err: err.message }, "watching cluster records failed; retrying"),
        ),
      );
    };
    follow("byHost", keys.byHost());
    follow("previousHosts", previousKeys.hosts());
    follow("previousEndpoints", previousKeys.allEndpoints());
  }

  stop(): void {
    for (const w of this.watches.splice(0)) w.stop();
  }

  /** True once each prefix has been read. */
  get ready(): boolean {
    return this.state.byHost !== undefined && this.state.previousHosts !== undefined && this.state.previousEndpoints !== undefined;
  }

  current(): FeedState {
    return { byHost: this.state.byHost ?? [], previousHosts: this.state.previousHosts ?? [], previousEndpoints: this.state.previousEndpoints ?? [] };
  }

  onChange(listener: (c: FeedChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private update(family: Family, kvs: KV[]): void {
    this.state[family] = kvs;
    if (!this.ready) return;
    const first = !this.announced;
    this.announced = true;
    const s = this.current();
    const hosts = print([...s.byHost.filter((kv) => parseByHostKey(kv.key)?.kind === "alive"), ...s.previousHosts]);
    const endpoints = print([...s.byHost.filter((kv) => parseByHostKey(kv.key)?.kind === "endpoint"), ...s.previousEndpoints]);
    const change = { hosts: first || hosts !== this.prints.hosts, endpoints: first || endpoints !== this.prints.endpoints };
    this.prints.hosts = hosts;
    this.prints.endpoints = endpoints;
    if (!change.hosts && !change.endpoints) return;
    for (const l of this.listeners) l(change);
  }
}

/** Which keys at which versions: equal prints, equal records. */
function print(kvs: readonly KV[]): string {
  return kvs.map((kv) => `${kv.key}@${kv.modifyIndex}`).join("\n");
}
