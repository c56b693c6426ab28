import type { Binding } from "./binding.js";
import type { ProxyCounters } from "./counters.js";
import type { Refusal } from "./limits.js";
import type { TcpProxyOptions } from "./tcp-proxy.js";

/** The TcpProxy settings a worker gets with a binding (its local share of the limits, see limits.ts). */
export type WorkerTcpOptions = Pick<TcpProxyOptions, "connectTimeoutMs" | "resetOnBackendFailure" | "idleTimeoutMs" | "maxConns" | "maxConnsPerSource">;

/** IPC messages between the plugin process and its accept workers (JSON; handles ride alongside). */
export type ToWorker =
  | {
      op: "serve";
      seq: number;
      /** The binding's id in the parent's ProxyManager ("tcp/*:8080"). */
      id: string;
      /** Which of the binding's listening sockets this is (two for a dual-stack binding). */
      leg: number;
      binding: Binding;
      tcp?: WorkerTcpOptions;
      /** Beyond its local share, the worker asks the parent's pool for each connection ("take"). */
      pooled?: boolean;
      readBuffer?: { min?: number; max?: number; budget?: number };
    }
  | { op: "unserve"; seq: number; id: string }
  /** The answer to a "take": no refusal = the slot is the worker's until it sends "give". */
  | { op: "took"; seq: number; refusal?: Refusal };

export type ToParent =
  | { op: "ready" }
  | { op: "done"; seq: number; error?: string }
  | { op: "counters"; counters: Record<string, ProxyCounters> }
  | { op: "take"; seq: number; id: string; source: string }
  | { op: "give"; id: string; source: string };
