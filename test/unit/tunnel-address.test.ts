import { describe, expect, it } from "vitest";
import { collisions, parseTunnelSubnet, tunnelAddressOf } from "../../driver/encryption/tunnel-address.js";

const subnet = (text: string) => {
  const r = parseTunnelSubnet(text);
  if (!r.ok) throw new Error(r.error);
  return r.value;
};

describe("tunnel addresses (encrypted networks)", () => {
  it("keeps the VTEP's low bits inside the tunnel subnet", () => {
    const s = subnet("100.76.0.0/16");
    expect(tunnelAddressOf("10.99.0.11", s)).toBe("100.76.0.11");
    expect(tunnelAddressOf("192.168.7.200", s)).toBe("100.76.7.200");
    expect(tunnelAddressOf("10.1.2.3", subnet("100.76.8.0/24"))).toBe("100.76.8.3");
  });

  it("never gives the subnet's network or broadcast address", () => {
    const s = subnet("100.76.8.0/24");
    expect(tunnelAddressOf("10.0.0.0", s)).toBe("100.76.8.1");
    expect(tunnelAddressOf("10.0.0.255", s)).toBe("100.76.8.254");
  });

  it("normalises the subnet and refuses what is not one, or too small or too large", () => {
    expect(subnet("100.76.3.4/16")).toEqual({ base: "100.76.0.0", prefix: 16 });
    expect(parseTunnelSubnet("100.76.0.0")).toMatchObject({ ok: false });
    expect(parseTunnelSubnet("100.76.0.0/28")).toMatchObject({ ok: false, error: expect.stringMatching(/between \/8 and \/24/) });
    expect(parseTunnelSubnet("10.0.0.0/4")).toMatchObject({ ok: false });
  });

  it("names the VTEPs whose tunnel addresses collide, and only those", () => {
    const s = subnet("100.76.0.0/24");
    expect([...collisions(["10.0.1.5", "10.0.2.5", "10.0.2.6", "10.0.2.6"], s)].sort()).toEqual(["10.0.1.5", "10.0.2.5"]);
    expect(collisions(["10.0.0.1", "10.0.0.2"], s).size).toBe(0);
  });
});
