/**
 * The name service's guard (TSOVERLAY-INPUT) in a scratch namespace: the
 * rules for Docker bridges with names of their own come and go, before the
 * DROPs, and the fixed rules stay.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allowDockerBridges, DNS_GUARD_CHAIN, ensureDnsGuard } from "../../driver/kernel/dns-guard.js";
import { Iptables } from "../../driver/kernel/iptables.js";
import { Scratch } from "./support/scratch.js";

const scratch = new Scratch("tsk-dnsguard-");
let ipt: Iptables;

beforeAll(() => {
  scratch.init();
  ipt = new Iptables({ netnsPath: scratch.newNs("dnsguard") });
});

afterAll(() => {
  scratch.deleteNamespaces();
  scratch.removeDir();
});

/** The chain's rules as `<iface|*> <proto> <target>`, in order. */
async function rules(): Promise<string[]> {
  return ((await ipt.listRules("filter", DNS_GUARD_CHAIN)) ?? []).map((l) => {
    const iface = /-i (\S+)/.exec(l)?.[1] ?? "*";
    return `${iface} ${/-p (\S+)/.exec(l)?.[1]} ${/-j (\S+)$/.exec(l)?.[1]}`;
  });
}

describe("the name service's guard", () => {
  it("lets named Docker bridges ask, before the DROPs; a bridge no longer named loses its rule; the fixed rules stay", async () => {
    await ensureDnsGuard(ipt, "100.72.0.1", 53, "tso-gw0");
    const fixed = await rules();
    expect(fixed.slice(-2)).toEqual(["* udp DROP", "* tcp DROP"]);

    // docker0, br-… and the gateway bridge are the fixed rules' already; a name iptables would not take is skipped.
    await allowDockerBridges(ipt, 53, "tso-gw0", ["lab0", "docker0", "br-0123456789ab", "tso-gw0", "bad name;"]);
    const withLab = await rules();
    expect(withLab.filter((r) => r.startsWith("lab0 ")).sort()).toEqual(["lab0 tcp ACCEPT", "lab0 udp ACCEPT"]);
    expect(withLab.length).toBe(fixed.length + 2);
    expect(Math.max(withLab.indexOf("lab0 tcp ACCEPT"), withLab.indexOf("lab0 udp ACCEPT"))).toBeLessThan(withLab.indexOf("* udp DROP"));

    // Idempotent; then lab0's network goes and another comes (also a rule left from before a restart goes).
    await allowDockerBridges(ipt, 53, "tso-gw0", ["lab0"]);
    expect((await rules()).length).toBe(fixed.length + 2);
    await allowDockerBridges(ipt, 53, "tso-gw0", ["edge1"]);
    const after = await rules();
    expect(after.some((r) => r.startsWith("lab0 "))).toBe(false);
    expect(after.filter((r) => r.startsWith("edge1 ")).sort()).toEqual(["edge1 tcp ACCEPT", "edge1 udp ACCEPT"]);
    await allowDockerBridges(ipt, 53, "tso-gw0", []);
    expect(await rules()).toEqual(fixed);
  });
});
