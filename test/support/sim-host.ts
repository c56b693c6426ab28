/**
 * A simulated host for unit tests: the real domain, assembled as the plugin
 * assembles it (plugin/compose/assemble.ts), over a shared cluster store and a fake
 * kernel. Passing `from` restarts that host's plugin: same host-private
 * store, same kernel state.
 */
import { assembleDomain, type AssembledDomain } from "../../plugin/compose/assemble.js";
import type { EgressPort } from "../../driver/contracts/datapath.js";
import { PortPublisher } from "../../driver/publish/port-publisher.js";
import { createLogger } from "../../lib/log.js";
import { ProxyManager } from "../../proxy/index.js";
import { FakeDatapath, FakeKernel } from "./fake-datapath.js";
import type { FlakyStore } from "./flaky-store.js";
import { MemoryStore } from "./memory-store.js";

const log = createLogger(process.env.LOG_LEVEL ?? "silent");

export interface SimHost {
  hostId: string;
  d: AssembledDomain;
  datapath: FakeDatapath;
  kernel: FakeKernel;
  /** The host-private store: survives a simulated plugin restart. */
  local: MemoryStore;
  egress: EgressPort & { slots: Map<string, number>; hostOnly: Set<string> };
}

const running = new Set<SimHost>();

/** Stops every simulated host still running (call in afterEach). */
export async function stopSimHosts(): Promise<void> {
  for (const h of [...running]) await stopSimHost(h);
}

/** Stops one host's plugin (its kernel and local store stay, for a restart). */
export async function stopSimHost(h: SimHost): Promise<void> {
  if (!running.delete(h)) return;
  await h.d.stop();
}

export async function simHost(
  cluster: FlakyStore,
  hostId: string,
  from?: SimHost,
  settings: { storeRetryMs?: number; gcGraceMs?: number; nameServer?: string } = {},
): Promise<SimHost> {
  if (from !== undefined) await stopSimHost(from);
  const kernel = from?.kernel ?? new FakeKernel();
  const datapath = new FakeDatapath(kernel);
  const local = from?.local ?? new MemoryStore();
  const slots = from?.egress.slots ?? new Map<string, number>();
  const hostOnly = from?.egress.hostOnly ?? new Set<string>();
  const egress: SimHost["egress"] = {
    slots,
    hostOnly,
    ensure: async (subnet, _vni, slot, opts) => {
      slots.set(subnet, slot);
      if (opts?.hostOnly === true) hostOnly.add(subnet);
      else hostOnly.delete(subnet);
    },
    remove: async (subnet) => {
      slots.delete(subnet);
      hostOnly.delete(subnet);
    },
  };
  const d = await assembleDomain(
    { cluster, local, datapath, egress, publisher: new PortPublisher(new ProxyManager(), log) },
    {
      hostId,
      vtep: hostId,
      underlayMtu: 1500,
      ipam: { hostId, poolRange: "10.213.0.0/16", poolSize: 24, vniRange: { min: 5000, max: 5100 } },
      storeRetryMs: settings.storeRetryMs ?? 300,
      reconcileMs: 60_000,
      gcIntervalMs: 3_600_000,
      gcGraceMs: settings.gcGraceMs ?? 600_000,
      teardownWaitMs: 50,
      propagate: false,
      driverNames: ["tsoverlay"],
      ownRecordGraceMs: 0,
      ...(settings.nameServer === undefined ? {} : { nameServer: settings.nameServer }),
    },
    log,
  );
  await d.start();
  if (!cluster.isDown) await d.hosts.started();
  const h = { hostId, d, datapath, kernel, local, egress };
  running.add(h);
  return h;
}
