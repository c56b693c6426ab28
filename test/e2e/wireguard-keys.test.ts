/**
 * Issue 18's key acceptance on the lab: each host's WireGuard private key
 * exists only in its own host-private state, mode 0600; the store holds the
 * public keys, in the hosts' liveness records, and nothing of any private key.
 */
import { readFileSync, statSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { keys } from "../../driver/cluster/keys.js";
import { publicKeyOf } from "../../driver/kernel/wireguard/host-key.js";
import { consulGetJson, consulHttp, readLab, type LabHost } from "./support/lab.js";

const lab = readLab();
const keyFile = (h: LabHost): string => `${h.dataDir}/tsoverlay-state/wireguard/private.key`;

describe("WireGuard host keys", () => {
  it("each host has its own private key, 0600 in a 0700 folder of its state; the store has its public key and no private one", async () => {
    const privates = new Map<string, string>();
    for (const h of lab.hosts) {
      expect(statSync(keyFile(h)).mode & 0o777, h.name).toBe(0o600);
      expect(statSync(`${h.dataDir}/tsoverlay-state/wireguard`).mode & 0o777, h.name).toBe(0o700);
      const priv = readFileSync(keyFile(h), "utf8").trim();
      privates.set(h.name, priv);
      const rec = await consulGetJson<{ wireguardKey?: string }>(h, keys.alive(h.addr));
      expect(rec?.wireguardKey, h.name).toBe(publicKeyOf(priv));
    }
    expect(new Set(privates.values()).size).toBe(lab.hosts.length);
    expect(new Set(lab.hosts.map((h) => publicKeyOf(privates.get(h.name)!))).size).toBe(lab.hosts.length);

    const r = await consulHttp(lab.hosts[0]!, "GET", "/v1/kv/tsoverlay/?recurse");
    expect(r.code, r.stderr).toBe(0);
    const values = (JSON.parse(r.stdout) as { Key: string; Value: string | null }[]).map(
      (e) => `${e.Key} ${Buffer.from(e.Value ?? "", "base64").toString("utf8")}`,
    );
    expect(values.length).toBeGreaterThan(lab.hosts.length);
    for (const [name, priv] of privates) {
      expect(
        values.filter((v) => v.includes(priv)),
        `${name}'s private key in the store`,
      ).toEqual([]);
    }
  });
});
