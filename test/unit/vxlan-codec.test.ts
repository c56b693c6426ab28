import { describe, it, expect } from "vitest";
import {
  decodeArp,
  decodeEthernetHeader,
  decodeIpv4,
  decodeVxlanDatagram,
  decodeVxlanHeader,
  encodeArp,
  encodeEthernetHeader,
  encodeIpv4,
  encodeVxlanDatagram,
  encodeVxlanHeader,
  formatMac,
  internetChecksum,
  parseMac,
  type ArpPacket,
  type VxlanDatagram,
} from "../../driver/kernel/vxlan-codec.js";
import { ipFromBytes, ipv4ToBuffer, parseIpv4 } from "../../lib/net.js";
import type { Result } from "../../lib/result.js";

/** Hex string (whitespace ignored) to bytes. */
const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");
const toHex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

function ok<T>(r: Result<T>): T {
  if (!r.ok) throw new Error(`expected success, got failure: ${r.error}`);
  return r.value;
}
function err<T>(r: Result<T>): string {
  if (r.ok) throw new Error(`expected failure, got success: ${JSON.stringify(r.value)}`);
  return r.error;
}

// ---------------------------------------------------------------------------
// Hand-built frames. Checksums were summed by hand (shown) and cross-checked.

const VXLAN_VNI_42 = "08 000000 00002a 00";

const ARP_REQUEST_ETH = "ffffffffffff 02420a000001 0806";
// who-has 10.0.0.2 tell 10.0.0.1
const ARP_REQUEST = "0001 0800 06 04 0001 02420a000001 0a000001 000000000000 0a000002";

const ARP_REPLY_ETH = "02420a000001 deadbeef0002 0806";
// 10.0.0.2 is-at de:ad:be:ef:00:02
const ARP_REPLY = "0001 0800 06 04 0002 deadbeef0002 0a000002 02420a000001 0a000001";

// IPv4 10.0.0.1 -> 10.0.0.2, ICMP, id 0x1c46, DF, TTL 64, total length 32.
// 4500+0020+1c46+4000+4001+0a00+0001+0a00+0002 = f56a, ~f56a = 0a95.
const IPV4_ICMP_HDR = "4500 0020 1c46 4000 4001 0a95 0a000001 0a000002";
// ICMP echo request id 0x1234 seq 1 data "abcd".
// 0800+1234+0001+6162+6364 = defb, ~defb = 2104.
const ICMP_ECHO = "0800 2104 1234 0001 61626364";
const ICMP_ETH = "deadbeef0002 02420a000001 0800";

// Tagged frame: PCP 5, DEI 0, VID 100 -> TCI a064. ICMP echo reply 10.0.0.2 -> 10.0.0.1.
// 4500+0020+abcd+0000+4001+0a00+0002+0a00+0001 = 130ee -> 30ef+...= 44f2, ~44f2 = bb0d.
const TAGGED_ETH = "02420a000001 deadbeef0002 8100 a064 0800";
const IPV4_REPLY_HDR = "4500 0020 abcd 0000 4001 bb0d 0a000002 0a000001";
// 0000+1234+0001+6162+6364 = d6fb, ~d6fb = 2904.
const ICMP_REPLY = "0000 2904 1234 0001 61626364";

// IHL 6 with a Router Alert option (94 04 0000), UDP, TTL 1, 10.1.2.3 -> 224.0.0.22,
// total length 28 (24 header + 4 payload). Sum c74c, ~c74c = 38b3.
const IPV4_OPTIONS_PKT = "4600 001c 0000 0000 0111 38b3 0a010203 e0000016 94040000 cafebabe";

// The worked example from Wikipedia's "IPv4 header checksum" article.
const WIKIPEDIA_IPV4_HDR = "4500 0073 0000 4000 4011 b861 c0a80001 c0a800c7";

const IPV6_ETH = "3333 00000001 02420a000001 86dd";
const IPV6_HDR = "6000 0000 0000 3a ff fe800000000000000000000000000001 ff020000000000000000000000000001";

// ---------------------------------------------------------------------------

