import path from "node:path";
import type { Logger } from "../../lib/log.js";
import type { ConsulConnection } from "./consul-connection.js";
import { openConsulStore } from "./consul-store.js";
import { openEmbeddedStore } from "./embedded-store.js";
import type { Store } from "../contracts/store.js";

export interface StoreConfig {
  /** The Consul agent; undefined selects the single-host embedded store. */
  consul: ConsulConnection | undefined;
  /** The embedded store keeps its file in `${stateDir}/store`. */
  stateDir: string;
}

export async function openStore(cfg: StoreConfig, log: Logger): Promise<Store> {
  if (cfg.consul !== undefined) return openConsulStore({ connection: cfg.consul, log });
  log.info({ stateDir: cfg.stateDir }, "no consul address configured; using the single-host embedded store");
  return openEmbeddedStore(path.join(cfg.stateDir, "store"), log);
}
