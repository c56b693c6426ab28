import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { eventually } from "../support/eventually.js";
import { postPlugin } from "../support/plugin-client.js";

const MAIN = new URL("../../dist/plugin/main.js", import.meta.url).pathname;
const UNIT = new URL("../../scripts/tsoverlay.service", import.meta.url).pathname;

// The same program as the managed plugin, run the way a host service (the
// systemd unit in scripts/) runs it.
describe("plugin as a host service", () => {
  it("serves its socket, logs JSON lines, and removes the socket on SIGTERM", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tso-svc-"));
    const sock = join(dir, "plugins", "tsoverlay.sock");
    // In a network namespace of its own (unshare execs node: the PID is the plugin's), so that nothing it sets up
    // reaches this machine's own tables; with no underlay address there, its domain never starts, which this test does not need.
    const child = spawn("unshare", ["--net", process.execPath, MAIN], {
      env: {
        PATH: process.env.PATH,
        TSOVERLAY_SOCKETS: sock,
        TSOVERLAY_STATE_DIR: join(dir, "state"),
        TSOVERLAY_RUN_DIR: join(dir, "run"),
        TSOVERLAY_LOG_LEVEL: "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    try {
      await eventually("the plugin's socket", () => existsSync(sock), { timeoutMs: 10_000, everyMs: 50 });
      const r = await postPlugin(sock, "/Plugin.Activate");
      expect(r.body).toEqual({ Implements: ["NetworkDriver", "IpamDriver"] });
      const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      expect(existsSync(sock)).toBe(false);
      const logLines = out.split("\n").filter((l) => l.length > 0);
      expect(logLines.length).toBeGreaterThan(0);
      for (const l of logLines) expect(() => void JSON.parse(l), l).not.toThrow();
      expect(logLines.map((l) => JSON.parse(l) as { msg: string }).map((l) => l.msg)).toContain("serving plugin protocol");
    } finally {
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // systemd does not run here, so the unit's seccomp options (address families, namespaces) are not exercised;
  // its capability bounding set and no_new_privs are, with setpriv, in a throwaway network and mount namespace
  // (the plugin's bridge, rules, namespaces and mounts end with it).
  it("works with only the unit's capabilities and no_new_privs: its socket 0600 under umask 000, a network, an endpoint, port 80, names on :53, metrics on the underlay address only", async () => {
    const unit = readFileSync(UNIT, "utf8");
    const caps = (/^CapabilityBoundingSet=(.+)$/m.exec(unit)?.[1] ?? "").split(/\s+/).map((c) => c.replace(/^CAP_/, "").toLowerCase());
    expect([...caps].sort()).toEqual(["net_admin", "net_bind_service", "net_raw", "sys_admin"]);
    expect(unit).toMatch(/^NoNewPrivileges=yes$/m);
    const dir = mkdtempSync(join(tmpdir(), "tso-svc-caps-"));
    const sock = join(dir, "plugins", "tsoverlay.sock");
    const setup = [
      "set -e",
      "ip link set lo up",
      "ip link add u0 type veth peer name u1",
      "ip addr add 192.0.2.10/24 dev u0",
      "ip link set u0 up",
      "ip link set u1 up",
      "ip route add default via 192.0.2.1 dev u0",
      "umask 000",
      `exec setpriv --no-new-privs --inh-caps=-all --bounding-set=-all,${caps.map((c) => `+${c}`).join(",")} "$0" "$1"`,
    ].join("; ");
    // unshare and setpriv exec: the child's pid is the plugin's.
    const child = spawn("unshare", ["--net", "--mount", "--propagation", "private", "sh", "-c", setup, process.execPath, MAIN], {
      env: {
        PATH: process.env.PATH,
        TSOVERLAY_SOCKETS: sock,
        TSOVERLAY_STATE_DIR: join(dir, "state"),
        TSOVERLAY_RUN_DIR: join(dir, "run"),
        TSOVERLAY_DOCKER_SOCKET: "off",
        TSOVERLAY_METRICS_ADDR: ":9473",
        TSOVERLAY_PROXY_WORKERS: "0",
        TSOVERLAY_LOG_LEVEL: "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const inside = (cmd: string, ...args: string[]): string => execFileSync("nsenter", [`--net=/proc/${child.pid}/ns/net`, cmd, ...args], { encoding: "utf8" });
    const call = async (path: string, body: object): Promise<Record<string, unknown>> => {
      const r = await postPlugin(sock, path, body);
      expect(r.status, `${path}: ${r.raw}`).toBe(200);
      return r.body as Record<string, unknown>;
    };
    try {
      await eventually("the plugin to serve its socket", async () => existsSync(sock) && (await postPlugin(sock, "/Plugin.Activate")).status === 200, {
        timeoutMs: 15_000,
        everyMs: 100,
      });
      expect(statSync(sock).mode & 0o777).toBe(0o600);
      const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
      expect(/^NoNewPrivs:\s+1$/m.test(status)).toBe(true);
      expect(/^CapBnd:\s+0000000000203400$/m.test(status), status).toBe(true); // NET_BIND_SERVICE 10, NET_ADMIN 12, NET_RAW 13, SYS_ADMIN 21

      const [net, ep] = ["n".repeat(64), "e".repeat(64)];
      const pool = await eventually(
        "the driver to start",
        async () => {
          const r = await postPlugin(sock, "/IpamDriver.RequestPool", { AddressSpace: "tsoverlay", Pool: "10.99.0.0/24", SubPool: "", Options: {}, V6: false });
          return r.status === 200 ? (r.body as { PoolID: string }) : undefined;
        },
        { timeoutMs: 30_000, everyMs: 200 },
      );
      const gw = await call("/IpamDriver.RequestAddress", { PoolID: pool.PoolID, Address: "", Options: { RequestAddressType: "com.docker.network.gateway" } });
      await call("/NetworkDriver.CreateNetwork", {
        NetworkID: net,
        Options: {},
        IPv4Data: [{ AddressSpace: "tsoverlay", Pool: "10.99.0.0/24", Gateway: gw.Address }],
        IPv6Data: [],
      });
      const addr = await call("/IpamDriver.RequestAddress", { PoolID: pool.PoolID, Address: "", Options: {} });
      await call("/NetworkDriver.CreateEndpoint", { NetworkID: net, EndpointID: ep, Interface: { Address: addr.Address, MacAddress: "" }, Options: {} });
      await call("/NetworkDriver.Join", { NetworkID: net, EndpointID: ep, SandboxKey: "/var/run/docker/netns/none", Options: {} });
      const ip = String(addr.Address).split("/")[0]!;
      await call("/NetworkDriver.ProgramExternalConnectivity", {
        NetworkID: net,
        EndpointID: ep,
        Options: { "com.docker.network.portmap": [{ Proto: 6, IP: ip, Port: 80, HostIP: "", HostPort: 80, HostPortEnd: 80 }] },
      });
      const listening = inside("ss", "-Hlntu");
      for (const where of ["100.72.0.1:53", "0.0.0.0:80", "192.0.2.10:9473"]) expect(listening).toContain(where);
      expect(listening).not.toMatch(/0\.0\.0\.0:9473|\*:9473/);
      expect(inside("curl", "-sS", "--max-time", "5", "http://192.0.2.10:9473/metrics")).toMatch(/^tsoverlay_endpoints\{network="10\.99\.0\.0\/24"\} 1$/m);

      await call("/NetworkDriver.RevokeExternalConnectivity", { NetworkID: net, EndpointID: ep });
      await call("/NetworkDriver.Leave", { NetworkID: net, EndpointID: ep });
      await call("/NetworkDriver.DeleteEndpoint", { NetworkID: net, EndpointID: ep });
      await call("/NetworkDriver.DeleteNetwork", { NetworkID: net });
      const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      const problems = out
        .split("\n")
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as { level: string; msg: string })
        .filter((l) => l.level === "error" || l.level === "fatal");
      expect(problems).toEqual([]);
    } finally {
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
