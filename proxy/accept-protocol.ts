import type { Binding } from "./binding.js";
import type { ProxyCounters } from "./counters.js";
import type { TcpProxyOptions } from "./tcp-proxy.js";

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
      tcp?: Pick<TcpProxyOptions, "connectTimeoutMs" | "resetOnBackendFailure">;
      readBuffer?: { min?: number; max?: number; budget?: number };
    }
  | { op: "unserve"; seq: number; id: string };

export type ToParent = { op: "ready" } | { op: "done"; seq: number; error?: string } | { op: "counters"; counters: Record<string, ProxyCounters> };
