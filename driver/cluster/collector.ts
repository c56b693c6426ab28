/**
 * Keeps the cluster's records honest about hosts: one pass, now and then
 * every `periodMs`, runs two halves over one snapshot of the records that say
 * which host has what (record-snapshot.ts), and reports both together.
 *
 * Design note.
 *  - This host's own records first (own-records.ts), then those of hosts gone
 *    for good (dead-hosts.ts). The halves write disjoint records (this host's,
 *    other hosts'; only a last one out leaving a network or pool deletes
 *    others' with it), so one list of each family serves both: what the first
 *    half changed is at worst a stale entry to the second, whose writes are
 *    conditional or idempotent. The dead-host half reads only its markers
 *    itself.
 *  - The pass itself takes no lock: the own-records half takes the driver's
 *    lock for each network it checks; the dead-host half needs none (see
 *    there). Passes never overlap.
 *  - Own records wait while teardown is queued in the outbox: a teardown still
 *    on its way to the cluster would look like drift. Dead hosts wait until
 *    the host registry is ready: before it has read who is alive, every host
 *    looks gone.
 */
import type { Logger } from "../../lib/log.js";
import { messageOf } from "../../lib/errors.js";
import type { Outbox } from "../local/outbox.js";
import { DeadHosts, type DeadHostsDeps } from "./dead-hosts.js";
import { OwnRecords, type OwnRecordsDeps } from "./own-records.js";
import { readRecordSnapshot } from "./record-snapshot.js";

export type CollectorDeps = OwnRecordsDeps & DeadHostsDeps & { outbox: Outbox; log: Logger };

export interface CollectorOptions {
  hostId: string;
  /** How often a pass runs (ms). */
  periodMs: number;
  /** How long a host must have been gone before its records are collected (ms). */
  deadHostGraceMs: number;
  /** How old an unbacked address or pool record of this host must be before it is removed (ms). */
  ownGraceMs: number;
  now?: () => number;
}

export interface CollectorReport {
  /** Records of this host removed because nothing local backs them. */
  removed: number;
  /** Records of this host written again because local state needs them. */
  restored: number;
  /** Hosts whose records this pass collected. */
  collectedHosts: string[];
  /** Problems that need a person (an address now held by someone else, …). */
  conflicts: string[];
}

export class RecordCollector {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<CollectorReport | undefined> | undefined;
  private stopped = false;
  private readonly now: () => number;
  private readonly own: OwnRecords;
  private readonly dead: DeadHosts;
  private last: { at: string; report?: CollectorReport; error?: string } | undefined;

  constructor(
    private readonly d: CollectorDeps,
    private readonly opts: CollectorOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.own = new OwnRecords(d, { hostId: opts.hostId, ownGraceMs: opts.ownGraceMs, now: this.now });
    this.dead = new DeadHosts(d, { hostId: opts.hostId, deadHostGraceMs: opts.deadHostGraceMs, now: this.now });
  }

  /** Runs a pass now and then every periodMs. */
  start(): void {
    const tick = (): void => {
      void this.pass().finally(() => {
        if (this.stopped) return;
        this.timer = setTimeout(tick, this.opts.periodMs);
        this.timer.unref();
      });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  status(): { at: string; report?: CollectorReport; error?: string } | undefined {
    return this.last;
  }

  /** One pass; passes never overlap. Resolves undefined when the store could not be read. */
  pass(): Promise<CollectorReport | undefined> {
    if (this.running) return this.running;
    this.running = this.run().finally(() => (this.running = undefined));
    return this.running;
  }

  private async run(): Promise<CollectorReport | undefined> {
    const report: CollectorReport = { removed: 0, restored: 0, collectedHosts: [], conflicts: [] };
    try {
      const own = this.d.outbox.status().pending === 0;
      if (own || this.d.hosts.ready) {
        const seen = await readRecordSnapshot(this.d.store, this.d.networks, this.d.ipam);
        if (own) Object.assign(report, await this.own.reconcile(seen));
        if (this.d.hosts.ready) report.collectedHosts = await this.dead.collect(seen);
      }
    } catch (err) {
      this.last = { at: new Date(this.now()).toISOString(), error: messageOf(err) };
      this.d.log.warn({ err: messageOf(err) }, "collecting records failed; next pass retries");
      return undefined;
    }
    this.last = { at: new Date(this.now()).toISOString(), report };
    if (report.removed > 0 || report.restored > 0 || report.collectedHosts.length > 0) {
      this.d.log.info(report, "cluster records collected");
    }
    for (const c of report.conflicts) this.d.log.error({ conflict: c }, "cluster record conflict");
    return report;
  }
}
