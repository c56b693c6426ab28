/**
 * Keeps the datapath's VXLAN admission equal to the live hosts' VTEPs: on
 * every change of the host list and periodically (a rule deleted by hand comes
 * back). Nothing is changed before the host list has been read once: a plugin
 * that restarts while the store is away keeps admitting the hosts it admitted
 * before, as the peer tables keep their entries.
 */
import type { HostRegistry } from "./host-registry.js";
import type { VxlanAdmission } from "../contracts/datapath.js";
import type { Logger } from "../../lib/log.js";
import { messageOf } from "../../lib/errors.js";
import { Mutex } from "../../lib/keyed-mutex.js";

export class VtepAdmission {
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  private readonly mutex = new Mutex();

  constructor(
    private readonly hosts: HostRegistry,
    private readonly admission: VxlanAdmission,
    private readonly log: Logger,
    periodMs: number,
  ) {
    this.unsubscribe = hosts.onChange(() => void this.sync("hosts changed"));
    this.timer = setInterval(() => void this.sync("periodic"), periodMs);
    this.timer.unref();
  }

  /** Admits the live hosts' VTEPs now (once the host list is known); failures are logged and retried next time. */
  async sync(why: string): Promise<void> {
    if (!this.hosts.ready) return;
    await this.mutex.run(async () => {
      const vteps = this.hosts.hosts().map((h) => h.vtep);
      try {
        await this.admission.admit(vteps);
      } catch (err) {
        this.log.error({ err: messageOf(err), why, vteps }, "admitting the live hosts' VXLAN failed");
      }
    });
  }

  stop(): void {
    clearInterval(this.timer);
    this.unsubscribe();
  }
}