describe("addresses and checksum", () => {
  it("parses and formats MACs in lower case, accepting either case on input", () => {
    expect(toHex(ok(parseMac("DE:AD:be:ef:00:02")))).toBe("deadbeef0002");
    expect(formatMac(h("DEADBEEF0002"))).toBe("de:ad:be:ef:00:02");
  });

  it.each(["", "de:ad:be:ef:00", "de:ad:be:ef:00:02:03", "de-ad-be-ef-00-02", "deadbeef0002", "dg:ad:be:ef:00:02", "d:ad:be:ef:00:02"])(
    "rejects MAC %j",
    (mac) => {
      expect(err(parseMac(mac))).toBe(`invalid MAC address ${JSON.stringify(mac)} (want aa:bb:cc:dd:ee:ff)`);
    },
  );

  it("parses and formats IPv4 addresses", () => {
    expect(toHex(ipv4ToBuffer(ok(parseIpv4("10.0.0.255"))))).toBe("0a0000ff");
    expect(toHex(ipv4ToBuffer(ok(parseIpv4("0.0.0.0"))))).toBe("00000000");
    expect(ipFromBytes(h("c0a800c7"))).toBe("192.168.0.199");
  });

  it.each(["", "10.0.0", "10.0.0.1.2", "256.0.0.1", "01.2.3.4", "a.b.c.d", " 1.2.3.4", "1.2.3.4 ", "1..2.3", "-1.2.3.4"])("rejects IPv4 %j", (ip) => {
    expect(err(parseIpv4(ip))).toMatch(/^invalid IPv4 address/);
  });

  it("computes the Internet checksum of known headers", () => {
    const zeroed = h(WIKIPEDIA_IPV4_HDR);
    zeroed.writeUInt16BE(0, 10);
    expect(internetChecksum(zeroed)).toBe(0xb861);
    expect(internetChecksum(h(WIKIPEDIA_IPV4_HDR))).toBe(0);
    expect(internetChecksum(h(IPV4_ICMP_HDR))).toBe(0);
    expect(internetChecksum(h(ICMP_ECHO))).toBe(0);
    // Odd length: the last byte is padded with a zero byte.
    expect(internetChecksum(h("0102 03"))).toBe(~(0x0102 + 0x0300) & 0xffff);
  });
});

describe("vxlan header", () => {
  it.each([
    [0, "08 000000 000000 00"],
    [256, "08 000000 000100 00"],
    [0x123456, "08 000000 123456 00"],
    [0xffffff, "08 000000 ffffff 00"],
  ])("decodes VNI %i", (vni, hdr) => {
    const decoded = ok(decodeVxlanHeader(h(hdr + "aabb")));
    expect(decoded.value).toEqual({ vni });
    expect(toHex(decoded.rest)).toBe("aabb");
    expect(toHex(ok(encodeVxlanHeader(vni)))).toBe(h(hdr).toString("hex"));
  });

  it("ignores reserved bits and other flag bits", () => {
    expect(ok(decodeVxlanHeader(h("ff ffffff 000100 ff"))).value).toEqual({ vni: 256 });
  });

  it.each([
    ["00", "vxlan header: I flag not set (flags 0x00)"],
    ["f7", "vxlan header: I flag not set (flags 0xf7)"],
  ])("rejects flags %s", (flags, message) => {
    expect(err(decodeVxlanHeader(h(`${flags} 000000 000100 00`)))).toBe(message);
  });

  it("rejects every length shorter than 8 bytes", () => {
    const full = h(VXLAN_VNI_42);
    for (let n = 0; n < 8; n++) {
      expect(err(decodeVxlanHeader(full.subarray(0, n)))).toBe(`vxlan header: truncated (8 bytes needed, ${n} available)`);
    }
  });

  it.each([-1, 0x1000000, 1.5, Number.NaN])("refuses to encode VNI %d", (vni) => {
    expect(err(encodeVxlanHeader(vni))).toBe(`vxlan header: VNI ${vni} out of range 0..16777215`);
  });
});

