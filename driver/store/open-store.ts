import path from "node:path";
import type { Logger } from "../../lib/log.js";
import { openConsulStore } from "./consul-store.js";
import { openEmbeddedStore } from "./embedded-store.js";
import type { Store } from "../contracts/store.js";

export interface StoreConfig {
  /** Consul HTTP address; empty selects the single-host embedded store. */
  consulAddr: string;
  consulToken: string;
  consulSsl: boolean;
  /** The embedded store keeps its file in `${stateDir}/store`. */
  stateDir: string;
}

export async function openStore(cfg: StoreConfig, log: Logger): Promise<Store> {
  if (cfg.consulAddr.trim() !== "") {
    return openConsulStore({ addr: cfg.consulAddr, token: cfg.consulToken || undefined, ssl: cfg.consulSsl, log });
  }
  log.info({ stateDir: cfg.stateDir }, "no consul address configured; using the single-host embedded store");
  return openEmbeddedStore(path.join(cfg.stateDir, "store"), log);
}
