/**
 * `tsoverlay support-bundle` against the real HTTP edge and the real
 * collection (store records, kernel tables through a fake command runner, the
 * log ring), with an ACL token and a WireGuard private key planted in every
 * part: the archive holds every part as its own file, and neither secret.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { DomainApi } from "../../driver/api.js";
import type { ClusterSnapshot } from "../../driver/cluster/cluster-view.js";
import { readKernelTables } from "../../driver/kernel/kernel-tables.js";
import { createLogger } from "../../lib/log.js";
import { LogRing } from "../../lib/log-ring.js";
import { VERSION } from "../../lib/version.js";
import { collectSupport } from "../../plugin/compose/support.js";
import { createApp } from "../../plugin/http/app.js";
import { listenUnix, type Listener } from "../../plugin/http/listen.js";
import { ReadinessGate } from "../../plugin/readiness.js";
import { buildRoutes, clusterOf, doctorOf, peersOf, statusOf, supportOf } from "../../plugin/routes/index.js";
import { bundleReport, defaultBundleName, supportBundle, type Bundle } from "../../cli/support-command.js";
import { PluginUnreachable } from "../../cli/plugin-client.js";
import { fakeCommands } from "../support/fake-commands.js";
import { MemoryStore } from "../support/memory-store.js";

const TOKEN = "4e1f0c2a-acl-token-of-h1-7d3b";
/** Base64 with '+' and '/', as WireGuard keys are. */
const KEY = "q+3vN2/x8kLmP0aZbYc1dEfGhIjKlMnOpQrStUvWx0E=";
const PUBLIC = "PUBLICkeyPUBLICkeyPUBLICkeyPUBLICkeyPUBLIC=";
const SUBNET = "10.1.0.0/24";

const dir = mkdtempSync(join(tmpdir(), "tso-bundle-"));
const runDir = join(dir, "run");
const ring = new LogRing({ maxLines: 100, maxBytes: 100_000 });
// The logger knows the token (as the plugin's does); the key is only known to the HTTP edge's scrub.
const log = createLogger("info", { secrets: [TOKEN], ring, destination: { write: () => undefined } });
const store = new MemoryStore();
const commands = fakeCommands((line, ns) => {
  if (line === "bridge fdb show" && ns?.endsWith("vni-4098") === true) return { code: 1, stdout: "", stderr: "Error: bridge is busted\n" };
  if (line === "wg show tsowg0")
    return { code: 0, stdout: `interface: tsowg0\n  public key: ${PUBLIC}\n  private key: (hidden)\n  listening port: 51820\n  stray: ${KEY}\n`, stderr: "" };
  if (line === "ip -d link show" && ns !== undefined)
    return {
      code: 0,
      stdout: `2: br0: <UP> mtu 1450\n3: vxlan0: <UP> mtu 1450 master br0\n    vxlan id 4097 dstport 4789 nolearning # ${TOKEN}\n`,
      stderr: "",
    };
  if (line === "iptables-save") return undefined; // not installed: a line in the file, not a failed bundle
  return { code: 0, stdout: `(${line})\n`, stderr: "" };
});
let failPeers = false;

const domain: DomainApi = {
  driver: {} as DomainApi["driver"],
  ipam: {} as DomainApi["ipam"],
  ports: () => [],
  cluster: async () => ({ hostId: "198.18.0.11", store: { backend: "consul", available: true, seen: `a header with ${TOKEN}` } }),
  view: async () =>
    ({
      self: "198.18.0.11",
      at: "2026-01-05T10:00:00Z",
      hosts: [],
      networks: [{ names: ["web"], subnet: SUBNET, vni: 4097, gateway: "10.1.0.1/24", internal: false, mtu: null, hosts: [], endpoints: 0 }],
      endpoints: [],
      stray: KEY,
    }) as ClusterSnapshot,
  peers: async () => {
    if (failPeers) throw new Error("peers: h2 did not answer");
    return { hosts: [], stray: TOKEN } as never;
  },
  doctor: async () => [{ check: "consul", status: "ok", detail: `reached with ${TOKEN}, key ${KEY}` }],
  probe: () => Promise.reject(new Error("no probe here")),
  rotateKey: () => Promise.reject(new Error("no rotation here")),
  support: () =>
    collectSupport({
      store,
      kernel: () => readKernelTables({ runDir, wireguardIface: "tsowg0", run: commands.run }),
      networks: async () => [{ networkId: "n1", subnet: SUBNET, record: { subnet: SUBNET, gatewayCidr: "10.1.0.1/24", vni: 4097, createdAt: "x" } }],
      names: async () => new Map((await domain.view()).networks.map((n) => [n.subnet, n.names])),
    }),
};

