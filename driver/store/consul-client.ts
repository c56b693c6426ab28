/**
 * The subset of the `consul` client this adapter uses, typed with the options
 * the runtime honours but the bundled typings omit (timeout, ctx, index, wait),
 * and the KV helpers every part of the adapter shares.
 */
import type { EventEmitter } from "node:events";
import { compareKeys, isUnderPrefix } from "./keyspace.js";
import type { KV } from "../contracts/store.js";

export interface RequestContext extends EventEmitter {
  /** Makes calls resolve `[response, body]` so the X-Consul-Index header is readable. */
  includeResponse: boolean;
}
export interface RequestOptions {
  timeout?: number;
  ctx?: RequestContext;
}
export interface ConsulKvItem {
  Key: string;
  Value: string | null;
  ModifyIndex: number;
}
export interface ConsulClient {
  kv: {
    get(opts: { key: string; recurse?: boolean; index?: string; wait?: string } & RequestOptions): Promise<unknown>;
    set(opts: { key: string; value: string; cas?: number; acquire?: string }): Promise<boolean>;
    del(opts: { key: string; recurse?: boolean; cas?: number }): Promise<boolean>;
  };
  session: {
    create(opts: { name: string; ttl: string; behavior: "delete"; lockdelay: string }): Promise<{ ID: string }>;
    renew(opts: { id: string }): Promise<unknown>;
    destroy(opts: { id: string }): Promise<unknown>;
  };
  status: { leader(): Promise<string> };
  transaction: { create(operations: unknown[]): Promise<unknown> };
  destroy(): void;
}

export function toKV(item: ConsulKvItem): KV {
  return { key: item.Key, value: item.Value ?? "", modifyIndex: item.ModifyIndex };
}

/** Consul matches a recursive prefix as a raw string; apply the directory semantics of isUnderPrefix. */
export function filterUnder(items: unknown, prefix: string): KV[] {
  if (!Array.isArray(items)) return [];
  return (items as ConsulKvItem[])
    .filter((item) => isUnderPrefix(item.Key, prefix))
    .map(toKV)
    .sort(compareKeys);
}
