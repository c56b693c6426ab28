import { keys, previousKeys, subnetFromKey } from "../cluster/keys.js";
import { NetworkHostRecord, NetworkRecord, parseRecord } from "../cluster/records.js";
import type { Logger } from "../../lib/log.js";
import { failure, success } from "../../lib/result.js";
import { refuse, within, type Outcome } from "../errors.js";
import { casRounds, contended } from "../cluster/cas-rounds.js";
import { isStoreRefusal, type Store } from "../contracts/store.js";
import type { NetworkOptions } from "./network-options.js";

/** Claims a VNI for a subnet (explicit or from the range); frees one. */
export interface VniAllocator {
  claim(subnet: string, requested: number | undefined): Promise<Outcome<number>>;
  release(vni: number, subnet: string): Promise<void>;
}

interface Described {
  vni?: number;
  mtu?: number;
  proxyProtocol?: string;
  gatewayCidr: string;
  internal?: boolean;
  ifacePrefix?: string;
  encrypted?: boolean;
}

function describe(o: Described): string {
  return [
    `gateway=${o.gatewayCidr}`,
    `vni=${o.vni ?? "auto"}`,
    `mtu=${o.mtu ?? "auto"}`,
    `proxy-protocol=${o.proxyProtocol ?? "off"}`,
    `internal=${o.internal === true}`,
    `iface-prefix=${o.ifacePrefix ?? "eth"}`,
    `encrypted=${o.encrypted === true}`,
  ].join(" ");
}

/**
 * The cluster side of a network: one record per subnet (its identity) shared
 * by every host that created it, plus a membership key per host. The first
 * host to create a subnet fixes its VNI and options; a later host asking the
 * same subnet with different options is refused.
 */
export class ClusterNetworks {
  constructor(
    private readonly store: Store,
    private readonly vnis: VniAllocator,
    private readonly hostId: string,
    private readonly log: Logger,
  ) {}

  async get(subnet: string): Promise<NetworkRecord | undefined> {
    const kv = await this.store.get(keys.network(subnet));
    return kv === undefined ? undefined : parseRecord(NetworkRecord, kv.value);
  }

  /** Creates the cluster record or joins the existing one; records this host's membership. */
  async join(subnet: string, gatewayCidr: string, opts: NetworkOptions, networkId: string): Promise<Outcome<NetworkRecord>> {
    const joined = await casRounds(async (): Promise<Outcome<NetworkRecord> | undefined> => {
      const existing = await this.get(subnet);
      if (existing !== undefined) {
        const askedVni = opts.vni !== undefined && opts.vni !== existing.vni;
        const askedMtu = (opts.mtu ?? undefined) !== (existing.mtu ?? undefined);
        const askedProxy = (opts.proxyProtocol ?? undefined) !== (existing.proxyProtocol ?? undefined);
        const askedInternal = (opts.internal === true) !== (existing.internal === true);
        const askedPrefix = (opts.ifacePrefix ?? undefined) !== (existing.ifacePrefix ?? undefined);
        const askedEncrypted = (opts.encrypted === true) !== (existing.encrypted === true);
        if (existing.gatewayCidr !== gatewayCidr || askedVni || askedMtu || askedProxy || askedInternal || askedPrefix || askedEncrypted) {
          return refuse(
            "conflict",
            `network ${subnet} already exists in the cluster with ${describe({ ...existing })}; this host asked for ${describe({ gatewayCidr, ...opts })}`,
          );
        }
        await this.putMembership(subnet, networkId);
        return success(existing);
      }
      const vni = await this.vnis.claim(subnet, opts.vni);
      if (!vni.ok) return failure(within(`network ${subnet}`, vni.error));
      const rec: NetworkRecord = { subnet, gatewayCidr, vni: vni.value, createdAt: new Date().toISOString() };
      if (opts.mtu !== undefined) rec.mtu = opts.mtu;
      if (opts.proxyProtocol !== undefined) rec.proxyProtocol = opts.proxyProtocol;
      if (opts.internal === true) rec.internal = true;
      if (opts.ifacePrefix !== undefined) rec.ifacePrefix = opts.ifacePrefix;
      if (opts.encrypted === true) rec.encrypted = true;
      if (await this.store.cas(keys.network(subnet), JSON.stringify(rec), 0)) {
        await this.putMembership(subnet, networkId);
        this.log.info({ subnet, vni: rec.vni }, "network created in the cluster");
        return success(rec);
      }
      // Another host created it first: give back our VNI and compare with theirs.
      await this.vnis.release(vni.value, subnet);
      return undefined;
    });
    return joined ?? refuse("conflict", contended(`network ${subnet}: creating the cluster record`));
  }

