/**
 * The userland port proxy, as the publishing policy sees it. proxy/ implements
 * it (ProxyManager); the publisher depends on these five calls only, so a unit
 * test can hand it anything that binds sockets — and the domain does not reach
 * for the proxy's worker pool or buffer accounting.
 */
import type { ActiveBinding, Binding } from "../../proxy/index.js";
import type { Result } from "../../lib/result.js";

export interface PortProxy {
  add(requested: Binding): Promise<Result<ActiveBinding>>;
  /** The first of `candidates` that binds (a host port range). */
  addAny(candidates: readonly Binding[]): Promise<Result<ActiveBinding>>;
  remove(binding: ActiveBinding): Promise<Result<void>>;
  list(): ActiveBinding[];
  closeAll(): Promise<void>;
}
