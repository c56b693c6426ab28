/**
 * What Docker's calls cost in iptables processes, on the real kernel adapters
 * (datapath, egress, the published ports' rules, their keeper) under the real
 * domain (plugin/compose/assemble.ts, as the plugin assembles it), over an
 * in-memory cluster store. A `tsk-*` namespace plays the host (a veth
 * underlay with the VTEP address); the datapath keeps its network namespaces
 * under a temp dir. Counted by the iptables owner, as the metric
 * `tsoverlay_iptables_runs_total` counts them: a container's start costs one
 * iptables process when it publishes ports (hybrid mode), none otherwise; a
 * fresh host's first network does its setup once.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KernelDatapath } from "../../driver/kernel/datapath/kernel-datapath.js";
import { EgressGateway } from "../../driver/kernel/egress/egress-gateway.js";
import { egressPortOf } from "../../driver/kernel/egress/egress-port.js";
import { Iptables } from "../../driver/kernel/iptables.js";
import { deleteNamedNetns } from "../../driver/kernel/netns.js";
import { DNAT_CHAIN } from "../../driver/kernel/port-dnat.js";
import { GATEWAY_INPUT_CHAIN } from "../../driver/kernel/gateway-input.js";
import { KernelPortRules } from "../../driver/kernel/port-rules.js";
import { RuleKeeper } from "../../driver/kernel/rule-keeper.js";
import { PortPublisher } from "../../driver/publish/port-publisher.js";
import { createLogger } from "../../lib/log.js";
import { assembleDomain, type AssembledDomain } from "../../plugin/compose/assemble.js";
import { ProxyManager } from "../../proxy/index.js";
import { MemoryStore } from "../support/memory-store.js";
import { value } from "../support/store-helpers.js";
import { createNetworkOn } from "../support/docker-calls.js";
import { inNs, Scratch } from "./support/scratch.js";
import { costOf as costOfRuns, NONE, ONE_RESTORE, type Runs } from "./support/iptables-runs.js";

const log = createLogger(process.env.TSOVERLAY_LOG_LEVEL ?? "silent");
const VTEP = "192.0.2.1";
const SUBNET = "10.88.0.0/24";

const scratch = new Scratch("tsk-startup-");
let host: string;
let runDir: string;
let iptables: Iptables;
let keeper: RuleKeeper;
let datapath: KernelDatapath;
let gateway: EgressGateway;
let proxies: ProxyManager;
let d: AssembledDomain;
let poolId: string;
/** What setting the host up cost (before any network). */
let setup: Runs;

const costOf = (work: () => Promise<unknown>): Promise<Runs> => costOfRuns(iptables, work);
const total = (c: Runs): number => c.iptables + c["iptables-restore"] + c["iptables-save"];

const ipt = (table: string, chain: string): string[] => inNs(host, "iptables", "-w", "5", "-t", table, "-S", chain).trim().split("\n");

/** Docker's calls for `docker run [-p 80] --network n`: RequestAddress, CreateEndpoint, Join, ProgramExternalConnectivity. */
async function containerStart(endpointId: string, ports: number[] = []): Promise<string> {
  const ip = value(await d.ipam.requestAddress({ poolId, address: "" }));
  value(await d.driver.createEndpoint({ networkId: "n", endpointId, addressCidr: ip.address, mac: "" }));
  value(await d.driver.join("n", endpointId, `sandbox-${endpointId}`));
  const published = value(
    await d.driver.programExternalConnectivity(
      "n",
      endpointId,
      ports.map((containerPort) => ({ proto: "tcp" as const, hostIp: "", hostPort: 0, hostPortEnd: 0, containerPort })),
    ),
  );
  return published.map((p) => String(p.hostPort)).join(",");
}

/** Docker's calls for `docker rm -f`: RevokeExternalConnectivity, Leave, DeleteEndpoint, ReleaseAddress. */
async function containerStop(endpointId: string, ip: string): Promise<void> {
  value(await d.driver.revokeExternalConnectivity("n", endpointId));
  value(await d.driver.leave("n", endpointId));
  value(await d.driver.deleteEndpoint("n", endpointId));
  value(await d.ipam.releaseAddress(poolId, ip));
}

beforeAll(async () => {
  expect(process.getuid?.()).toBe(0);
  const tmp = scratch.init();
  host = scratch.newNs("su-host");
  runDir = path.join(tmp, "run");
  inNs(host, "ip", "link", "set", "lo", "up");
  // The underlay: a veth pair inside the host (no other host here).
  inNs(host, "ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul1");
  inNs(host, "ip", "addr", "add", `${VTEP}/24`, "dev", "ul0");
  inNs(host, "ip", "link", "set", "ul0", "up");
  inNs(host, "ip", "link", "set", "ul1", "up");

  // As plugin/compose/host.ts does: one owner, the parts with chains, the keeper before the domain.
  iptables = new Iptables({ netnsPath: host });
  datapath = new KernelDatapath({ runDir, vtepAddr: VTEP, hostNetnsPath: host, log });
  gateway = new EgressGateway({ iptables, hostNetnsPath: host, log });
  const rules = new KernelPortRules({ iptables, gatewayBridge: gateway.bridgeName, fastPath: true, netnsPath: host, log });
  keeper = new RuleKeeper({ iptables, parts: [gateway.rules, rules], log });
  proxies = new ProxyManager();
  const publisher = new PortPublisher(proxies, log, { mode: "hybrid", rules });
  setup = await costOf(async () => {
    await keeper.start();
    d = await assembleDomain(
      { cluster: new MemoryStore(), local: new MemoryStore(), datapath, egress: egressPortOf(gateway, runDir), publisher },
      {
        hostId: VTEP,
        vtep: VTEP,
        underlayMtu: 1500,
        ipam: { hostId: VTEP, poolRange: "10.88.0.0/16", poolSize: 24, vniRange: { min: 6000, max: 6100 } },
        storeRetryMs: 300,
        reconcileMs: 60_000,
        gcIntervalMs: 3_600_000,
        gcGraceMs: 600_000,
        teardownWaitMs: 50,
        propagate: false,
        driverNames: ["tsoverlay"],
        ownRecordGraceMs: 0,
      },
      log,
    );
    await d.start();
    await publisher.pruneFastPath();
  });
  await d.hosts.started();
});

