import { describe, expect, it } from "vitest";
import { formatIpv4, isLoopback, normalizeIp, parseIpv4, POOL_PREFIX, Subnet } from "../../lib/net.js";

const ip = (text: string): number => {
  const parsed = parseIpv4(text);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
};
const subnet = (text: string): Subnet => {
  const parsed = Subnet.parse(text);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
};

describe("parseIpv4 / formatIpv4", () => {
  it("round-trips dotted quads as unsigned integers", () => {
    expect(ip("0.0.0.0")).toBe(0);
    expect(ip("10.0.0.1")).toBe(0x0a000001);
    expect(ip("255.255.255.255")).toBe(0xffffffff);
    expect(formatIpv4(0xffffffff)).toBe("255.255.255.255");
    expect(formatIpv4(ip("192.168.7.9"))).toBe("192.168.7.9");
  });

  it.each(["10.0.0", "010.0.0.1", "0x0a.0.0.1", "10.0.0.256", "", "::1", "10.0.0.1/24"])("refuses %j", (text) => {
    expect(parseIpv4(text)).toEqual({ ok: false, error: `invalid IPv4 address ${text}` });
  });
});

describe("normalizeIp", () => {
  it.each([
    ["10.0.0.1", "10.0.0.1"],
    ["255.255.255.255", "255.255.255.255"],
    ["fe80:0:0:0:0:0:0:1", "fe80::1"],
    ["::ffff:1.2.3.4", "::ffff:102:304"],
  ])("%j → %j", (text, canonical) => expect(normalizeIp(text)).toBe(canonical));

  it.each(["010.0.0.1", "10.0.0", "10.0.0.256", "1.2.3.4 ", ""])("refuses %j", (text) => expect(() => normalizeIp(text)).toThrow(/invalid IP address/));
});

describe("Subnet.parse", () => {
  it("accepts a network address", () => {
    const s = subnet("10.10.0.0/24");
    expect(s.toString()).toBe("10.10.0.0/24");
    expect(s.prefix).toBe(24);
    expect(s.size).toBe(256);
  });

  it("refuses host bits like Docker does", () => {
    expect(Subnet.parse("10.0.0.1/24")).toEqual({ ok: false, error: "invalid subnet 10.0.0.1/24: it should be 10.0.0.0/24" });
    expect(Subnet.parse("10.1.2.3/16", POOL_PREFIX, "sub-pool")).toEqual({
      ok: false,
      error: "invalid sub-pool 10.1.2.3/16: it should be 10.1.0.0/16",
    });
  });

  it.each(["10.0.0.0", "10.0.0.0/33", "10.0.0.0/024", "10.0.0/24", "x/24", "10.0.0.0/-1"])("refuses %j", (text) => {
    const parsed = Subnet.parse(text);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.error).toContain(`invalid subnet ${text}`);
  });

  it("applies prefix limits (pools: /8../30)", () => {
    expect(Subnet.parse("10.0.0.0/8", POOL_PREFIX).ok).toBe(true);
    expect(Subnet.parse("10.0.0.0/30", POOL_PREFIX).ok).toBe(true);
    expect(Subnet.parse("10.0.0.0/31", POOL_PREFIX)).toEqual({
      ok: false,
      error: "invalid subnet 10.0.0.0/31: the prefix length must be between /8 and /30",
    });
    expect(Subnet.parse("8.0.0.0/7", POOL_PREFIX).ok).toBe(false);
  });
});

describe("Subnet arithmetic", () => {
  const s = subnet("10.10.0.0/24");

  it("knows network, broadcast and the usable hosts", () => {
    expect(formatIpv4(s.network)).toBe("10.10.0.0");
    expect(formatIpv4(s.broadcast)).toBe("10.10.0.255");
    expect(formatIpv4(s.firstHost)).toBe("10.10.0.1");
    expect(formatIpv4(s.lastHost)).toBe("10.10.0.254");
    expect(s.isReserved(ip("10.10.0.0"))).toBe(true);
    expect(s.isReserved(ip("10.10.0.255"))).toBe(true);
    expect(s.isReserved(ip("10.10.0.7"))).toBe(false);
  });

  it("gives the n-th host address", () => {
    const first = s.hostAddress(1);
    expect(first.ok && formatIpv4(first.value)).toBe("10.10.0.1");
    const last = s.hostAddress(254);
    expect(last.ok && formatIpv4(last.value)).toBe("10.10.0.254");
    expect(s.hostAddress(0).ok).toBe(false);
    expect(s.hostAddress(255)).toEqual({ ok: false, error: "subnet 10.10.0.0/24 has no host address number 255" });
  });

  it("iterates usable hosts lowest first", () => {
    expect([...subnet("10.0.0.0/30").hosts()].map(formatIpv4)).toEqual(["10.0.0.1", "10.0.0.2"]);
    expect([...subnet("10.0.0.4/31").hosts()].map(formatIpv4)).toEqual(["10.0.0.4", "10.0.0.5"]);
    expect([...s.hosts()]).toHaveLength(254);
  });

  it("tests containment and overlap", () => {
    expect(s.contains(ip("10.10.0.200"))).toBe(true);
    expect(s.contains(ip("10.10.1.0"))).toBe(false);
    expect(s.containsSubnet(subnet("10.10.0.128/25"))).toBe(true);
    expect(s.containsSubnet(subnet("10.10.0.0/23"))).toBe(false);
    expect(subnet("10.0.0.0/16").overlaps(subnet("10.0.1.0/24"))).toBe(true);
    expect(subnet("10.0.1.0/24").overlaps(subnet("10.0.0.0/16"))).toBe(true);
    expect(subnet("10.0.0.0/24").overlaps(subnet("10.0.1.0/24"))).toBe(false);
    expect(s.equals(subnet("10.10.0.0/24"))).toBe(true);
    expect(s.equals(subnet("10.10.0.0/25"))).toBe(false);
  });

  it("splits a range into blocks, lowest first", () => {
    expect([...subnet("10.213.0.0/22").split(24)].map(String)).toEqual(["10.213.0.0/24", "10.213.1.0/24", "10.213.2.0/24", "10.213.3.0/24"]);
    expect([...subnet("255.255.255.0/24").split(25)].map(String)).toEqual(["255.255.255.0/25", "255.255.255.128/25"]);
    expect(() => [...s.split(16)]).toThrow("cannot split 10.10.0.0/24 into /16 blocks");
  });

  it("handles the ends of the address space", () => {
    const all = subnet("0.0.0.0/0");
    expect(all.size).toBe(2 ** 32);
    expect(formatIpv4(all.broadcast)).toBe("255.255.255.255");
    expect(Subnet.containing(ip("192.168.1.77"), 26).toString()).toBe("192.168.1.64/26");
  });
});

describe("isLoopback", () => {
  it("knows 127/8 and ::1 (also IPv4-mapped), and nothing else", () => {
    for (const ip of ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"]) expect(isLoopback(ip), ip).toBe(true);
    for (const ip of ["10.0.0.1", "0.0.0.0", "::", "128.0.0.1", "", "localhost"]) expect(isLoopback(ip), ip).toBe(false);
  });
});
