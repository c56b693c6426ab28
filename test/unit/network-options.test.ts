import { describe, expect, it } from "vitest";
import { parseNetworkOptions } from "../../driver/network/network-options.js";

describe("-o options of a tsoverlay network", () => {
  it("accepts any valid VNI, including ones below the automatic range", () => {
    expect(parseNetworkOptions({ vni: "7001" })).toEqual({ ok: true, value: { vni: 7001 } });
    expect(parseNetworkOptions({ vni: "16777215" })).toEqual({ ok: true, value: { vni: 16777215 } });
  });

  it("refuses out-of-range and non-numeric values, naming the option", () => {
    expect(parseNetworkOptions({ vni: "0" })).toMatchObject({ ok: false, error: expect.stringMatching(/invalid option vni=0/) });
    expect(parseNetworkOptions({ vni: "16777216" })).toMatchObject({ ok: false });
    expect(parseNetworkOptions({ vni: "abc" })).toMatchObject({ ok: false, error: expect.stringMatching(/must be a number/) });
    expect(parseNetworkOptions({ mtu: "100" })).toMatchObject({ ok: false, error: expect.stringMatching(/invalid option mtu=100/) });
  });

  it("takes the MTU from either spelling and refuses two different ones", () => {
    expect(parseNetworkOptions({ "com.docker.network.driver.mtu": "1400" })).toEqual({ ok: true, value: { mtu: 1400 } });
    expect(parseNetworkOptions({ mtu: "1400", "com.docker.network.driver.mtu": "1300" })).toMatchObject({ ok: false });
  });

  it("refuses unknown options but lets Docker's own keys through", () => {
    expect(parseNetworkOptions({ vnii: "1" })).toMatchObject({ ok: false, error: expect.stringMatching(/unknown option vnii/) });
    expect(parseNetworkOptions({ "com.docker.network.bridge.name": "x" })).toEqual({ ok: true, value: {} });
  });
});

describe("-o proxy-protocol", () => {
  it("accepts v1 and v2 and refuses anything else", () => {
    expect(parseNetworkOptions({ "proxy-protocol": "v2" })).toEqual({ ok: true, value: { proxyProtocol: "v2" } });
    expect(parseNetworkOptions({ "proxy-protocol": "v3" })).toMatchObject({ ok: false, error: expect.stringMatching(/proxy-protocol=v3: must be v1 or v2/) });
  });
});
