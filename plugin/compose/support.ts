/**
 * What the plugin collects for `tsoverlay support-bundle` beyond its other
 * views (GET /tsoverlay/support): this host's kernel tables, one text per
 * overlay namespace (named for its network when this host knows it) and one
 * for the plugin's own namespace, and the cluster store's records under
 * `tsoverlay/` as this host can read them. Each part is collected on its own:
 * one that fails is reported with why, and the others are still served.
 *
 * Secret-named fields of the records are redacted here; secret values (the
 * ACL token, the WireGuard private key) are scrubbed from every view's answer
 * by the HTTP edge (plugin/http/app.ts), this one included.
 */
import type { SupportPart, SupportParts } from "../../driver/api.js";
import type { Store } from "../../driver/contracts/store.js";
import type { KernelTables } from "../../driver/kernel/kernel-tables.js";
import type { LocalNetwork } from "../../driver/local/local-state.js";
import { messageOf } from "../../lib/errors.js";
import { redactFields } from "../../lib/redact.js";

export interface SupportInputs {
  /** The cluster store as opened (embedded when there is no Consul). */
  store: Store;
  kernel: () => Promise<KernelTables>;
  /** This host's networks with endpoints here (for their VNIs). */
  networks: () => Promise<LocalNetwork[]>;
  /** The networks' names by subnet, as the cluster view has them; may fail (the store away). */
  names: () => Promise<ReadonlyMap<string, readonly string[]>>;
}

/** Every key of ours in the store, whatever its layout revision. */
const STORE_PREFIX = "tsoverlay/";
/** A store that does not answer in this long is reported as failed, not waited for. */
const STORE_READ_MS = 15_000;

export async function collectSupport(inputs: SupportInputs): Promise<SupportParts> {
  const [kernel, store] = await Promise.all([part(() => kernelFiles(inputs)), part(() => storeRecords(inputs.store))]);
  return { kernel, store };
}

async function part<T>(collect: () => Promise<T>): Promise<SupportPart<T>> {
  try {
    return { ok: true, value: await collect() };
  } catch (e) {
    return { ok: false, error: messageOf(e) };
  }
}

/** "host" and one file name per overlay namespace (its network's name, else the namespace's) → its tables. */
async function kernelFiles(inputs: SupportInputs): Promise<Record<string, string>> {
  const [tables, networks, names] = await Promise.all([
    inputs.kernel(),
    inputs.networks().catch(() => []),
    inputs.names().catch(() => new Map<string, readonly string[]>()),
  ]);
  const subnetOf = new Map(networks.flatMap((n) => (n.record === undefined ? [] : [[n.record.vni, n.subnet] as const])));
  const files: Record<string, string> = { host: `# the plugin's own network namespace\n\n${tables.host}` };
  for (const ns of tables.namespaces) {
    const subnet = ns.vni === undefined ? undefined : subnetOf.get(ns.vni);
    const name = subnet === undefined ? undefined : names.get(subnet)?.[0];
    const about = [`namespace ${ns.namespace}`, ...(subnet === undefined ? [] : [`subnet ${subnet}`]), ...(name === undefined ? [] : [`network ${name}`])];
    let file = name !== undefined && /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name) && name !== "host" ? name : ns.namespace;
    if (file in files) file = ns.namespace;
    files[file] = `# ${about.join(", ")}\n\n${ns.text}`;
  }
  return files;
}

/** The records as read, values parsed when they are JSON; secret-named fields redacted. */
async function storeRecords(store: Store): Promise<{ key: string; modifyIndex: number; value: unknown }[]> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the cluster store did not list ${STORE_PREFIX} within ${STORE_READ_MS / 1000} s`)), STORE_READ_MS);
  });
  try {
    const kvs = await Promise.race([store.list(STORE_PREFIX), timeout]);
    return kvs.map((kv) => ({ key: kv.key, modifyIndex: kv.modifyIndex, value: redactFields(parsed(kv.value)) }));
  } finally {
    clearTimeout(timer);
  }
}

function parsed(value: string): unknown {
  try {
    return JSON.parse(value) as unknown;
  } catch {
    return value;
  }
}