const listeners: Listener[] = [];
/** The plugin's edge on a socket of its own, wired as plugin/main.ts wires it. */
async function serve(gate: ReadinessGate): Promise<string> {
  const sock = join(dir, `plugin-${listeners.length}.sock`);
  const views = {
    status: () => statusOf(gate),
    cluster: () => clusterOf(gate),
    peers: () => peersOf(gate),
    doctor: () => doctorOf(gate),
    support: () => supportOf(gate, () => ring.snapshot()),
  };
  listeners.push(await listenUnix(createApp(buildRoutes(gate), log, views, {}, { secrets: async () => [TOKEN, KEY] }), sock));
  return sock;
}

/** The archive extracted with the system's tar: path → contents. */
function extract(b: Bundle, name: string): Map<string, string> {
  const out = join(dir, name);
  mkdirSync(out);
  writeFileSync(`${out}.tar.gz`, b.archive);
  execFileSync("tar", ["-xzf", `${out}.tar.gz`, "-C", out]);
  const files = new Map<string, string>();
  const walk = (rel: string): void => {
    for (const e of readdirSync(join(out, rel), { withFileTypes: true })) {
      const p = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else files.set(p, readFileSync(join(out, p), "utf8"));
    }
  };
  walk("");
  return files;
}

let readySock: string;

beforeAll(async () => {
  mkdirSync(join(runDir, "netns"), { recursive: true });
  for (const ns of ["vni-4097", "vni-4098"]) writeFileSync(join(runDir, "netns", ns), "");
  await store.put("tsoverlay/v1/by-host/198.18.0.11/alive", JSON.stringify({ hostId: "198.18.0.11", wireguardKey: PUBLIC, note: `key ${KEY}` }));
  await store.put(
    "tsoverlay/v1/networks/10.1.0.0_24",
    JSON.stringify({ subnet: SUBNET, vni: 4097, token: "a-field-named-token", nested: { privateKey: "pk" } }),
  );
  await store.put("tsoverlay/v1/odd", `not json, holding ${TOKEN}`);
  await store.put("elsewhere/x", "not ours");
  log.info({ consul: `https://consul:8501?token=${TOKEN}` }, "store opened");
  log.warn({ key: KEY }, "a line that should never have been written");
  const gate = new ReadinessGate();
  gate.ready(domain);
  readySock = await serve(gate);
});

afterEach(() => {
  failPeers = false;
});

