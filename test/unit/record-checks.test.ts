import { describe, expect, it } from "vitest";
import { keys, previousKeys } from "../../driver/cluster/keys.js";
import {
  checkEndpoint,
  checkHostRecord,
  isUsableVtep,
  livenessOf,
  RejectionLog,
  type EndpointCandidate,
  type EndpointContext,
  type LiveHost,
} from "../../driver/cluster/record-checks.js";
import type { KV } from "../../driver/contracts/store.js";
import type { Logger } from "../../lib/log.js";

const SUBNET = "10.90.0.0/24";
const H1 = "198.18.0.11";
const H2 = "198.18.0.12";
const OLD = "198.18.0.13";

const hostRecord = (hostId: string, vtep = hostId) => JSON.stringify({ hostId, vtep, hostname: "x", startedAt: "2025-01-01T00:00:00Z" });
const kv = (key: string, value: string, modifyIndex = 1): KV => ({ key, value, modifyIndex });

const live = new Map<string, LiveHost>([
  [H1, { layout: "by-host", record: JSON.parse(hostRecord(H1)) as LiveHost["record"] }],
  [H2, { layout: "by-host", record: JSON.parse(hostRecord(H2)) as LiveHost["record"] }],
  [OLD, { layout: "previous", record: JSON.parse(hostRecord(OLD)) as LiveHost["record"] }],
]);
const ctx: EndpointContext = { host: (h) => live.get(h), network: (s) => (s === SUBNET ? { gatewayCidr: "10.90.0.1/24" } : undefined) };

const record = (over: Record<string, unknown> = {}) => ({
  endpointId: "ep",
  networkId: "n",
  hostId: H1,
  vtep: H1,
  ip: "10.90.0.7",
  mac: "02:42:0a:5a:00:07",
  ...over,
});

/** The previous layout's `endpoints/<subnet>/ep`, which names no host. */
const PREVIOUS = null;

/** A record under by-host/<keyHost>/endpoints/<subnet>/ep, or under the previous layout's endpoints/<subnet>/ep. */
function candidate(value: unknown, keyHost: string | typeof PREVIOUS = H1, subnet = SUBNET): EndpointCandidate {
  const key = keyHost === PREVIOUS ? previousKeys.endpoint(subnet, "ep") : keys.hostEndpoint(keyHost, subnet, "ep");
  return { kv: kv(key, typeof value === "string" ? value : JSON.stringify(value)), keyHost: keyHost ?? undefined, subnet, endpointId: "ep" };
}

const verdict = (c: EndpointCandidate, context: EndpointContext = ctx) => {
  const r = checkEndpoint(c, context);
  return r.ok ? "ok" : r.code;
};

describe("a host record is checked against its key", () => {
  it("names the host of its key, with a VTEP a host can have", () => {
    expect(checkHostRecord(H1, hostRecord(H1)).ok).toBe(true);
    expect(checkHostRecord(H1, "{")).toMatchObject({ ok: false, code: "unreadable" });
    expect(checkHostRecord(H2, hostRecord(H1))).toMatchObject({ ok: false, code: "host-mismatch" });
    for (const vtep of ["0.0.0.0", "127.0.0.1", "169.254.169.254", "224.0.0.1", "239.1.1.1", "240.0.0.1", "255.255.255.255", "h1", "10.1", "::1"]) {
      expect(checkHostRecord(H1, hostRecord(H1, vtep)), vtep).toMatchObject({ ok: false, code: "bad-vtep" });
    }
    expect(isUsableVtep("198.18.0.11")).toBe(true);
    expect(isUsableVtep("10.0.0.1")).toBe(true);
  });

  it("a host's WireGuard public key is kept when it is one; anything else is dropped and the host stays alive", () => {
    const withKey = (key: string) => JSON.stringify({ ...(JSON.parse(hostRecord(H1)) as object), wireguardKey: key });
    const key = Buffer.alloc(32, 7).toString("base64");
    expect(checkHostRecord(H1, withKey(key))).toMatchObject({ ok: true, value: { hostId: H1, wireguardKey: key } });
    for (const bad of ["", "not a key", Buffer.alloc(31, 7).toString("base64"), `${key.slice(0, 42)}B=`]) {
      const r = checkHostRecord(H1, withKey(bad));
      expect(r.ok, bad).toBe(true);
      expect(r.ok && "wireguardKey" in r.value, bad).toBe(false);
    }
  });

  it("liveness is keyed by the key: a record under another host's key makes neither host alive", () => {
    const alive = livenessOf(
      [
        kv(keys.alive(H1), hostRecord(H1)),
        kv(keys.alive(H2), hostRecord("198.18.0.66")), // forged under H2's key
        kv(keys.alive("198.18.0.77"), hostRecord("198.18.0.77", "169.254.169.254")),
        kv(keys.hostEndpoint(H1, SUBNET, "ep"), JSON.stringify(record())), // not a liveness key
      ],
      [kv(previousKeys.host(OLD), hostRecord(OLD)), kv(previousKeys.host(H1), hostRecord(H1)), kv(previousKeys.host("198.18.0.88"), hostRecord("198.18.0.89"))],
    );
    expect([...alive].map(([h, l]) => [h, l.layout]).sort()).toEqual([
      [H1, "by-host"],
      [OLD, "previous"],
    ]);
  });
});

