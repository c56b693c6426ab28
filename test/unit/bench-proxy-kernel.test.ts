import { describe, expect, it } from "vitest";
import { KERNEL_CHAIN, loopbackDnatRestore } from "../bench/proxy-kernel.js";

describe("the proxy bench's kernel path (Docker's --userland-proxy=false on loopback)", () => {
  const text = loopbackDnatRestore([
    { proto: "tcp", hostPort: 6202, backendPort: 7000 },
    { proto: "udp", hostPort: 6202, backendPort: 7000 },
  ]);
  const lines = text.split("\n");
  const section = (table: string): string[] => lines.slice(lines.indexOf(`*${table}`) + 1, lines.indexOf("COMMIT", lines.indexOf(`*${table}`)));

  it("DNATs each loopback port in nat OUTPUT, loopback destinations included", () => {
    const nat = section("nat");
    expect(nat).toContain(`-A OUTPUT -m addrtype --dst-type LOCAL -j ${KERNEL_CHAIN}`);
    expect(nat.filter((l) => l.startsWith("-A OUTPUT")).some((l) => l.includes("127.0.0.0/8"))).toBe(false);
    expect(nat).toContain(`-A ${KERNEL_CHAIN} -d 127.0.0.1/32 -p tcp -m tcp --dport 6202 -j DNAT --to-destination 127.0.0.1:7000`);
    expect(nat).toContain(`-A ${KERNEL_CHAIN} -d 127.0.0.1/32 -p udp -m udp --dport 6202 -j DNAT --to-destination 127.0.0.1:7000`);
  });

  it("keeps Docker's guard: 127.0.0.0/8 from anything but lo is dropped before NAT sees it", () => {
    expect(section("raw")).toEqual([":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", "-A PREROUTING -d 127.0.0.0/8 ! -i lo -j DROP"]);
    expect(lines.indexOf("*raw")).toBeGreaterThanOrEqual(0);
    expect(text.endsWith("COMMIT\n")).toBe(true);
  });
});
