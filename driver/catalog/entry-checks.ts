/**
 * Whether a catalog entry is one this host may create a Docker network from.
 * `catalog/` is shared: whoever can write it could otherwise have every host's
 * daemon create any network (a macvlan on eth0, say), since the daemon takes
 * whatever driver and options it is handed.
 *
 * Design note. The entry must be exactly what a tsoverlay host publishes: the
 * strict shape below (no key more, every string and map bounded), named as its
 * key, for our driver and our IPAM (the names this daemon knows tsoverlay
 * by: the driver refuses any other IPAM's address space anyway), with a
 * subnet, gateway (or none: the IPAM's choice) and range that fit together, and options that the
 * driver's own parser accepts (network-options.ts: the one place that says
 * which `-o` a tsoverlay network takes) and `--ipam-opt`s that the IPAM
 * understands. Anything else is reported with the reason and nothing is
 * created.
 */
import { z } from "zod";
import { parseNetworkOptions } from "../network/network-options.js";
import { unknownPoolOption } from "../ipam/pool-options.js";
import { parseIpv4, POOL_PREFIX, Subnet } from "../../lib/net.js";
import { failure, success, type Result } from "../../lib/result.js";
import type { CatalogEntry } from "./catalog.js";

const MAX_LABELS = 64;
const MAX_OPTIONS = 32;

function boundedMap(entries: number, keyMax: number, valueMax: number) {
  return z
    .record(z.string().min(1).max(keyMax), z.string().max(valueMax))
    .refine((m) => Object.keys(m).length <= entries, { message: `more than ${entries} entries` });
}

const StrictSpec = z
  .object({
    driver: z.string().max(128),
    subnet: z.string().max(18),
    gateway: z.string().max(15),
    ipRange: z.string().max(18).optional(),
    options: boundedMap(MAX_OPTIONS, 128, 256),
    labels: boundedMap(MAX_LABELS, 256, 1_024),
    ipamDriver: z.string().max(128),
    ipamOptions: boundedMap(MAX_OPTIONS, 128, 256),
    internal: z.boolean(),
    attachable: z.boolean(),
    /** The network's id on the host that published it (publishers have always written it; it creates nothing). */
    id: z.string().max(128).optional(),
  })
  .strict();

/** No '/', no control characters: it is a key segment and a name people read. */
// eslint-disable-next-line no-control-regex
const NAME = /^[^/\u0000-\u001f\u007f-\u009f]{1,128}$/;

const StrictEntry = z
  .object({
    name: z.string().regex(NAME),
    uid: z.string().max(64),
    state: z.enum(["active", "removed"]),
    host: z.string().max(64),
    at: z.string().max(64),
    spec: StrictSpec,
  })
  .strict();

/** The driver names of `drivers` with or without `:latest` match (Docker shows both). */
export function isOurDriver(driver: string, drivers: readonly string[]): boolean {
  const bare = driver.replace(/:latest$/, "");
  return drivers.some((d) => d.replace(/:latest$/, "") === bare);
}

/**
 * The entry stored at `catalog/<keyName>` (its JSON), if this host may create
 * it; else why not, in words.
 */
export function checkCatalogEntry(value: string, keyName: string, drivers: readonly string[]): Result<CatalogEntry> {
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch {
    return failure("its value is not JSON");
  }
  const parsed = StrictEntry.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return failure(`it is not an entry a tsoverlay host writes (${issue?.path.join(".") || "entry"}: ${issue?.message ?? "invalid"})`);
  }
  const e = parsed.data;
  if (e.name !== keyName) return failure(`it names network ${e.name} under the key of ${keyName}`);
  const spec = e.spec;
  if (!isOurDriver(spec.driver, drivers)) return failure(`its driver is ${spec.driver}, not tsoverlay (${drivers.join(", ")})`);
  if (!isOurDriver(spec.ipamDriver, drivers)) return failure(`its IPAM driver is ${spec.ipamDriver}, not tsoverlay (${drivers.join(", ")})`);
  const subnet = Subnet.parse(spec.subnet, POOL_PREFIX);
  if (!subnet.ok) return failure(subnet.error);
  // No gateway is what Docker 28 and 20.10 show when the IPAM chose it: the
  // creating host's IPAM then chooses the same one.
  if (spec.gateway !== "") {
    const gateway = parseIpv4(spec.gateway);
    if (!gateway.ok || !subnet.value.contains(gateway.value) || subnet.value.isReserved(gateway.value)) {
      return failure(`gateway ${spec.gateway} is not a host address of ${spec.subnet}`);
    }
  }
  if (spec.ipRange !== undefined) {
    const range = Subnet.parse(spec.ipRange, undefined, "ip range");
    if (!range.ok) return failure(range.error);
    if (!subnet.value.containsSubnet(range.value)) return failure(`ip range ${spec.ipRange} is not inside ${spec.subnet}`);
  }
  const opts = parseNetworkOptions(spec.options);
  if (!opts.ok) return failure(opts.error.message);
  const ipamOption = unknownPoolOption(spec.ipamOptions);
  if (ipamOption !== undefined) return failure(`unknown --ipam-opt ${ipamOption}`);
  return success(e);
}
