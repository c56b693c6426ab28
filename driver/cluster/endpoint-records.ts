/**
 * Where this host writes its endpoint records: the one home for that, for the
 * driver's calls, the queued teardown and the collector alike. The record
 * goes to `by-host/<self>/endpoints/<subnet>/<ep>`; while hosts of the
 * previous layout are alive (previous-layout.ts), a copy goes to their
 * `endpoints/<subnet>/<ep>` too, so that they still see this host's
 * containers. The copy is a courtesy: failing to write or delete it fails
 * nothing (the store may refuse it under a per-host ACL policy; the periodic
 * pass of previous-layout.ts writes or removes what was missed).
 */
import type { Logger } from "../../lib/log.js";
import { messageOf } from "../../lib/errors.js";
import type { Store } from "../contracts/store.js";
import { keys, previousKeys } from "./keys.js";

export class EndpointRecords {
  constructor(
    private readonly store: Store,
    private readonly hostId: string,
    /** True while hosts of the previous layout are alive. */
    private readonly previousLayout: () => boolean,
    private readonly log: Logger,
  ) {}

  /** The same writer over another store (the driver's store without retries). */
  over(store: Store): EndpointRecords {
    return new EndpointRecords(store, this.hostId, this.previousLayout, this.log);
  }

  key(subnet: string, endpointId: string): string {
    return keys.hostEndpoint(this.hostId, subnet, endpointId);
  }

  async get(subnet: string, endpointId: string): Promise<string | undefined> {
    return (await this.store.get(this.key(subnet, endpointId)))?.value;
  }

  async put(subnet: string, endpointId: string, value: string): Promise<void> {
    await this.store.put(this.key(subnet, endpointId), value);
    // Its time is where the convergence bench starts the store-to-kernel path (another host's "peers programmed" ends it).
    this.log.debug({ subnet, endpointId }, "endpoint record written");
    if (this.previousLayout())
      await this.courtesy("writing", previousKeys.endpoint(subnet, endpointId), () => this.store.put(previousKeys.endpoint(subnet, endpointId), value));
  }

  async delete(subnet: string, endpointId: string): Promise<void> {
    await this.store.delete(this.key(subnet, endpointId));
    if (this.previousLayout())
      await this.courtesy("deleting", previousKeys.endpoint(subnet, endpointId), () => this.store.delete(previousKeys.endpoint(subnet, endpointId)));
  }

  private async courtesy(what: string, key: string, work: () => Promise<unknown>): Promise<void> {
    try {
      await work();
    } catch (err) {
      this.log.debug({ key, err: messageOf(err) }, `${what} the copy of an endpoint record for older hosts failed; the next pass retries`);
    }
  }
}
