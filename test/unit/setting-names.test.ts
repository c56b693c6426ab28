/**
 * tsoverlay's settings in one style (plugin/compose/config.ts), the old names
 * and values still read with a warning (setting-renames.ts), and config.json
 * declaring exactly the schema's current names.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { SETTING_NAMES, type PluginConfig } from "../../plugin/compose/config.js";
import { config, refusal } from "../support/plugin-config.js";
import { RENAMES } from "../../plugin/compose/setting-renames.js";

describe("old names", () => {
  it.each([
    ["LOG_LEVEL", "debug", (c: PluginConfig) => c.logLevel, "debug", "LOG_LEVEL is an old name: use TSOVERLAY_LOG_LEVEL (read as debug)"],
    [
      "ADVERTISE_ADDR",
      "192.0.2.11",
      (c: PluginConfig) => c.advertiseAddr,
      "192.0.2.11",
      "ADVERTISE_ADDR is an old name: use TSOVERLAY_ADVERTISE_ADDR (read as 192.0.2.11)",
    ],
    ["ADVERTISE_IFACE", "eth1", (c: PluginConfig) => c.advertiseIface, "eth1", "ADVERTISE_IFACE is an old name: use TSOVERLAY_ADVERTISE_IFACE (read as eth1)"],
    [
      "TSOVERLAY_RECONCILE_MS",
      "2500",
      (c: PluginConfig) => c.reconcileMs,
      2500,
      "TSOVERLAY_RECONCILE_MS is an old name: use TSOVERLAY_RECONCILE_S, in seconds (read as 2.5)",
    ],
  ])("%s=%s is read, with a warning naming the new setting and the value", (name, value, read, want, warning) => {
    const c = config({ [name]: value });
    expect(read(c)).toBe(want);
    expect(c.warnings).toEqual([warning]);
  });

  it.each([
    ["on", 53, "TSOVERLAY_DNS=on is an old value: use TSOVERLAY_DNS=true (read as true)"],
    ["off", undefined, "TSOVERLAY_DNS=off is an old value: use TSOVERLAY_DNS=false (read as false)"],
  ])("TSOVERLAY_DNS=%s is read as the switch it was, with a warning", (value, dnsPort, warning) => {
    const c = config({ TSOVERLAY_DNS: value });
    expect(c.dnsPort).toBe(dnsPort);
    expect(c.warnings).toEqual([warning]);
  });

  it("the new name wins over the old one, which is reported as ignored", () => {
    const c = config({ LOG_LEVEL: "debug", TSOVERLAY_LOG_LEVEL: "warn", TSOVERLAY_RECONCILE_MS: "2000", TSOVERLAY_RECONCILE_S: "7" });
    expect(c.logLevel).toBe("warn");
    expect(c.reconcileMs).toBe(7000);
    expect(c.warnings).toEqual([
      "LOG_LEVEL (debug) was ignored: it is an old name of TSOVERLAY_LOG_LEVEL, which is set too (warn)",
      "TSOVERLAY_RECONCILE_MS (2000) was ignored: it is an old name of TSOVERLAY_RECONCILE_S, which is set too (7)",
    ]);
  });

  it("empty means the default, under either name: an empty old name is not a use; an empty new one leaves the old one read", () => {
    const none = config({ LOG_LEVEL: "", TSOVERLAY_RECONCILE_MS: "" });
    expect(none.logLevel).toBe("info");
    expect(none.reconcileMs).toBe(5000);
    expect(none.warnings).toEqual([]);
    const old = config({ LOG_LEVEL: "trace", TSOVERLAY_LOG_LEVEL: "" });
    expect(old.logLevel).toBe("trace");
    expect(old.warnings).toEqual(["LOG_LEVEL is an old name: use TSOVERLAY_LOG_LEVEL (read as trace)"]);
  });

  it("its warnings come with Consul's, in PluginConfig.warnings (logged at start)", () => {
    expect(config({ ADVERTISE_IFACE: "eth0", CONSUL_HTTP_TOKEN: "t" }).warnings).toEqual([
      "ADVERTISE_IFACE is an old name: use TSOVERLAY_ADVERTISE_IFACE (read as eth0)",
      "CONSUL_HTTP_TOKEN set but CONSUL_HTTP_ADDR is empty: the embedded single-host store is used, not Consul",
    ]);
  });

  it("Consul's settings keep their names: nothing about them is renamed", () => {
    expect(RENAMES.filter((r) => r.old.startsWith("CONSUL_") || r.now.startsWith("CONSUL_"))).toEqual([]);
    expect(RENAMES.every((r) => r.now.startsWith("TSOVERLAY_"))).toBe(true);
  });
});

describe("values", () => {
  it("defaults: level info, reconcile every 5 s, names served, networks propagated, no warning", () => {
    const c = config({});
    expect(c).toMatchObject({ logLevel: "info", reconcileMs: 5000, dnsPort: 53, propagate: true, advertiseAddr: "", advertiseIface: "" });
    expect(c.warnings).toEqual([]);
  });

  it.each([
    ["0.1", 100],
    ["0.25", 250],
    ["2.5", 2500],
    ["3600", 3_600_000],
  ])("TSOVERLAY_RECONCILE_S=%s is %i ms", (s, ms) => {
    expect(config({ TSOVERLAY_RECONCILE_S: s }).reconcileMs).toBe(ms);
  });

  it.each([
    ["true", true],
    ["1", true],
    ["t", true],
    ["TRUE", true],
    ["false", false],
    ["0", false],
    ["F", false],
    ["False", false],
  ])("switches take Go's spellings: %s is %s", (v, on) => {
    expect(config({ TSOVERLAY_PROPAGATE: v }).propagate).toBe(on);
    const dns = config({ TSOVERLAY_DNS: v });
    expect(dns.dnsPort).toBe(on ? 53 : undefined);
    expect(dns.warnings).toEqual([]);
  });

  it.each([
    [{ TSOVERLAY_LOG_LEVEL: "loud" }, "TSOVERLAY_LOG_LEVEL: "],
    [{ LOG_LEVEL: "loud" }, "TSOVERLAY_LOG_LEVEL (given as LOG_LEVEL=loud): "],
    [{ TSOVERLAY_RECONCILE_S: "0.05" }, "TSOVERLAY_RECONCILE_S: "],
    [{ TSOVERLAY_RECONCILE_S: "3601" }, "TSOVERLAY_RECONCILE_S: "],
    [{ TSOVERLAY_RECONCILE_S: "soon" }, "TSOVERLAY_RECONCILE_S: "],
    [{ TSOVERLAY_RECONCILE_MS: "50" }, "TSOVERLAY_RECONCILE_S (given as TSOVERLAY_RECONCILE_MS=50): "],
    [{ TSOVERLAY_RECONCILE_MS: "soon" }, "TSOVERLAY_RECONCILE_S (given as TSOVERLAY_RECONCILE_MS=soon): "],
    [{ TSOVERLAY_DNS: "yes" }, "TSOVERLAY_DNS: "],
    [{ TSOVERLAY_DNS: "On" }, "TSOVERLAY_DNS: "],
    [{ TSOVERLAY_PROPAGATE: "on" }, "TSOVERLAY_PROPAGATE: "],
  ])("%j is refused, naming the setting as it is called now", (env, named) => {
    const error = refusal(env);
    expect(error.startsWith("invalid environment: ")).toBe(true);
    expect(error).toContain(named);
  });
});

describe("config.json declares the current names", () => {
  const manifest = JSON.parse(readFileSync(new URL("../../config.json", import.meta.url), "utf8")) as { env: { name: string; value: string }[] };
  const declared = manifest.env.map((e) => e.name);
  const oldNames = RENAMES.filter((r) => r.old !== r.now).map((r) => r.old);
  // Read but not offered to operators: the daemon's "dns" setting takes an address only, so port 53 it is.
  const UNDECLARED = ["TSOVERLAY_DNS_PORT"];

  it("no old name: `docker plugin set` refuses them on the new plugin", () => {
    expect(oldNames.length).toBeGreaterThan(0);
    expect(declared.filter((n) => oldNames.includes(n))).toEqual([]);
  });

  it("every declared setting is one the schema reads, and every one the schema reads is declared", () => {
    expect(declared.filter((n) => !SETTING_NAMES.includes(n))).toEqual([]);
    expect(SETTING_NAMES.filter((n) => !declared.includes(n) && !UNDECLARED.includes(n))).toEqual([]);
    expect(new Set(declared).size).toBe(declared.length);
  });

  it("its defaults are read without a warning (no old value among them)", () => {
    const c = config(Object.fromEntries(manifest.env.map((e) => [e.name, e.value])));
    expect(c.warnings).toEqual([]);
  });

  it("the README lists every old name still read", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    for (const r of RENAMES) expect(readme).toContain(r.old === r.now ? `\`${r.old}=on\`` : `\`${r.old}\``);
  });
});
