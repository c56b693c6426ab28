/**
 * Simulated hosts for the scale benchmark: the records a real host writes,
 * written through the lab's Consul as that host would write them (layout
 * revision 2: `by-host/<h>/alive` held by a session, endpoint records under
 * `by-host/<h>/endpoints/<subnet>/`, address claims under `addresses/`), with
 * the operator's token, in transactions of TXN_OPS operations so that 10,000
 * endpoints load in seconds. No plugin runs for them: their VTEPs are
 * addresses nobody answers, so nothing is ever sent to them; the real host
 * only programs its tables, which is what is measured.
 *
 * Design note: all simulated hosts share one session (a real host holds one
 * each); liveness is all the readers take from it, and one session makes the
 * hosts come alive in one transaction, which is the instant the bench times.
 */
import { randomBytes } from "node:crypto";
import { keys } from "../../driver/cluster/keys.js";
import type { EndpointRecord, HostRecord } from "../../driver/cluster/records.js";
import { formatIpv4, macFromIpv4, parseIpv4 } from "../../lib/net.js";
import { consulHttp, type LabHost } from "../e2e/support/lab.js";

/** Consul refuses a transaction of more than 128 operations; half keeps each request small. */
const TXN_OPS = 64;

type TxnOp = { KV: { Verb: "set" | "lock" | "delete" | "delete-tree"; Key: string; Value?: string; Session?: string } };

const b64 = (s: string): string => Buffer.from(s).toString("base64");

export interface SimEndpoint {
  hostId: string;
  ip: string;
  key: string;
}

export class SimCluster {
  private session: string | undefined;
  readonly hosts: { hostId: string; vtep: string }[];

  /**
   * `via`: the lab host whose Consul agent the writes go through. `firstIp`:
   * the first address handed to simulated endpoints (counting up from it).
   */
  constructor(
    private readonly via: LabHost,
    private readonly net: { subnet: string; networkId: string },
    vteps: number,
    private readonly firstIp: string,
  ) {
    this.hosts = Array.from({ length: vteps }, (_, i) => ({ hostId: `sim-${String(i + 1).padStart(3, "0")}`, vtep: `198.18.200.${i + 1}` }));
  }

  private next = 0;
  /** Address claims written, removed one by one at the end (the real containers' claims stay). */
  private readonly claims: string[] = [];

  /** The next `n` endpoints, spread round-robin over the simulated hosts. */
  endpoints(n: number): (SimEndpoint & { ops: TxnOp[] })[] {
    const base = parseIpv4(this.firstIp);
    if (!base.ok) throw new Error(base.error);
    return Array.from({ length: n }, () => {
      const i = this.next++;
      const host = this.hosts[i % this.hosts.length]!;
      const ip = formatIpv4((base.value + i) >>> 0);
      const endpointId = randomBytes(32).toString("hex");
      const record: EndpointRecord = {
        endpointId,
        networkId: this.net.networkId,
        hostId: host.hostId,
        vtep: host.vtep,
        ip,
        mac: macFromIpv4(ip),
        name: `sim-${i}`,
      };
      const key = keys.hostEndpoint(host.hostId, this.net.subnet, endpointId);
      this.claims.push(keys.address(this.net.subnet, ip));
      return {
        hostId: host.hostId,
        ip,
        key,
        ops: [
          {
            KV: {
              Verb: "set",
              Key: keys.address(this.net.subnet, ip),
              Value: b64(JSON.stringify({ host: host.hostId, kind: "endpoint", at: new Date().toISOString() })),
            },
          },
          { KV: { Verb: "set", Key: key, Value: b64(JSON.stringify(record)) } },
        ],
      };
    });
  }

  /** Writes endpoints' records (and address claims), TXN_OPS operations per transaction. */
  async write(eps: { ops: TxnOp[] }[]): Promise<void> {
    await this.txn(eps.flatMap((e) => e.ops));
  }

  /** One endpoint's address claim alone (the IPAM's step, before the endpoint). */
  async claim(ep: { ops: TxnOp[] }): Promise<void> {
    await this.txn(ep.ops.slice(0, 1));
  }

  /** One endpoint's record alone: one host's one change, as CreateEndpoint writes it. */
  async writeRecord(ep: { ops: TxnOp[] }): Promise<void> {
    await this.txn(ep.ops.slice(1));
  }

  /** Bytes the network's address claims take in Consul's answer (the real containers' few included). */
  async claimBytes(): Promise<number> {
    const r = await consulHttp(this.via, "GET", `/v1/kv/${keys.addresses(this.net.subnet)}?recurse`);
    return r.code === 0 ? Buffer.byteLength(r.stdout) : 0;
  }

  /** Every simulated host comes alive at once: one session, one transaction taking every liveness key. */
  async alive(): Promise<void> {
    const r = await consulHttp(
      this.via,
      "PUT",
      "/v1/session/create",
      JSON.stringify({ Name: "tsoverlay-scale-bench", TTL: "3600s", Behavior: "delete", LockDelay: "0s" }),
    );
    if (r.code !== 0) throw new Error(`creating the simulated hosts' session: ${r.stdout} ${r.stderr}`);
    this.session = (JSON.parse(r.stdout) as { ID: string }).ID;
    const startedAt = new Date().toISOString();
    await this.txn(
      this.hosts.map((h) => {
        const record: HostRecord = { hostId: h.hostId, vtep: h.vtep, hostname: h.hostId, startedAt };
        return { KV: { Verb: "lock", Key: keys.alive(h.hostId), Value: b64(JSON.stringify(record)), Session: this.session } };
      }),
    );
  }

  /** Every simulated host dies at once: their liveness keys go with the session; their records stay. */
  async die(): Promise<void> {
    if (this.session !== undefined) {
      const r = await consulHttp(this.via, "PUT", `/v1/session/destroy/${this.session}`);
      if (r.code !== 0) throw new Error(`destroying the simulated hosts' session: ${r.stdout} ${r.stderr}`);
    }
    this.session = undefined;
  }

  /** Every simulated host dies, and all their records and claims are removed. */
  async remove(): Promise<void> {
    await this.die();
    await this.txn([
      ...this.hosts.map((h): TxnOp => ({ KV: { Verb: "delete-tree", Key: keys.hostPrefix(h.hostId) } })),
      ...this.claims.splice(0).map((key): TxnOp => ({ KV: { Verb: "delete", Key: key } })),
    ]);
  }

  private async txn(ops: TxnOp[]): Promise<void> {
    for (let i = 0; i < ops.length; i += TXN_OPS) {
      const batch = ops.slice(i, i + TXN_OPS);
      const r = await consulHttp(this.via, "PUT", "/v1/txn", JSON.stringify(batch));
      if (r.code !== 0) throw new Error(`consul transaction of ${batch.length} operations failed: ${r.stdout.slice(0, 500)} ${r.stderr.slice(0, 500)}`);
    }
  }
}