describe("ethernet header", () => {
  it("decodes an untagged header", () => {
    const decoded = ok(decodeEthernetHeader(h(ARP_REPLY_ETH + "0001")));
    expect(decoded.value).toEqual({ dst: "02:42:0a:00:00:01", src: "de:ad:be:ef:00:02", ethertype: 0x0806 });
    expect(decoded.value.vlan).toBeUndefined();
    expect(toHex(decoded.rest)).toBe("0001");
  });

  it("decodes one 802.1Q tag and exposes its VLAN id", () => {
    const decoded = ok(decodeEthernetHeader(h(TAGGED_ETH + "45")));
    expect(decoded.value).toEqual({
      dst: "02:42:0a:00:00:01",
      src: "de:ad:be:ef:00:02",
      ethertype: 0x0800,
      vlan: { id: 100, priority: 5, dei: false },
    });
    expect(toHex(decoded.rest)).toBe("45");
  });

  it("decodes the DEI bit and the reserved VLAN id 4095", () => {
    const decoded = ok(decodeEthernetHeader(h("02420a000001 deadbeef0002 8100 3fff 86dd")));
    expect(decoded.value.vlan).toEqual({ id: 4095, priority: 1, dei: true });
    expect(decoded.value.ethertype).toBe(0x86dd);
  });

  it("rejects stacked VLAN tags", () => {
    expect(err(decodeEthernetHeader(h("02420a000001 deadbeef0002 8100 0064 8100 0065 0800")))).toBe(
      "ethernet header: stacked VLAN tags not supported (inner tag type 0x8100)",
    );
    expect(err(decodeEthernetHeader(h("02420a000001 deadbeef0002 88a8 0064 8100 0065 0800")))).toBe(
      "ethernet header: stacked VLAN tags not supported (outer tag type 0x88a8)",
    );
  });

  it("rejects 802.3 length fields", () => {
    expect(err(decodeEthernetHeader(h("02420a000001 deadbeef0002 002e")))).toBe("ethernet header: 802.3 length field 0x002e, not an Ethernet II ethertype");
    expect(err(decodeEthernetHeader(h("02420a000001 deadbeef0002 8100 0064 05dc")))).toMatch(/802\.3 length field 0x05dc/);
  });

  it("rejects every truncation, untagged and tagged", () => {
    const untagged = h(ARP_REPLY_ETH);
    for (let n = 0; n < untagged.length; n++) {
      expect(err(decodeEthernetHeader(untagged.subarray(0, n)))).toBe(`ethernet header: truncated (14 bytes needed, ${n} available)`);
    }
    const tagged = h(TAGGED_ETH);
    for (let n = 14; n < tagged.length; n++) {
      expect(err(decodeEthernetHeader(tagged.subarray(0, n)))).toBe(`ethernet header (802.1Q tagged): truncated (18 bytes needed, ${n} available)`);
    }
  });

  it("encodes untagged and tagged headers byte for byte", () => {
    expect(toHex(ok(encodeEthernetHeader({ dst: "02:42:0a:00:00:01", src: "DE:AD:BE:EF:00:02", ethertype: 0x0806 })))).toBe(toHex(h(ARP_REPLY_ETH)));
    expect(
      toHex(
        ok(
          encodeEthernetHeader({
            dst: "02:42:0a:00:00:01",
            src: "de:ad:be:ef:00:02",
            ethertype: 0x0800,
            vlan: { id: 100, priority: 5 },
          }),
        ),
      ),
    ).toBe(toHex(h(TAGGED_ETH)));
    expect(
      toHex(ok(encodeEthernetHeader({ dst: "02:42:0a:00:00:01", src: "de:ad:be:ef:00:02", ethertype: 0x86dd, vlan: { id: 4094, priority: 1, dei: true } }))),
    ).toBe("02420a000001deadbeef00028100" + "3ffe" + "86dd");
  });

  it("refuses invalid encode input", () => {
    const base = { dst: "02:42:0a:00:00:01", src: "de:ad:be:ef:00:02", ethertype: 0x0800 };
    expect(err(encodeEthernetHeader({ ...base, dst: "02:42:0a:00:00" }))).toBe(
      'ethernet header: destination: invalid MAC address "02:42:0a:00:00" (want aa:bb:cc:dd:ee:ff)',
    );
    expect(err(encodeEthernetHeader({ ...base, src: "zz:42:0a:00:00:01" }))).toMatch(/^ethernet header: source: invalid MAC/);
    expect(err(encodeEthernetHeader({ ...base, ethertype: 0x05dc }))).toMatch(/ethertype 0x05dc is an 802\.3 length/);
    expect(err(encodeEthernetHeader({ ...base, ethertype: 0x10000 }))).toBe("ethernet header: ethertype 65536 out of range 0..65535");
    expect(err(encodeEthernetHeader({ ...base, ethertype: 0x8100 }))).toMatch(/use the vlan field/);
    expect(err(encodeEthernetHeader({ ...base, vlan: { id: 4095 } }))).toBe("ethernet header: VLAN id 4095 out of range 0..4094");
    expect(err(encodeEthernetHeader({ ...base, vlan: { id: 1, priority: 8 } }))).toBe("ethernet header: VLAN priority 8 out of range 0..7");
  });
});

