/**
 * The frames of driver/kernel/datapath/peer-announce.ts, byte by byte (the
 * kernel test shows a container's kernel accepting them; this one names the
 * field that is wrong when it would not).
 */
import { describe, expect, it } from "vitest";
import { announcementOf } from "../../driver/kernel/datapath/peer-announce.js";
import { decodeArp, decodeEthernetHeader, internetChecksum } from "../../driver/kernel/vxlan-codec.js";
import { ipFromBytes } from "../../lib/net.js";

describe("peer announcement frames", () => {
  it("IPv4: a broadcast gratuitous ARP in reply form, from the peer's MAC, sender = target = the peer", () => {
    const f = announcementOf({ ip: "10.78.0.50", mac: "02:42:0a:4e:00:32" });
    expect(f.ethertype).toBe(0x0806);
    const eth = decodeEthernetHeader(f.bytes);
    if (!eth.ok) throw new Error(eth.error);
    expect(eth.value.value).toEqual({ dst: "ff:ff:ff:ff:ff:ff", src: "02:42:0a:4e:00:32", ethertype: 0x0806 });
    const arp = decodeArp(eth.value.rest);
    if (!arp.ok) throw new Error(arp.error);
    expect(arp.value.value).toEqual({
      op: "reply",
      senderMac: "02:42:0a:4e:00:32",
      senderIp: "10.78.0.50",
      targetMac: "02:42:0a:4e:00:32",
      targetIp: "10.78.0.50",
    });
  });

  it("IPv6: an unsolicited neighbor advertisement to all nodes, hop limit 255, Override only, target link-layer option, correct checksum", () => {
    const f = announcementOf({ ip: "fd78::50", mac: "02:42:0a:4e:00:50" });
    expect(f.ethertype).toBe(0x86dd);
    const eth = decodeEthernetHeader(f.bytes);
    if (!eth.ok) throw new Error(eth.error);
    expect(eth.value.value).toEqual({ dst: "33:33:00:00:00:01", src: "02:42:0a:4e:00:50", ethertype: 0x86dd });
    const ip6 = eth.value.rest;
    expect(ip6.length).toBe(40 + 32);
    expect(ip6[0]! >> 4).toBe(6);
    expect(ip6.readUInt16BE(4)).toBe(32); // payload length
    expect(ip6[6]).toBe(58); // ICMPv6
    expect(ip6[7]).toBe(255); // hop limit, or the receiver drops it
    expect(ipFromBytes(ip6.subarray(8, 24))).toBe("fd78::50");
    expect(ipFromBytes(ip6.subarray(24, 40))).toBe("ff02::1");
    const na = ip6.subarray(40);
    expect([na[0], na[1]]).toEqual([136, 0]);
    expect(na.readUInt32BE(4)).toBe(0x20000000); // O set; R and S clear
    expect(ipFromBytes(na.subarray(8, 24))).toBe("fd78::50");
    expect([...na.subarray(24, 32)]).toEqual([2, 1, 0x02, 0x42, 0x0a, 0x4e, 0x00, 0x50]);
    // Over the pseudo-header and the message, a correct checksum sums to zero.
    const pseudo = Buffer.alloc(40);
    ip6.copy(pseudo, 0, 8, 40);
    pseudo.writeUInt32BE(32, 32);
    pseudo[39] = 58;
    expect(internetChecksum(Buffer.concat([pseudo, na]))).toBe(0);
    expect(na.readUInt16BE(2)).not.toBe(0);
  });
});
