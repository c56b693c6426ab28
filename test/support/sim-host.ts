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
import { AclStore, hostPolicy } from "./acl-store.js";

const log = createLogger(process.env.TSOVERLAY_LOG_LEVEL ?? "silent");

export interface SimHost {
  hostId: string;
  d: AssembledDomain;
  datapath: FakeDatapath;
  kernel: FakeKernel;
  /** The host-private store: survives a simulated plugin restart. */
  local: MemoryStore;
  /** The fake uplinks: each network's slot, the host-only ones, and the networks whose NAT is wanted (prepare/release). */
  egress: EgressPort & { slots: Map<string, number>; hostOnly: Set<string>; nat: Set<string> };
  /** The host's view of the cluster store under its ACL policy, when it runs with one. */
  acl?: AclStore;
}

/**
 * A simulated host's VTEP: its id when that is an IPv4 address (as on a real
 * host), else an address made from it ("h3" → 198.18.1.3): readers refuse a
 * VTEP that is not a unicast IPv4 address.
 */
export function simVtep(hostId: string): string {
  if (/^\d+\.\d+\.\d+\.\d+$/.test(hostId)) return hostId;
  const n = /(\d+)$/.exec(hostId)?.[1];
  if (n === undefined || Number(n) > 254) throw new Error(`sim host id ${hostId} needs a number 0..254 at its end`);
  return `198.18.1.${Number(n)}`;
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
  settings: {
    storeRetryMs?: number;
    gcGraceMs?: number;
    nameServer?: string;
    reconcileMs?: number;
    /** Run under the host's Consul ACL policy (acl-store.ts). */
    acl?: boolean;
    /** Wait until the host list is read (default: unless the store is down). */
    waitForHosts?: boolean;
  } = {},
): Promise<SimHost> {
  if (from !== undefined) await stopSimHost(from);
  const kernel = from?.kernel ?? new FakeKernel();
  const datapath = new FakeDatapath(kernel);
  const local = from?.local ?? new MemoryStore();
  const slots = from?.egress.slots ?? new Map<string, number>();
  const hostOnly = from?.egress.hostOnly ?? new Set<string>();
  const nat = from?.egress.nat ?? new Set<string>();
  const egress: SimHost["egress"] = {
    slots,
    hostOnly,
    nat,
    ensure: async (subnet, _vni, slot, opts) => {
      slots.set(subnet, slot);
      if (opts?.hostOnly === true) hostOnly.add(subnet);
      else hostOnly.delete(subnet);
    },
    remove: async (subnet) => {
      slots.delete(subnet);
      hostOnly.delete(subnet);
    },
    prepare: async (subnet, opts) => {
      if (opts.nat) nat.add(subnet);
      else nat.delete(subnet);
    },
    release: async (subnet) => {
      nat.delete(subnet);
    },
  };
  const acl = settings.acl === true ? new AclStore(cluster, hostPolicy(hostId)) : undefined;
  const d = await assembleDomain(
    { cluster: acl ?? cluster, local, datapath, egress, publisher: new PortPublisher(new ProxyManager(), log) },
    {
      hostId,
      vtep: simVtep(hostId),
      underlayMtu: 1500,
      ipam: { hostId, poolRange: "10.213.0.0/16", poolSize: 24, vniRange: { min: 5000, max: 5100 } },
      storeRetryMs: settings.storeRetryMs ?? 300,
      reconcileMs: settings.reconcileMs ?? 60_000,
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
  if (settings.waitForHosts ?? !cluster.isDown) await d.hosts.started();
  const h: SimHost = { hostId, d, datapath, kernel, local, egress, ...(acl === undefined ? {} : { acl }) };
  running.add(h);
  return h;
}
