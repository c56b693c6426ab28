import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { encodeV1, encodeV2, PROXY_V2_SIGNATURE, unmapIPv4 } from "../../proxy/proxy-header.js";
import { ProxyManager } from "../../proxy/proxy-manager.js";

// A tiny PROXY protocol receiver, written from haproxy's proxy-protocol.txt, independent of the encoder.

interface Parsed {
  version: 1 | 2;
  proto: string; // "TCP4" | "TCP6" | "UNKNOWN"
  srcIp?: string;
  dstIp?: string;
  srcPort?: number;
  dstPort?: number;
  headerLength: number;
}

function parseHeader(buf: Buffer): Parsed | "incomplete" {
  if (buf.length >= 16 && buf.subarray(0, 12).equals(Buffer.from("\r\n\r\n\0\r\nQUIT\n", "latin1"))) {
    const verCmd = buf[12]!;
    const famProto = buf[13]!;
    const len = buf.readUInt16BE(14);
    if (buf.length < 16 + len) return "incomplete";
    if (verCmd >> 4 !== 2) throw new Error(`bad version ${verCmd >> 4}`);
    if ((verCmd & 0xf) !== 1) throw new Error("not a PROXY command");
    const body = buf.subarray(16, 16 + len);
    if (famProto === 0x11) {
      const ip = (o: number): string => [...body.subarray(o, o + 4)].join(".");
      return { version: 2, proto: "TCP4", srcIp: ip(0), dstIp: ip(4), srcPort: body.readUInt16BE(8), dstPort: body.readUInt16BE(10), headerLength: 16 + len };
    }
    if (famProto === 0x21) {
      const ip = (o: number): string => {
        const groups: string[] = [];
        for (let i = 0; i < 16; i += 2) groups.push(body.readUInt16BE(o + i).toString(16));
        return new net.SocketAddress({ address: groups.join(":"), family: "ipv6" }).address;
      };
      return { version: 2, proto: "TCP6", srcIp: ip(0), dstIp: ip(16), srcPort: body.readUInt16BE(32), dstPort: body.readUInt16BE(34), headerLength: 16 + len };
    }
    if (famProto === 0x00) return { version: 2, proto: "UNKNOWN", headerLength: 16 + len };
    throw new Error(`unexpected family/transport 0x${famProto.toString(16)}`);
  }
  if (buf.length >= 6 && buf.subarray(0, 6).toString("latin1") === "PROXY ") {
    const end = buf.indexOf("\r\n");
    if (end < 0) {
      if (buf.length >= 107) throw new Error("v1 header too long");
      return "incomplete";
    }
    const line = buf.subarray(0, end).toString("latin1");
    expect(end + 2).toBeLessThanOrEqual(107);
    const parts = line.split(" ");
    if (parts[1] === "UNKNOWN") return { version: 1, proto: "UNKNOWN", headerLength: end + 2 };
    expect(parts).toHaveLength(6);
    const [, proto, srcIp, dstIp, sp, dp] = parts as [string, string, string, string, string, string];
    expect(net.isIP(srcIp)).toBe(proto === "TCP4" ? 4 : 6);
    expect(net.isIP(dstIp)).toBe(proto === "TCP4" ? 4 : 6);
    return { version: 1, proto, srcIp, dstIp, srcPort: Number(sp), dstPort: Number(dp), headerLength: end + 2 };
  }
  if (buf.length < 16) return "incomplete";
  throw new Error("no PROXY header");
}

const managers: ProxyManager[] = [];
const servers: net.Server[] = [];
afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.closeAll()));
  for (const s of servers.splice(0)) s.close();
});

/** A backend that parses the header, then echoes the payload that follows it. */
function headerBackend(): Promise<{ port: number; header: Promise<Parsed> }> {
  let resolveHeader!: (p: Parsed) => void;
  const header = new Promise<Parsed>((r) => (resolveHeader = r));
  const server = net.createServer((s) => {
    let buf = Buffer.alloc(0);
    let parsed: Parsed | undefined;
    s.on("data", (d: Buffer) => {
      if (parsed) return void s.write(d);
      buf = Buffer.concat([buf, d]);
      const r = parseHeader(buf);
      if (r === "incomplete") return;
      parsed = r;
      resolveHeader(r);
      s.write(buf.subarray(r.headerLength));
    });
    s.on("end", () => s.end());
  });
  servers.push(server);
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ port: (server.address() as net.AddressInfo).port, header })));
}

describe.each([
  ["v1", "127.0.0.1", "TCP4"],
  ["v1", "::1", "TCP6"],
  ["v2", "127.0.0.1", "TCP4"],
  ["v2", "::1", "TCP6"],
] as const)("PROXY %s header, client on %s", (version, host, proto) => {
  it("reaches the backend first, carrying the client's address and port", async () => {
    const backend = await headerBackend();
    const m = new ProxyManager();
    managers.push(m);
    const r = await m.add({ proto: "tcp", hostIp: host, hostPort: 0, backendIp: "127.0.0.1", backendPort: backend.port, proxyProtocol: version });
    if (!r.ok) throw new Error(r.error);
    const port = r.value.binding.hostPort;
    const c = net.connect({ host, port });
    await new Promise((res) => c.once("connect", res));
    const reply = new Promise<string>((res) => {
      let s = "";
      c.on("data", (d: Buffer) => (s += d.toString()));
      c.on("end", () => res(s));
    });
    c.end("payload after the header");
    const h = await backend.header;
    expect(h).toMatchObject({ version: version === "v1" ? 1 : 2, proto, srcIp: host, dstIp: host, srcPort: c.localPort, dstPort: port });
    expect(await reply).toBe("payload after the header");
    // the header is not payload
    expect(m.list()[0]!.counters.bytesIn).toBe("payload after the header".length);
  });
});

describe("PROXY header encoding (golden vectors)", () => {
  const v4 = { family: 4 as const, srcIp: "192.168.0.1", srcPort: 56324, dstIp: "192.168.0.11", dstPort: 443 };
  const v6 = { family: 6 as const, srcIp: "2001:db8::1", srcPort: 56324, dstIp: "2001:db8::2", dstPort: 443 };

  it("v1", () => {
    expect(encodeV1(v4).toString("latin1")).toBe("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
    expect(encodeV1(v6).toString("latin1")).toBe("PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n");
    expect(encodeV1(undefined).toString("latin1")).toBe("PROXY UNKNOWN\r\n");
    const longest = encodeV1({
      family: 6,
      srcIp: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
      srcPort: 65535,
      dstIp: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
      dstPort: 65535,
    });
    expect(longest.length).toBe(104);
  });

  it("v2", () => {
    expect(PROXY_V2_SIGNATURE.toString("latin1")).toBe("\r\n\r\n\0\r\nQUIT\n");
    expect(encodeV2(v4).toString("hex")).toBe("0d0a0d0a000d0a515549540a" + "21" + "11" + "000c" + "c0a80001" + "c0a8000b" + "dc04" + "01bb");
    expect(encodeV2(v6).toString("hex")).toBe(
      "0d0a0d0a000d0a515549540a" + "21" + "21" + "0024" + "20010db8000000000000000000000001" + "20010db8000000000000000000000002" + "dc04" + "01bb",
    );
    expect(encodeV2(undefined).toString("hex")).toBe("0d0a0d0a000d0a515549540a" + "21" + "00" + "0000");
  });

  it("unmaps v4-mapped addresses", () => {
    expect(unmapIPv4("::ffff:10.0.0.1")).toBe("10.0.0.1");
    expect(unmapIPv4("::1")).toBe("::1");
  });
});