describe("arp", () => {
  const request: ArpPacket = {
    op: "request",
    senderMac: "02:42:0a:00:00:01",
    senderIp: "10.0.0.1",
    targetMac: "00:00:00:00:00:00",
    targetIp: "10.0.0.2",
  };
  const reply: ArpPacket = {
    op: "reply",
    senderMac: "de:ad:be:ef:00:02",
    senderIp: "10.0.0.2",
    targetMac: "02:42:0a:00:00:01",
    targetIp: "10.0.0.1",
  };

  it("decodes a request", () => {
    const decoded = ok(decodeArp(h(ARP_REQUEST)));
    expect(decoded.value).toEqual(request);
    expect(decoded.rest.length).toBe(0);
  });

  it("decodes a reply and leaves trailing padding in rest", () => {
    const decoded = ok(decodeArp(h(ARP_REPLY + "00".repeat(18))));
    expect(decoded.value).toEqual(reply);
    expect(decoded.rest.length).toBe(18);
  });

  it("encodes requests and replies byte for byte", () => {
    expect(toHex(ok(encodeArp(request)))).toBe(toHex(h(ARP_REQUEST)));
    expect(toHex(ok(encodeArp(reply)))).toBe(toHex(h(ARP_REPLY)));
  });

  it.each([
    ["0006 0800 06 04 0001", "arp: unsupported hardware type 6 (want 1, Ethernet)"],
    ["0001 86dd 06 04 0001", "arp: unsupported protocol type 0x86dd (want 0x0800, IPv4)"],
    ["0001 0800 08 04 0001", "arp: hardware address length 8 (want 6)"],
    ["0001 0800 06 10 0001", "arp: protocol address length 16 (want 4)"],
    ["0001 0800 06 04 0003", "arp: unsupported op 3 (want 1 request or 2 reply)"],
  ])("rejects fixed part %s", (fixed, message) => {
    expect(err(decodeArp(h(fixed + "02420a000001 0a000001 000000000000 0a000002")))).toBe(message);
  });

  it("rejects every length shorter than 28 bytes", () => {
    const full = h(ARP_REQUEST);
    for (let n = 0; n < full.length; n++) {
      expect(err(decodeArp(full.subarray(0, n)))).toBe(`arp: truncated (28 bytes needed, ${n} available)`);
    }
  });

  it("refuses invalid encode input", () => {
    expect(err(encodeArp({ ...request, targetIp: "10.0.0.256" }))).toBe("arp: target IP: invalid IPv4 address 10.0.0.256");
    expect(err(encodeArp({ ...request, senderMac: "02:42:0a:00:00:1" }))).toMatch(/^arp: sender MAC: invalid MAC/);
    expect(err(encodeArp({ ...request, op: "rarp" as never }))).toBe('arp: invalid op "rarp" (want "request" or "reply")');
  });
});

