/**
 * Living beside hosts that still run layout revision 1 (keys.ts), while a
 * cluster is upgraded host by host.
 *
 * Design note.
 *  - Reading: the host registry and the peers already take the previous
 *    layout's records of hosts alive there only (record-checks.ts), so this
 *    host reaches hosts not upgraded yet.
 *  - Writing: those hosts read only the previous layout. While any is alive,
 *    this host also holds its liveness at `hosts/<self>` and copies its
 *    endpoint records to `endpoints/<subnet>/<ep>`: the copies are written
 *    beside every record (endpoint-records.ts) and made equal to local state
 *    here, on every change of the host list and every `periodMs`, under the
 *    driver's lock per network (like own-records.ts), so that no copy of an
 *    endpoint just deleted is written back.
 *  - When no such host is left, this host deletes what it wrote there (its
 *    liveness key released, its copies deleted), once: after that, nothing
 *    is written there until a host of the previous layout shows up again. A
 *    refusal from the store (a per-host ACL policy keeps those prefixes
 *    read-only) is fine: logged at debug, nothing more to do.
 */
import type { Logger } from "../../lib/log.js";
import { messageOf } from "../../lib/errors.js";
import type { HostRegistry } from "../hosts/host-registry.js";
import type { LocalEndpoint, LocalState } from "../local/local-state.js";
import { isStoreRefusal, type Store } from "../contracts/store.js";
import { parsePreviousEndpointKey, previousKeys } from "./keys.js";
import { EndpointRecord, parseRecord } from "./records.js";

export interface PreviousLayoutDeps {
  /** The background store (fails at once when away: see ResilientStore.withBudget). */
  store: Store;
  hosts: HostRegistry;
  local: LocalState;
  /** The record peers program for a local endpoint. */
  endpointRecord: (ep: LocalEndpoint) => EndpointRecord;
  /** Runs `work` under the driver's lock for the network. */
  exclusive: <T>(subnet: string, work: () => Promise<T>) => Promise<T>;
  log: Logger;
}

export class PreviousLayout {
  /** This host's records at the previous layout are gone (none was written since). */
  private cleaned = false;
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly d: PreviousLayoutDeps,
    private readonly periodMs: number,
  ) {}

  /** True while hosts of the previous layout are alive: this host writes copies there. */
  active(): boolean {
    return this.d.hosts.ready && this.d.hosts.previousOnly().length > 0;
  }

  start(): void {
    this.unsubscribe = this.d.hosts.onChange(() => void this.sync());
    this.timer = setInterval(() => void this.sync(), this.periodMs);
    this.timer.unref();
    void this.sync();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.unsubscribe?.();
    await this.running;
  }

  /** One pass (passes never overlap; one asked for meanwhile runs after). */
  sync(): Promise<void> {
    if (this.running !== undefined) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.pass().catch((err: unknown) =>
          this.d.log.warn({ err: messageOf(err) }, "keeping the previous layout's records failed; the next pass retries"),
        );
      } while (this.again);
    })().finally(() => (this.running = undefined));
    return this.running;
  }

  private async pass(): Promise<void> {
    if (!this.d.hosts.ready) return;
    if (this.active()) {
      this.cleaned = false;
      await this.d.hosts.holdPreviousPresence(true);
      await this.copyAll();
      return;
    }
    if (this.cleaned) return;
    await this.d.hosts.holdPreviousPresence(false);
    await this.courtesy(async () => {
      // A key a previous process of this host held lapses by itself; it goes now (looked at first: no write the store would refuse for nothing).
      const mine = await this.d.store.get(previousKeys.host(this.d.hosts.self.hostId));
      if (mine !== undefined) await this.d.store.delete(mine.key, mine.modifyIndex);
      for (const c of await this.ownCopies()) await this.d.store.delete(c.kv.key, c.kv.modifyIndex);
    });
    this.cleaned = true;
    this.d.log.info({}, "no host of the previous layout is left: this host's records there are removed");
  }

  /** Makes this host's copies equal to its local endpoints, one network at a time under its lock. */
  private async copyAll(): Promise<void> {
    const copies = await this.ownCopies();
    const subnets = new Set([...(await this.d.local.endpoints()).map((e) => e.subnet), ...copies.map((c) => c.subnet)]);
    for (const subnet of subnets) {
      await this.d.exclusive(subnet, () =>
        this.courtesy(async () => {
          const eps = (await this.d.local.endpoints()).filter((e) => e.subnet === subnet);
          for (const c of copies) {
            if (c.subnet === subnet && !eps.some((e) => e.endpointId === c.endpointId)) await this.d.store.delete(c.kv.key, c.kv.modifyIndex);
          }
          for (const ep of eps) {
            const want = JSON.stringify(this.d.endpointRecord(ep));
            const have = copies.find((c) => c.subnet === subnet && c.endpointId === ep.endpointId);
            if (have?.kv.value !== want) await this.d.store.put(previousKeys.endpoint(subnet, ep.endpointId), want);
          }
        }),
      );
    }
  }

  /** The previous layout's endpoint records that name this host. */
  private async ownCopies(): Promise<{ subnet: string; endpointId: string; kv: { key: string; value: string; modifyIndex: number } }[]> {
    const self = this.d.hosts.self.hostId;
    return (await this.d.store.list(previousKeys.allEndpoints())).flatMap((kv) => {
      const k = parsePreviousEndpointKey(kv.key);
      return k !== undefined && parseRecord(EndpointRecord, kv.value)?.hostId === self ? [{ ...k, kv }] : [];
    });
  }

  /** Writes at the previous layout may be refused (read-only under a per-host ACL policy): that ends the attempt quietly. */
  private async courtesy(work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (err) {
      if (!isStoreRefusal(err)) throw err;
      this.d.log.debug({ err: messageOf(err) }, "the store refuses this host's records at the previous layout");
    }
  }
}