afterAll(async () => {
  await keeper?.stop();
  await d?.stop();
  await proxies?.closeAll();
  await datapath?.close();
  await gateway?.close();
  const dir = path.join(runDir ?? "", "netns");
  for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : []) deleteNamedNetns(path.join(dir, f));
  scratch.closeSockets();
  scratch.deleteNamespaces();
  scratch.removeDir();
});

describe("iptables processes per Docker call (hybrid mode)", () => {
  it("a fresh host sets its chains up once at start: one iptables-save, one iptables-restore", () => {
    expect(setup).toEqual({ ...NONE, "iptables-save": 1, "iptables-restore": 1 });
    expect(ipt("nat", DNAT_CHAIN)).toEqual([`-N ${DNAT_CHAIN}`]);
    expect(ipt("filter", GATEWAY_INPUT_CHAIN).at(-1)).toBe(`-A ${GATEWAY_INPUT_CHAIN} -j REJECT --reject-with icmp-port-unreachable`);
  });

  it("its first network costs one iptables-restore (its NAT), at creation; its first container none", async () => {
    const created = await costOf(async () => {
      poolId = await createNetworkOn(d, "n", SUBNET);
    });
    expect(created).toEqual(ONE_RESTORE);
    expect(await costOf(() => containerStart("first000000000"))).toEqual(NONE);
    // The network's namespace, uplink and NAT are there.
    expect(ipt("nat", "TSOVERLAY-POSTROUTING")).toContain(`-A TSOVERLAY-POSTROUTING -s ${SUBNET} ! -o tsogw0 -j MASQUERADE`);
    expect(inNs(host, "ip", "-br", "link", "show", "tsofirst0000")).toContain("tsofirst0000");
  });

  it("a container without published ports starts and stops without any iptables process", async () => {
    const start = await costOf(() => containerStart("plain00000000"));
    expect(start).toEqual(NONE);
    const ip = (await d.localEndpoints()).find((e) => e.endpointId === "plain00000000")!.addressCidr.split("/")[0]!;
    expect(await costOf(() => containerStop("plain00000000", ip))).toEqual(NONE);
  });

  it("a container with a published TCP port: one iptables-restore to start (DNAT and gate together), one to stop", async () => {
    let hostPort = "";
    const start = await costOf(async () => {
      hostPort = await containerStart("web0000000000", [80]);
    });
    expect(start).toEqual(ONE_RESTORE);
    const ip = (await d.localEndpoints()).find((e) => e.endpointId === "web0000000000")!.addressCidr.split("/")[0]!;
    expect(ipt("nat", DNAT_CHAIN)).toEqual([
      `-N ${DNAT_CHAIN}`,
      `-A ${DNAT_CHAIN} ! -i tsogw0 -p tcp -m tcp --dport ${hostPort} -j DNAT --to-destination ${ip}:80`,
    ]);
    expect(ipt("filter", GATEWAY_INPUT_CHAIN)).toContain(`-A ${GATEWAY_INPUT_CHAIN} -p tcp -m tcp --dport ${hostPort} -j ACCEPT`);

    const stop = await costOf(() => containerStop("web0000000000", ip));
    expect(total(stop)).toBeLessThanOrEqual(1);
    expect(stop).toEqual(ONE_RESTORE);
    expect(ipt("nat", DNAT_CHAIN)).toEqual([`-N ${DNAT_CHAIN}`]);
    expect(ipt("filter", GATEWAY_INPUT_CHAIN).join("\n")).not.toContain(`--dport ${hostPort} `);
  });

  it("the network's last container leaves, the next is again its first: still no iptables process; removing the network, one", async () => {
    const first = (await d.localEndpoints()).find((e) => e.endpointId === "first000000000")!;
    expect(await costOf(() => containerStop("first000000000", first.addressCidr.split("/")[0]!))).toEqual(NONE);
    expect(await d.localEndpoints()).toEqual([]);
    expect(await costOf(() => containerStart("again00000000"))).toEqual(NONE);
    const again = (await d.localEndpoints())[0]!;
    await containerStop("again00000000", again.addressCidr.split("/")[0]!);
    expect(await costOf(async () => value(await d.driver.deleteNetwork("n")))).toEqual(ONE_RESTORE);
    expect(ipt("nat", "TSOVERLAY-POSTROUTING")).toEqual(["-N TSOVERLAY-POSTROUTING"]);
  });
});