describe("ipv4", () => {
  it("decodes an ICMP echo request and leaves the ICMP message in rest", () => {
    const decoded = ok(decodeIpv4(h(IPV4_ICMP_HDR + ICMP_ECHO)));
    expect(decoded.value).toEqual({
      ihl: 5,
      tos: 0,
      totalLength: 32,
      identification: 0x1c46,
      dontFragment: true,
      moreFragments: false,
      fragmentOffset: 0,
      ttl: 64,
      protocol: 1,
      checksum: 0x0a95,
      src: "10.0.0.1",
      dst: "10.0.0.2",
      options: Buffer.alloc(0),
    });
    expect(toHex(decoded.rest)).toBe(toHex(h(ICMP_ECHO)));
    expect(internetChecksum(decoded.rest)).toBe(0);
  });

  it("verifies the Wikipedia example checksum", () => {
    const full = Buffer.concat([h(WIKIPEDIA_IPV4_HDR), Buffer.alloc(0x73 - 20)]);
    const decoded = ok(decodeIpv4(full));
    expect(decoded.value.checksum).toBe(0xb861);
    expect(decoded.value.protocol).toBe(17);
    expect(decoded.value.src).toBe("192.168.0.1");
    expect(decoded.value.dst).toBe("192.168.0.199");
  });

  it("respects IHL: options are exposed and the payload starts after them", () => {
    const decoded = ok(decodeIpv4(h(IPV4_OPTIONS_PKT)));
    expect(decoded.value.ihl).toBe(6);
    expect(toHex(decoded.value.options)).toBe("94040000");
    expect(decoded.value.ttl).toBe(1);
    expect(decoded.value.dst).toBe("224.0.0.22");
    expect(toHex(decoded.rest)).toBe("cafebabe");
  });

  it("trims Ethernet padding after the total length", () => {
    const decoded = ok(decodeIpv4(h(IPV4_ICMP_HDR + ICMP_ECHO + "00".repeat(14))));
    expect(toHex(decoded.rest)).toBe(toHex(h(ICMP_ECHO)));
  });

  it("reports a corrupted checksum field", () => {
    const pkt = h(IPV4_ICMP_HDR + ICMP_ECHO);
    pkt.writeUInt16BE(0x1234, 10);
    expect(err(decodeIpv4(pkt))).toBe("ipv4 header: checksum mismatch (got 0x1234, want 0x0a95)");
  });

  it("reports a corrupted header byte as a checksum mismatch", () => {
    const pkt = h(IPV4_ICMP_HDR + ICMP_ECHO);
    pkt.writeUInt8(63, 8); // TTL 64 -> 63 without fixing the checksum
    // The sum drops by 0x0100, so the wanted checksum rises by 0x0100.
    expect(err(decodeIpv4(pkt))).toBe("ipv4 header: checksum mismatch (got 0x0a95, want 0x0b95)");
  });

  it("reports a corrupted option byte as a checksum mismatch", () => {
    const pkt = h(IPV4_OPTIONS_PKT);
    pkt.writeUInt8(0x95, 20);
    expect(err(decodeIpv4(pkt))).toMatch(/^ipv4 header: checksum mismatch \(got 0x38b3, want 0x37b3\)$/);
  });

  it("rejects a wrong version and too small an IHL", () => {
    expect(err(decodeIpv4(h("6000 0000 0000 3aff" + "00".repeat(32))))).toBe("ipv4 header: version 6 (want 4)");
    expect(err(decodeIpv4(h("4400 0014 0000 0000 4001 0000 0a000001 0a000002")))).toBe("ipv4 header: IHL 4 too small (minimum 5)");
  });

  it("rejects a total length shorter than the header", () => {
    // total length 16; checksum made valid so the length check is what fails.
    const pkt = h("4500 0010 0000 0000 4001 0000 0a000001 0a000002");
    pkt.writeUInt16BE(internetChecksum(pkt), 10);
    expect(err(decodeIpv4(pkt))).toBe("ipv4 header: total length 16 shorter than header length 20");
  });

  it("rejects every truncation: header, options, and payload", () => {
    const plain = h(IPV4_ICMP_HDR + ICMP_ECHO);
    for (let n = 0; n < plain.length; n++) {
      const message = err(decodeIpv4(plain.subarray(0, n)));
      expect(message).toBe(n < 20 ? `ipv4 header: truncated (20 bytes needed, ${n} available)` : `ipv4 packet: truncated (32 bytes needed, ${n} available)`);
    }
    const withOptions = h(IPV4_OPTIONS_PKT);
    for (let n = 20; n < 24; n++) {
      expect(err(decodeIpv4(withOptions.subarray(0, n)))).toBe(`ipv4 header (IHL 6): truncated (24 bytes needed, ${n} available)`);
    }
  });

  it("encodes byte for byte, computing length and checksum", () => {
    const encoded = ok(encodeIpv4({ src: "10.0.0.1", dst: "10.0.0.2", protocol: 1, identification: 0x1c46, dontFragment: true }, h(ICMP_ECHO)));
    expect(toHex(encoded)).toBe(toHex(h(IPV4_ICMP_HDR + ICMP_ECHO)));

    const withOptions = ok(encodeIpv4({ src: "10.1.2.3", dst: "224.0.0.22", protocol: 17, ttl: 1, options: h("94040000") }, h("cafebabe")));
    expect(toHex(withOptions)).toBe(toHex(h(IPV4_OPTIONS_PKT)));
  });

  it("encodes fragment fields and TOS", () => {
    const pkt = ok(encodeIpv4({ src: "1.2.3.4", dst: "5.6.7.8", protocol: 6, tos: 0xb8, moreFragments: true, fragmentOffset: 0x1fff }, Buffer.alloc(0)));
    const decoded = ok(decodeIpv4(pkt)).value;
    expect(decoded).toMatchObject({ tos: 0xb8, moreFragments: true, dontFragment: false, fragmentOffset: 0x1fff });
    expect(toHex(pkt.subarray(6, 8))).toBe("3fff");
  });

  it("refuses invalid encode input", () => {
    const base = { src: "10.0.0.1", dst: "10.0.0.2", protocol: 1 };
    const none = Buffer.alloc(0);
    expect(err(encodeIpv4({ ...base, src: "10.0.0" }, none))).toBe("ipv4 header: source: invalid IPv4 address 10.0.0");
    expect(err(encodeIpv4({ ...base, dst: "10.0.0.01" }, none))).toMatch(/^ipv4 header: destination: invalid IPv4/);
    expect(err(encodeIpv4({ ...base, ttl: 256 }, none))).toBe("ipv4 header: TTL 256 out of range 0..255");
    expect(err(encodeIpv4({ ...base, protocol: -1 }, none))).toBe("ipv4 header: protocol -1 out of range 0..255");
    expect(err(encodeIpv4({ ...base, fragmentOffset: 0x2000 }, none))).toBe("ipv4 header: fragment offset 8192 out of range 0..8191");
    expect(err(encodeIpv4({ ...base, options: h("010101") }, none))).toBe("ipv4 header: options length 3 must be a multiple of 4 and at most 40");
    expect(err(encodeIpv4({ ...base, options: Buffer.alloc(44, 1) }, none))).toMatch(/options length 44/);
    expect(err(encodeIpv4(base, Buffer.alloc(65536 - 20)))).toBe("ipv4 packet: total length 65536 exceeds 65535");
  });
});