afterAll(async () => {
  for (const l of listeners) await l.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("tsoverlay support-bundle", () => {
  it("holds each view, the log, each namespace's kernel tables and the store's records as files, and a manifest of them", async () => {
    const when = new Date("2026-01-05T10:15:30.123Z");
    const b = await supportBundle(readySock, { now: when, host: "node1" });
    const files = extract(b, "full");
    expect([...files.keys()].sort()).toEqual([
      "cluster.json",
      "doctor.json",
      "kernel/host.txt",
      "kernel/vni-4098.txt",
      "kernel/web.txt",
      "manifest.json",
      "peers.json",
      "plugin.log",
      "status.json",
      "store.json",
    ]);
    const manifest = JSON.parse(files.get("manifest.json")!) as Bundle["manifest"];
    expect(manifest).toMatchObject({ version: VERSION, pluginVersion: VERSION, host: "node1", createdAt: when.toISOString(), ready: true });
    expect(Object.values(manifest.parts).every((p) => p.ok)).toBe(true);
    expect(manifest.parts.kernel).toEqual({ ok: true, files: ["kernel/host.txt", "kernel/web.txt", "kernel/vni-4098.txt"] });

    // An overlay namespace: named for its network, with its vxlan device; a failing command is a line, the rest is there.
    const web = files.get("kernel/web.txt")!;
    expect(web).toMatch(/^# namespace vni-4097, subnet 10\.1\.0\.0\/24, network web\n/);
    expect(web).toContain("vxlan0: <UP>");
    for (const c of ["ip -d addr show", "ip route show table all", "ip neigh show", "bridge fdb show", "iptables-save"]) expect(web).toContain(`# ${c}\n`);
    expect(web).toContain("# failed: iptables-save: spawn iptables-save ENOENT");
    const other = files.get("kernel/vni-4098.txt")!;
    expect(other).toContain("# failed: bridge fdb show exited 1: Error: bridge is busted");
    expect(other).toContain("(ip neigh show)");
    expect(files.get("kernel/host.txt")).toContain("private key: (hidden)");
    // WireGuard is asked nothing that prints its private key.
    expect(commands.ran.filter((c) => c.startsWith("wg "))).toEqual(["wg show tsowg0"]);
    expect(commands.ran.filter((c) => c.startsWith("ip ") && c.includes("@")).length).toBe(8);

    const records = JSON.parse(files.get("store.json")!) as { key: string; value: unknown }[];
    expect(records.map((r) => r.key)).toEqual(["tsoverlay/v1/by-host/198.18.0.11/alive", "tsoverlay/v1/networks/10.1.0.0_24", "tsoverlay/v1/odd"]);
    expect(records[1]!.value).toEqual({ subnet: SUBNET, vni: 4097, token: "[redacted]", nested: { privateKey: "[redacted]" } });
    expect(records[0]!.value).toMatchObject({ wireguardKey: PUBLIC });
    expect(
      files
        .get("plugin.log")!
        .split("\n")
        .filter((l) => l !== "").length,
    ).toBe(ring.snapshot().length);
    expect(files.get("plugin.log")).toContain('"msg":"store opened"');

    const report = bundleReport(b, "out.tar.gz");
    expect(report.problems).toBe(0);
    expect(report.text).toBe(`wrote out.tar.gz: 10 files, ${b.archive.length} bytes\n`);
  });

  it("holds neither the ACL token nor the WireGuard private key, planted in every part", async () => {
    const b = await supportBundle(readySock, { host: "node1" });
    const tar = gunzipSync(b.archive).toString("latin1");
    for (const secret of [TOKEN, KEY, JSON.stringify(KEY).slice(1, -1)]) expect(tar).not.toContain(secret);
    const files = extract(b, "secrets");
    for (const [name, text] of files) {
      if (name === "manifest.json" || name === "peers.json") continue;
      expect(text, `${name} shows where a secret was`).toContain("[redacted]");
    }
  });

  it("a part that fails is named in the manifest with why; the others are still there (exit 1)", async () => {
    failPeers = true;
    const b = await supportBundle(readySock, { host: "node1" });
    const files = extract(b, "partial");
    expect(files.has("peers.json")).toBe(false);
    expect(files.has("cluster.json") && files.has("store.json") && files.has("kernel/web.txt")).toBe(true);
    const manifest = JSON.parse(files.get("manifest.json")!) as Bundle["manifest"];
    expect(manifest.parts.peers).toEqual({ ok: false, error: expect.stringMatching(/HTTP 500: peers: peers: h2 did not answer/) as unknown });
    const report = bundleReport(b, "out.tar.gz");
    expect(report.problems).toBe(1);
    expect(report.text).toMatch(/\nnot in it:\n {2}peers: .*h2 did not answer\n$/);
  });

  it("a plugin that is not ready still gives its status and log; the manifest says why the rest is missing", async () => {
    const gate = new ReadinessGate();
    gate.notReady("the cluster store cannot be reached");
    const b = await supportBundle(await serve(gate), { host: "node1" });
    const files = extract(b, "not-ready");
    expect([...files.keys()].sort()).toEqual(["manifest.json", "plugin.log", "status.json"]);
    expect(JSON.parse(files.get("status.json")!)).toMatchObject({ ready: false, reason: "the cluster store cannot be reached" });
    const manifest = JSON.parse(files.get("manifest.json")!) as Bundle["manifest"];
    expect(manifest.ready).toBe(false);
    for (const part of ["doctor", "peers", "cluster"]) {
      expect(manifest.parts[part], part).toEqual({ ok: false, error: expect.stringMatching(/HTTP 503: .*the cluster store cannot be reached/) as unknown });
    }
    for (const part of ["kernel", "store"]) {
      expect(manifest.parts[part], part).toEqual({ ok: false, error: "tsoverlay is not ready: the cluster store cannot be reached" });
    }
    expect(bundleReport(b, "x").text).toContain("(the plugin is not ready)");
  });

  it("no plugin on the socket: PluginUnreachable (exit 3), no bundle", async () => {
    await expect(supportBundle(join(dir, "nobody.sock"))).rejects.toBeInstanceOf(PluginUnreachable);
  });

  it("is named for the host and the UTC time by default", () => {
    expect(defaultBundleName("node1.example", new Date("2026-01-05T10:15:30.123Z"))).toBe("tsoverlay-support-node1.example-20260105T101530Z.tar.gz");
    expect(defaultBundleName("odd host/x", new Date(0))).toBe("tsoverlay-support-odd_host_x-19700101T000000Z.tar.gz");
  });
});