describe("an endpoint record is checked against its key, its host and its network", () => {
  it("passes when everything agrees (the MAC the address implies, or any unicast MAC)", () => {
    expect(verdict(candidate(record()))).toBe("ok");
    expect(verdict(candidate(record({ mac: "0a:00:00:00:00:01" })))).toBe("ok");
    expect(verdict(candidate(record({ hostId: OLD, vtep: OLD }), PREVIOUS))).toBe("ok");
  });

  it("refuses each mismatch with its reason", () => {
    expect(verdict(candidate("not json"))).toBe("unreadable");
    expect(verdict(candidate({ ip: "10.90.0.7" }))).toBe("unreadable");
    // Written under H2's prefix in H1's name (or the other way round).
    expect(verdict(candidate(record(), H2))).toBe("host-mismatch");
    expect(verdict(candidate(record({ endpointId: "other" })))).toBe("endpoint-mismatch");
    expect(verdict(candidate(record({ hostId: "198.18.0.99", vtep: "198.18.0.99" }), "198.18.0.99"))).toBe("host-not-alive");
    // A previous-layout copy of a host that writes the current layout; and the other way round.
    expect(verdict(candidate(record(), PREVIOUS))).toBe("superseded");
    expect(verdict(candidate(record({ hostId: OLD, vtep: OLD }), OLD))).toBe("host-not-alive");
    expect(verdict(candidate(record({ hostId: "198.18.0.99", vtep: "198.18.0.99" }), PREVIOUS))).toBe("host-not-alive");
    expect(verdict(candidate(record({ vtep: "198.18.0.66" })))).toBe("vtep-mismatch");
    expect(verdict(candidate(record({ vtep: "169.254.169.254" })))).toBe("vtep-mismatch");
    expect(verdict(candidate(record({ ip: "10.91.0.7" }), H1, "10.91.0.0/24"))).toBe("unknown-network");
    expect(verdict(candidate(record({ ip: "169.254.169.254" })))).toBe("outside-subnet");
    expect(verdict(candidate(record({ ip: "10.90.1.7" })))).toBe("outside-subnet");
    expect(verdict(candidate(record({ ip: "010.90.0.7" })))).toBe("outside-subnet");
    expect(verdict(candidate(record({ ip: "10.90.0.0" })))).toBe("reserved-address");
    expect(verdict(candidate(record({ ip: "10.90.0.255" })))).toBe("reserved-address");
    expect(verdict(candidate(record({ ip: "10.90.0.1" })))).toBe("gateway-address");
    for (const mac of ["01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "02:42:0a", "zz:42:0a:5a:00:07"]) {
      expect(verdict(candidate(record({ mac }))), mac).toBe("bad-mac");
    }
  });

  it("the cluster view keeps a dead host's endpoint, but not one with a VTEP no host can have", () => {
    const view: EndpointContext = { ...ctx, requireAlive: false };
    const dead = { hostId: "198.18.0.99", vtep: "198.18.0.99" };
    expect(verdict(candidate(record(dead), "198.18.0.99"), view)).toBe("ok");
    expect(verdict(candidate(record(dead), PREVIOUS), view)).toBe("ok");
    expect(verdict(candidate(record({ ...dead, vtep: "127.0.0.1" }), "198.18.0.99"), view)).toBe("bad-vtep");
    expect(verdict(candidate(record(), PREVIOUS), view)).toBe("superseded");
  });
});

describe("rejections", () => {
  it("are logged once per key and version, faults only, and the latest kept for the status endpoint", () => {
    const warned: unknown[] = [];
    const log = { warn: (o: unknown) => warned.push(o), debug: () => undefined } as unknown as Logger;
    const rejections = new RejectionLog(log);
    const r = checkEndpoint(candidate(record({ ip: "169.254.169.254" })), ctx);
    if (r.ok) throw new Error("expected a rejection");
    const c = candidate(record({ ip: "169.254.169.254" }));
    rejections.note(c.kv, r);
    rejections.note(c.kv, r);
    rejections.note({ ...c.kv, modifyIndex: 2 }, r);
    rejections.note({ ...c.kv, modifyIndex: 3 }, { ok: false, code: "superseded", reason: "a copy" });
    expect(warned).toHaveLength(2);
    expect(rejections.recent().map((x) => x.code)).toEqual(["outside-subnet", "outside-subnet"]);
    expect(rejections.recent()[0]!.reason).toBe("address 169.254.169.254 is not in 10.90.0.0/24");
  });
});