describe("vxlan datagram", () => {
  const arpRequestFrame = VXLAN_VNI_42 + ARP_REQUEST_ETH + ARP_REQUEST;
  const icmpFrame = VXLAN_VNI_42 + ICMP_ETH + IPV4_ICMP_HDR + ICMP_ECHO;
  const taggedFrame = "08 000000 ffffff 00" + TAGGED_ETH + IPV4_REPLY_HDR + ICMP_REPLY;

  it("decodes an ARP request", () => {
    const d = ok(decodeVxlanDatagram(h(arpRequestFrame)));
    expect(d.vni).toBe(42);
    expect(d.ethernet).toEqual({ dst: "ff:ff:ff:ff:ff:ff", src: "02:42:0a:00:00:01", ethertype: 0x0806 });
    expect(d.arp).toEqual({
      op: "request",
      senderMac: "02:42:0a:00:00:01",
      senderIp: "10.0.0.1",
      targetMac: "00:00:00:00:00:00",
      targetIp: "10.0.0.2",
    });
    expect(d.ipv4).toBeUndefined();
    expect(d.payload.length).toBe(0);
  });

  it("decodes an ARP reply at VNI 256", () => {
    const d = ok(decodeVxlanDatagram(h("08 000000 000100 00" + ARP_REPLY_ETH + ARP_REPLY)));
    expect(d.vni).toBe(256);
    expect(d.arp?.op).toBe("reply");
    expect(d.arp?.senderMac).toBe("de:ad:be:ef:00:02");
    expect(d.arp?.senderIp).toBe("10.0.0.2");
  });

  it("decodes an IPv4/ICMP echo request", () => {
    const d = ok(decodeVxlanDatagram(h(icmpFrame)));
    expect(d.vni).toBe(42);
    expect(d.ethernet.ethertype).toBe(0x0800);
    expect(d.arp).toBeUndefined();
    expect(d.ipv4).toMatchObject({ src: "10.0.0.1", dst: "10.0.0.2", protocol: 1, ttl: 64, checksum: 0x0a95 });
    expect(toHex(d.payload)).toBe(toHex(h(ICMP_ECHO)));
    expect(d.payload.readUInt8(0)).toBe(8); // echo request
  });

  it("decodes a VLAN-tagged ICMP echo reply at VNI 0xFFFFFF", () => {
    const d = ok(decodeVxlanDatagram(h(taggedFrame)));
    expect(d.vni).toBe(0xffffff);
    expect(d.ethernet.vlan).toEqual({ id: 100, priority: 5, dei: false });
    expect(d.ipv4).toMatchObject({ src: "10.0.0.2", dst: "10.0.0.1", identification: 0xabcd, checksum: 0xbb0d });
    expect(toHex(d.payload)).toBe(toHex(h(ICMP_REPLY)));
  });

  it("recognises IPv6 by ethertype and returns the packet raw, at VNI 0", () => {
    const d = ok(decodeVxlanDatagram(h("08 000000 000000 00" + IPV6_ETH + IPV6_HDR)));
    expect(d.vni).toBe(0);
    expect(d.ethernet.ethertype).toBe(0x86dd);
    expect(d.arp).toBeUndefined();
    expect(d.ipv4).toBeUndefined();
    expect(toHex(d.payload)).toBe(toHex(h(IPV6_HDR)));
  });

  it("accepts a plain Uint8Array that is a view into a larger buffer", () => {
    const backing = new Uint8Array(h("ffff" + icmpFrame + "ffff"));
    const view = backing.subarray(2, backing.length - 2);
    expect(ok(decodeVxlanDatagram(view)).ipv4?.src).toBe("10.0.0.1");
  });

  it("reports a corrupted inner IPv4 checksum", () => {
    const frame = h(icmpFrame);
    frame.writeUInt16BE(0xabcd, 8 + 14 + 10);
    expect(err(decodeVxlanDatagram(frame))).toBe("ipv4 header: checksum mismatch (got 0xabcd, want 0x0a95)");
  });

  it("reports a clear I flag and a malformed ARP body", () => {
    const frame = h(arpRequestFrame);
    frame.writeUInt8(0, 0);
    expect(err(decodeVxlanDatagram(frame))).toBe("vxlan header: I flag not set (flags 0x00)");
    const badArp = h(arpRequestFrame);
    badArp.writeUInt16BE(3, 8 + 14 + 6);
    expect(err(decodeVxlanDatagram(badArp))).toMatch(/^arp: unsupported op 3/);
  });

  it.each([
    ["ARP", VXLAN_VNI_42 + ARP_REQUEST_ETH + ARP_REQUEST, 8 + 14, "arp"],
    ["IPv4", VXLAN_VNI_42 + ICMP_ETH + IPV4_ICMP_HDR + ICMP_ECHO, 8 + 14, "ipv4"],
    ["tagged IPv4", "08 000000 ffffff 00" + TAGGED_ETH + IPV4_REPLY_HDR + ICMP_REPLY, 8 + 18, "ipv4"],
  ])("fails, never throws, on every truncation of the %s frame", (_name, hexFrame, innerStart, innerLayer) => {
    const frame = h(hexFrame);
    for (let n = 0; n < frame.length; n++) {
      let result: Result<VxlanDatagram> | undefined;
      expect(() => {
        result = decodeVxlanDatagram(frame.subarray(0, n));
      }).not.toThrow();
      const message = err(result as Result<VxlanDatagram>);
      const layer = n < 8 ? "vxlan header" : n < innerStart ? "ethernet header" : innerLayer;
      expect(message.startsWith(layer), `n=${n}: ${message}`).toBe(true);
      expect(message).toMatch(/truncated \(\d+ bytes needed, \d+ available\)$/);
    }
    expect(ok(decodeVxlanDatagram(frame)).vni).toBeGreaterThanOrEqual(0);
  });

  it("never throws on random garbage", () => {
    // Small deterministic PRNG (mulberry32) so failures are reproducible.
    let seed = 0x5eed;
    const rand = (): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const templates = [h(arpRequestFrame), h(icmpFrame), h(taggedFrame)];
    for (let i = 0; i < 2000; i++) {
      const template = templates[i % templates.length] ?? Buffer.alloc(0);
      const buf = Buffer.from(template.subarray(0, Math.floor(rand() * (template.length + 8))));
      // Flip a few bytes, keeping the I flag set half the time so decoding goes deeper.
      for (let k = 0; k < 3; k++) buf[Math.floor(rand() * buf.length)] = Math.floor(rand() * 256);
      if (buf.length > 0 && i % 2 === 0) buf[0] = 0x08;
      expect(() => decodeVxlanDatagram(buf)).not.toThrow();
    }
  });

  it("encodes hand-built frames byte for byte", () => {
    const arp = ok(
      encodeVxlanDatagram({
        vni: 42,
        ethernet: { dst: "ff:ff:ff:ff:ff:ff", src: "02:42:0a:00:00:01" },
        arp: {
          op: "request",
          senderMac: "02:42:0a:00:00:01",
          senderIp: "10.0.0.1",
          targetMac: "00:00:00:00:00:00",
          targetIp: "10.0.0.2",
        },
      }),
    );
    expect(toHex(arp)).toBe(toHex(h(arpRequestFrame)));

    const tagged = ok(
      encodeVxlanDatagram({
        vni: 0xffffff,
        ethernet: { dst: "02:42:0a:00:00:01", src: "de:ad:be:ef:00:02", vlan: { id: 100, priority: 5 } },
        ipv4: { src: "10.0.0.2", dst: "10.0.0.1", protocol: 1, identification: 0xabcd },
        payload: h(ICMP_REPLY),
      }),
    );
    expect(toHex(tagged)).toBe(toHex(h(taggedFrame)));
  });

  it.each([
    ["ARP request", VXLAN_VNI_42 + ARP_REQUEST_ETH + ARP_REQUEST],
    ["ARP reply with padding", "08 000000 000100 00" + ARP_REPLY_ETH + ARP_REPLY + "00".repeat(18)],
    ["ICMP echo", VXLAN_VNI_42 + ICMP_ETH + IPV4_ICMP_HDR + ICMP_ECHO],
    ["tagged ICMP echo reply", "08 000000 ffffff 00" + TAGGED_ETH + IPV4_REPLY_HDR + ICMP_REPLY],
    ["IPv4 with options", "08 000000 000000 00" + ICMP_ETH + IPV4_OPTIONS_PKT],
    ["IPv6", "08 000000 000000 00" + IPV6_ETH + IPV6_HDR],
  ])("round trips decode -> encode for the %s frame", (_name, hexFrame) => {
    const frame = h(hexFrame);
    const decoded = ok(decodeVxlanDatagram(frame));
    expect(toHex(ok(encodeVxlanDatagram(decoded)))).toBe(toHex(frame));
  });

  it.each([0, 1, 255, 256, 0x123456, 0xfffffe, 0xffffff])("round trips encode -> decode at VNI %i", (vni) => {
    const input = {
      vni,
      ethernet: { dst: "aa:bb:cc:dd:ee:ff", src: "02:00:00:00:00:01", vlan: { id: vni % 4095, priority: vni % 8 } },
      ipv4: { src: "192.168.1.1", dst: "192.168.1.2", protocol: 17, ttl: 3, options: h("01010100") },
      payload: h("0035 0035 0008 0000"),
    };
    const d = ok(decodeVxlanDatagram(ok(encodeVxlanDatagram(input))));
    expect(d.vni).toBe(vni);
    expect(d.ethernet).toEqual({
      dst: "aa:bb:cc:dd:ee:ff",
      src: "02:00:00:00:00:01",
      ethertype: 0x0800,
      vlan: { id: vni % 4095, priority: vni % 8, dei: false },
    });
    expect(d.ipv4).toMatchObject({ src: "192.168.1.1", dst: "192.168.1.2", protocol: 17, ttl: 3, ihl: 6, totalLength: 32 });
    expect(toHex(d.ipv4?.options ?? Buffer.alloc(0))).toBe("01010100");
    expect(toHex(d.payload)).toBe("0035003500080000");
  });

  it("round trips encode -> decode for ARP and a raw ethertype", () => {
    const arp: ArpPacket = {
      op: "reply",
      senderMac: "0a:0b:0c:0d:0e:0f",
      senderIp: "172.16.0.9",
      targetMac: "01:02:03:04:05:06",
      targetIp: "172.16.0.1",
    };
    const d = ok(decodeVxlanDatagram(ok(encodeVxlanDatagram({ vni: 7, ethernet: { dst: "01:02:03:04:05:06", src: "0a:0b:0c:0d:0e:0f" }, arp }))));
    expect(d.arp).toEqual(arp);
    expect(d.ethernet.ethertype).toBe(0x0806);

    const raw = ok(
      decodeVxlanDatagram(
        ok(
          encodeVxlanDatagram({
            vni: 9,
            ethernet: { dst: "01:02:03:04:05:06", src: "0a:0b:0c:0d:0e:0f", ethertype: 0x88cc },
            payload: h("0102030405"),
          }),
        ),
      ),
    );
    expect(raw.ethernet.ethertype).toBe(0x88cc);
    expect(toHex(raw.payload)).toBe("0102030405");
  });

  it("refuses inconsistent or invalid input", () => {
    const ethernet = { dst: "01:02:03:04:05:06", src: "0a:0b:0c:0d:0e:0f" };
    const arp: ArpPacket = {
      op: "request",
      senderMac: "0a:0b:0c:0d:0e:0f",
      senderIp: "10.0.0.1",
      targetMac: "00:00:00:00:00:00",
      targetIp: "10.0.0.2",
    };
    const ipv4 = { src: "10.0.0.1", dst: "10.0.0.2", protocol: 1 };
    expect(err(encodeVxlanDatagram({ vni: 1, ethernet, arp, ipv4 }))).toBe("vxlan datagram: both arp and ipv4 given (want at most one)");
    expect(err(encodeVxlanDatagram({ vni: 1, ethernet }))).toBe("vxlan datagram: ethernet.ethertype required when neither arp nor ipv4 is given");
    expect(err(encodeVxlanDatagram({ vni: 1, ethernet: { ...ethernet, ethertype: 0x0800 }, arp }))).toBe(
      "vxlan datagram: ethernet.ethertype 0x0800 contradicts the arp body (0x0806)",
    );
    expect(err(encodeVxlanDatagram({ vni: 1 << 24, ethernet, arp }))).toBe("vxlan header: VNI 16777216 out of range 0..16777215");
    expect(err(encodeVxlanDatagram({ vni: 1, ethernet: { ...ethernet, src: "nope" }, ipv4 }))).toMatch(/^ethernet header: source: invalid MAC address "nope"/);
    expect(err(encodeVxlanDatagram({ vni: 1, ethernet, ipv4: { ...ipv4, dst: "10.0.0.300" } }))).toMatch(/^ipv4 header: destination: invalid IPv4 address/);
    expect(err(encodeVxlanDatagram({ vni: 1, ethernet, arp: { ...arp, targetIp: "x" } }))).toMatch(/^arp: target IP/);
  });
});
