import { describe, expect, it } from "vitest";
import { loadConfig } from "../../plugin/compose/config.js";
import { parseIpamConfig, parseVniRange } from "../../driver/ipam/ipam-config.js";

/** The IPAM's settings as the plugin reads them from its environment. */
function ipamConfigFromEnv(hostId: string, env: Record<string, string>) {
  const config = loadConfig(env);
  if (!config.ok) throw new Error(config.error);
  return parseIpamConfig({ hostId, ...config.value.ipam });
}

describe("IPAM config", () => {
  it("has defaults", () => {
    expect(ipamConfigFromEnv("192.168.50.11", {})).toEqual({
      ok: true,
      value: { hostId: "192.168.50.11", poolRange: "10.213.0.0/16", poolSize: 24, vniRange: { min: 1048576, max: 16777215 } },
    });
  });

  it("reads the environment", () => {
    const cfg = ipamConfigFromEnv("h1", {
      TSOVERLAY_POOL_RANGE: "172.30.0.0/15",
      TSOVERLAY_POOL_SIZE: "/26",
      TSOVERLAY_VNI_RANGE: "100 - 200",
    });
    expect(cfg).toEqual({ ok: true, value: { hostId: "h1", poolRange: "172.30.0.0/15", poolSize: 26, vniRange: { min: 100, max: 200 } } });
  });

  it("treats empty variables as unset", () => {
    const cfg = ipamConfigFromEnv("h1", { TSOVERLAY_POOL_RANGE: " ", TSOVERLAY_POOL_SIZE: "" });
    expect(cfg.ok && cfg.value.poolRange).toBe("10.213.0.0/16");
  });

  it.each([
    [{ TSOVERLAY_POOL_RANGE: "10.213.0.1/16" }, "TSOVERLAY_POOL_RANGE: invalid subnet 10.213.0.1/16: it should be 10.213.0.0/16"],
    [{ TSOVERLAY_POOL_RANGE: "nope" }, "TSOVERLAY_POOL_RANGE: invalid subnet nope"],
    [{ TSOVERLAY_POOL_SIZE: "31" }, 'TSOVERLAY_POOL_SIZE: invalid pool size "31": expected a prefix length between 8 and 30'],
    [{ TSOVERLAY_POOL_SIZE: "24x" }, 'TSOVERLAY_POOL_SIZE: invalid pool size "24x"'],
    [{ TSOVERLAY_POOL_RANGE: "10.213.0.0/24", TSOVERLAY_POOL_SIZE: "16" }, "TSOVERLAY_POOL_SIZE: pool size /16 is larger than the pool range 10.213.0.0/24"],
    [{ TSOVERLAY_VNI_RANGE: "4096" }, 'TSOVERLAY_VNI_RANGE: invalid VNI range "4096": expected min-max'],
    [{ TSOVERLAY_VNI_RANGE: "0-100" }, "TSOVERLAY_VNI_RANGE: invalid VNI range 0-100: VNIs are integers in 1..16777215"],
    [{ TSOVERLAY_VNI_RANGE: "100-16777216" }, "TSOVERLAY_VNI_RANGE: invalid VNI range 100-16777216"],
    [{ TSOVERLAY_VNI_RANGE: "200-100" }, "TSOVERLAY_VNI_RANGE: invalid VNI range 200-100: min is above max"],
  ])("refuses %j", (env, message) => {
    const cfg = ipamConfigFromEnv("h1", env);
    expect(cfg.ok).toBe(false);
    if (!cfg.ok) expect(cfg.error).toContain(message);
  });

  it("refuses a host id that cannot be a key segment", () => {
    expect(parseIpamConfig({ hostId: "" }).ok).toBe(false);
    expect(parseIpamConfig({ hostId: "a/b" })).toEqual({ ok: false, error: `invalid host id "a/b": it must be non-empty, without '/' or spaces` });
  });

  it("parses VNI ranges", () => {
    expect(parseVniRange("1-16777215")).toEqual({ ok: true, value: { min: 1, max: 16777215 } });
    expect(parseVniRange("42-42")).toEqual({ ok: true, value: { min: 42, max: 42 } });
  });
});