  /**
   * Drops this host's membership (or, when collecting a dead host's records,
   * `hostId`'s). The last host out deletes the record, its VNI, its own
   * endpoint keys left behind and the previous layout's (which a per-host
   * ACL policy may refuse: then they stay, and no reader takes an endpoint of
   * a network the cluster does not have). Other hosts' leftovers under
   * their own prefixes are theirs to remove (own-records.ts). Idempotent.
   */
  async leave(subnet: string, hostId = this.hostId): Promise<void> {
    await this.store.delete(keys.networkHost(subnet, hostId));
    const remaining = await this.store.list(keys.networkHosts(subnet));
    if (remaining.length > 0) return;
    const kv = await this.store.get(keys.network(subnet));
    if (kv === undefined) return;
    const rec = parseRecord(NetworkRecord, kv.value);
    if (!(await this.store.delete(keys.network(subnet), kv.modifyIndex))) return;
    if (rec !== undefined) await this.vnis.release(rec.vni, subnet);
    await this.store.deleteTree(keys.hostEndpointsOn(this.hostId, subnet));
    await this.store.deleteTree(previousKeys.endpoints(subnet)).catch((err: unknown) => {
      if (!isStoreRefusal(err)) throw err;
      this.log.debug({ subnet, err: err.message }, "the store refuses deleting the previous layout's endpoint keys");
    });
    await this.store.deleteTree(keys.networkHosts(subnet));
    this.log.info({ subnet, vni: rec?.vni }, "last host left: network removed from the cluster");
  }

  /** Every host's membership of every network. */
  async memberships(): Promise<{ subnet: string; hostId: string }[]> {
    const prefix = keys.allNetworks();
    const out: { subnet: string; hostId: string }[] = [];
    for (const kv of await this.store.list(prefix)) {
      const m = /^([^/]+)\/hosts\/([^/]+)$/.exec(kv.key.slice(prefix.length));
      if (m) out.push({ subnet: subnetFromKey(m[1]!), hostId: m[2]! });
    }
    return out;
  }

  /** This host's membership of the subnet, as the cluster has it. */
  async membership(subnet: string, hostId = this.hostId): Promise<NetworkHostRecord | undefined> {
    const kv = await this.store.get(keys.networkHost(subnet, hostId));
    return kv === undefined ? undefined : parseRecord(NetworkHostRecord, kv.value);
  }

  /** Options of a record, as join() takes them (to re-create a record that went missing). */
  static optionsOf(rec: NetworkRecord): NetworkOptions {
    return {
      vni: rec.vni,
      ...(rec.mtu === undefined ? {} : { mtu: rec.mtu }),
      ...(rec.proxyProtocol === undefined ? {} : { proxyProtocol: rec.proxyProtocol }),
      ...(rec.internal === true ? { internal: true } : {}),
      ...(rec.ifacePrefix === undefined ? {} : { ifacePrefix: rec.ifacePrefix }),
      ...(rec.encrypted === true ? { encrypted: true } : {}),
    };
  }

  private async putMembership(subnet: string, networkId: string): Promise<void> {
    const rec: NetworkHostRecord = { hostId: this.hostId, networkId };
    await this.store.put(keys.networkHost(subnet, this.hostId), JSON.stringify(rec));
  }
}
