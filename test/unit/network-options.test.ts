import { describe, expect, it } from "vitest";
import { parseNetworkOptions } from "../../driver/network/network-options.js";

describe("-o options of a tsoverlay network", () => {
  it("accepts any valid VNI, including ones below the automatic range", () => {
    expect(parseNetworkOptions({ vni: "7001" })).toEqual({ ok: true, value: { vni: 7001 } });
    expect(parseNetworkOptions({ vni: "16777215" })).toEqual({ ok: true, value: { vni: 16777215 } });
  });

  it("refuses out-of-range and non-numeric values, naming the option", () => {
    expect(parseNetworkOptions({ vni: "0" })).toMatchObject({
      ok: false,
      error: expect.objectContaining({ message: expect.stringMatching(/invalid option vni=0/) }),
    });
    expect(parseNetworkOptions({ vni: "16777216" })).toMatchObject({ ok: false });
    expect(parseNetworkOptions({ vni: "abc" })).toMatchObject({
      ok: false,
      error: expect.objectContaining({ message: expect.stringMatching(/must be a number/) }),
    });
    expect(parseNetworkOptions({ mtu: "100" })).toMatchObject({
      ok: false,
      error: expect.objectContaining({ message: expect.stringMatching(/invalid option mtu=100/) }),
    });
  });

  it("takes the MTU from either spelling and refuses two different ones", () => {
    expect(parseNetworkOptions({ "com.docker.network.driver.mtu": "1400" })).toEqual({ ok: true, value: { mtu: 1400 } });
    expect(parseNetworkOptions({ mtu: "1400", "com.docker.network.driver.mtu": "1300" })).toMatchObject({ ok: false });
  });

  it("refuses unknown options, and Docker's keys it does not honour, saying which driver they belong to", () => {
    expect(parseNetworkOptions({ vnii: "1" })).toMatchObject({
      ok: false,
      error: expect.objectContaining({ message: expect.stringMatching(/unknown option vnii/) }),
    });
    expect(parseNetworkOptions({ "com.docker.network.bridge.name": "x" })).toMatchObject({
      ok: false,
      error: expect.objectContaining({
        message: expect.stringMatching(/^option com\.docker\.network\.bridge\.name belongs to Docker's bridge driver; tsoverlay does not support it/),
      }),
    });
    for (const k of ["com.docker.network.host_ipv4", "com.docker.network.driver.overlay.bind_interface", "com.docker.network.enable_ipv6"]) {
      expect(parseNetworkOptions({ [k]: "1" })).toMatchObject({
        ok: false,
        error: expect.objectContaining({ message: expect.stringContaining(`option ${k} is not supported by tsoverlay`) }),
      });
    }
  });

  it("takes the VNI from Docker's overlay option too, one ID only, agreeing with vni", () => {
    expect(parseNetworkOptions({ "com.docker.network.driver.overlay.vxlanid_list": "4242" })).toEqual({ ok: true, value: { vni: 4242 } });
    expect(parseNetworkOptions({ "com.docker.network.driver.overlay.vxlanid_list": "4242", vni: "4242" })).toEqual({ ok: true, value: { vni: 4242 } });
    expect(parseNetworkOptions({ "com.docker.network.driver.overlay.vxlanid_list": "4242", vni: "4243" })).toMatchObject({
      ok: false,
      error: expect.objectContaining({ message: expect.stringMatching(/conflicting VNI/) }),
    });
    expect(parseNetworkOptions({ "com.docker.network.driver.overlay.vxlanid_list": "4242,4243" })).toMatchObject({
      ok: false,
      error: expect.objectContaining({ message: expect.stringMatching(/exactly one VXLAN ID/) }),
    });
  });

  it("takes the container interface prefix and refuses one that cannot make an interface name", () => {
    expect(parseNetworkOptions({ "com.docker.network.container_iface_prefix": "ovl" })).toEqual({ ok: true, value: { ifacePrefix: "ovl" } });
    expect(parseNetworkOptions({ "com.docker.network.container_iface_prefix": "averylongprefix" })).toMatchObject({ ok: false });
    expect(parseNetworkOptions({ "com.docker.network.container_iface_prefix": "-x" })).toMatchObject({ ok: false });
  });
});

describe("-o proxy-protocol", () => {
  it("accepts v1 and v2 and refuses anything else", () => {
    expect(parseNetworkOptions({ "proxy-protocol": "v2" })).toEqual({ ok: true, value: { proxyProtocol: "v2" } });
    expect(parseNetworkOptions({ "proxy-protocol": "v3" })).toMatchObject({
      ok: false,
      error: expect.objectContaining({ message: expect.stringMatching(/proxy-protocol=v3: must be v1 or v2/) }),
    });
  });
});

describe("-o encrypted", () => {
  it("takes Docker's spelling (no value) and true/1; false/0 is a plain network; anything else is refused", () => {
    for (const v of ["", "true", "1", "TRUE"]) expect(parseNetworkOptions({ encrypted: v })).toEqual({ ok: true, value: { encrypted: true } });
    for (const v of ["false", "0"]) expect(parseNetworkOptions({ encrypted: v })).toEqual({ ok: true, value: {} });
    expect(parseNetworkOptions({ encrypted: "ipsec" })).toMatchObject({
      ok: false,
      error: expect.objectContaining({ message: expect.stringMatching(/invalid option encrypted=ipsec/) }),
    });
  });
});
