import { readFileSync } from "node:fs";
import { StoreError, type EphemeralKey, type KV, type Store, type Watch } from "../../driver/contracts/store.js";

/**
 * The Consul ACL policy a host gets (scripts/consul-policy.hcl: the file the
 * README shows and the lab gives its hosts), as data, and a Store that
 * enforces it as Consul does for KV: the rule with the longest matching
 * prefix decides (an exact `key` rule before any prefix); with no rule,
 * nothing. A denied call fails as Consul refuses it: a StoreError without
 * `unavailable` (HTTP 403, "Permission denied").
 */
export interface AclRule {
  kind: "key" | "key_prefix";
  path: string;
  policy: "read" | "write";
}

/** The rules of scripts/consul-policy.hcl, with its placeholders as they are. */
export const POLICY_TEMPLATE = readFileSync(new URL("../../scripts/consul-policy.hcl", import.meta.url), "utf8")
  .split("\n")
  .filter((l) => l.trim() !== "" && !l.startsWith("#"))
  .join("\n");

/** The KV rules of host `hostId`'s policy (its `session` rule is Consul's business, not the store's). */
export function hostPolicy(hostId: string): AclRule[] {
  return POLICY_TEMPLATE.replaceAll("@HOST_ID@", hostId)
    .split("\n")
    .flatMap((line): AclRule[] => {
      const m = /^(key_prefix|key)\s+"([^"]*)"\s+\{ policy = "(read|write)" \}$/.exec(line);
      return m === null ? [] : [{ kind: m[1] as AclRule["kind"], path: m[2]!, policy: m[3] as AclRule["policy"] }];
    });
}

function allowed(rules: readonly AclRule[], key: string, want: "read" | "write"): boolean {
  const exact = rules.find((r) => r.kind === "key" && r.path === key);
  const rule = exact ?? [...rules].filter((r) => r.kind === "key_prefix" && key.startsWith(r.path)).sort((a, b) => b.path.length - a.path.length)[0];
  if (rule === undefined) return false;
  return want === "read" || rule.policy === "write";
}

/** `inner` as seen with one host's token. */
export class AclStore implements Store {
  /** Calls refused, as "op key". */
  readonly denied: string[] = [];

  constructor(
    private readonly inner: Store,
    private readonly rules: readonly AclRule[],
  ) {}

  private check(op: string, key: string, want: "read" | "write"): void {
    if (allowed(this.rules, key, want)) return;
    this.denied.push(`${op} ${key}`);
    throw new StoreError(op, key, "Consul at test:8500 refused the request: HTTP 403: Permission denied");
  }

  async get(key: string): Promise<KV | undefined> {
    this.check("get", key, "read");
    return this.inner.get(key);
  }

  async put(key: string, value: string): Promise<void> {
    this.check("put", key, "write");
    return this.inner.put(key, value);
  }

  async cas(key: string, value: string, index: number): Promise<boolean> {
    this.check("cas", key, "write");
    return this.inner.cas(key, value, index);
  }

  async delete(key: string, index?: number): Promise<boolean> {
    this.check("delete", key, "write");
    return this.inner.delete(key, index);
  }

  async deleteTree(prefix: string): Promise<void> {
    this.check("deleteTree", prefix, "write");
    return this.inner.deleteTree(prefix);
  }

  async list(prefix: string): Promise<KV[]> {
    this.check("list", prefix, "read");
    return this.inner.list(prefix);
  }

  watch(prefix: string, onChange: (kvs: KV[]) => void, onError?: (err: Error) => void): Watch {
    return this.inner.watch(prefix, onChange, onError);
  }

  async putEphemeral(key: string, value: string, ttlSeconds: number): Promise<EphemeralKey> {
    this.check("putEphemeral", key, "write");
    return this.inner.putEphemeral(key, value, ttlSeconds);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
