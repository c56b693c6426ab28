/**
 * This host's WireGuard interface (driver/contracts/wireguard.ts): the
 * kernel's where `ip link add … type wireguard` works, wireguard-go (a TUN
 * device) otherwise. Both are configured the same way, through `wg` (which
 * speaks the kernel's netlink or wireguard-go's UAPI socket as it finds them),
 * so everything after the interface's creation is shared.
 *
 * Fail closed: a blackhole route for the whole tunnel subnet, with the
 * highest metric, sits beside the interface's own route. While the interface
 * is up its route wins; when it is missing or down (wireguard-go died, the
 * plugin is restarting, someone deleted it) packets for other hosts' tunnel
 * addresses are dropped instead of following the default route out in the
 * clear. A peer missing from the interface drops them too (WireGuard sends
 * nothing for an address no peer holds).
 *
 * `wg show … dump` prints the private key on its first line: that line is
 * never kept, and no output of `wg` is ever logged. The key reaches WireGuard
 * only as a file path (`private-key FILE`).
 */
import path from "node:path";
import { runHostCommand, type CommandResult } from "../host-command.js";
import { hasTunDevice, NO_TUN_FIX, TUN_DEVICE } from "../host-checks.js";
import { replaceHostKey } from "./host-key.js";
import type { WireGuardMode, WireGuardPeer, WireGuardPort, WireGuardState } from "../../contracts/wireguard.js";
import type { Logger } from "../../../lib/log.js";

export interface WireGuardDeviceOptions {
  iface: string;
  /** This host's tunnel address and the tunnel subnet's prefix length. */
  address: string;
  prefix: number;
  /** The tunnel subnet, "a.b.c.d/nn" (the blackhole route's destination). */
  subnet: string;
  listenPort: number;
  mtu: number;
  /** The private key's file (host-key.ts). */
  privateKeyFile: string;
  /** The namespace that plays the host (tests); default: the process's own. */
  hostNetnsPath?: string;
  /** The userspace implementation's binary (default: wireguard-go on PATH). */
  userspaceBin?: string;
  /** The TUN device it needs (default /dev/net/tun). */
  tunDevice?: string;
  log: Logger;
}

/** This host's WireGuard interface's name. */
export const WIREGUARD_IFACE = "tsowg0";
/** The blackhole's metric: the largest, so that any real route to the subnet wins over it. */
const BLACKHOLE_METRIC = "4294967295";
const COMMAND_TIMEOUT_MS = 10_000;
/** Seconds between keepalives on an idle tunnel. */
const KEEPALIVE_S = 25;
const USERSPACE_START_MS = 5_000;

export class WireGuardError extends Error {
  constructor(iface: string, what: string, options?: { cause?: unknown }) {
    super(`WireGuard interface ${iface}: ${what}`, options);
  }
}

export class WireGuardDevice implements WireGuardPort {
  constructor(private readonly o: WireGuardDeviceOptions) {}

  async ensure(): Promise<WireGuardMode> {
    const o = this.o;
    // The guard first: from here on nothing for the tunnel subnet can leave in the clear.
    await this.must("ip", ["route", "replace", "blackhole", o.subnet, "metric", BLACKHOLE_METRIC], "putting the blackhole route in place");
    let mode = await this.existingMode();
    if (mode === undefined) mode = await this.create();
    await this.must("wg", ["set", o.iface, "listen-port", String(o.listenPort), "private-key", o.privateKeyFile], "setting its key and port");
    const want = `${o.address}/${o.prefix}`;
    const have = await this.addresses();
    for (const a of have) if (a !== want) await this.must("ip", ["address", "del", a, "dev", o.iface], `removing address ${a}`);
    if (!have.includes(want)) await this.must("ip", ["address", "add", want, "dev", o.iface], `adding address ${want}`);
    await this.must("ip", ["link", "set", "dev", o.iface, "mtu", String(o.mtu), "up"], "setting its MTU and bringing it up");
    return mode;
  }

  async syncPeers(peers: readonly WireGuardPeer[]): Promise<{ added: number; removed: number }> {
    const have = new Map((await this.dump()).map((p) => [p.publicKey, p]));
    const args: string[] = [];
    let added = 0;
    let removed = 0;
    const wanted = new Set(peers.map((p) => p.publicKey));
    for (const key of have.keys()) {
      if (wanted.has(key)) continue;
      args.push("peer", key, "remove");
      removed++;
    }
    for (const p of peers) {
      const h = have.get(p.publicKey);
      if (h !== undefined && h.endpoint === p.endpoint && h.allowedIp === p.allowedIp) continue;
      // The keepalive's first packet goes out as the peer is set: the handshake with a host that just
      // changed its key starts now, from this side, instead of at that host's next retry (5 s).
      args.push("peer", p.publicKey, "endpoint", p.endpoint, "allowed-ips", p.allowedIp, "persistent-keepalive", String(KEEPALIVE_S));
      added++;
    }
    if (args.length > 0) await this.must("wg", ["set", this.o.iface, ...args], `setting ${added} peer(s), removing ${removed}`);
    return { added, removed };
  }

  async state(): Promise<WireGuardState | undefined> {
    const mode = await this.existingMode();
    if (mode === undefined) return undefined;
    return {
      mode,
      iface: this.o.iface,
      address: `${this.o.address}/${this.o.prefix}`,
      listenPort: this.o.listenPort,
      mtu: this.o.mtu,
      peers: await this.dump(),
    };
  }

  async rotateKey(): Promise<string> {
    const key = await replaceHostKey(path.dirname(this.o.privateKeyFile));
    if ((await this.existingMode()) !== undefined) {
      await this.must("wg", ["set", this.o.iface, "private-key", key.privateKeyFile], "setting its new key");
    }
    this.o.log.info({ iface: this.o.iface, publicKey: key.publicKey }, "WireGuard key replaced");
    return key.publicKey;
  }

  /** The interface's kind when it exists: kernel WireGuard, or a TUN device (wireguard-go's). */
  private async existingMode(): Promise<WireGuardMode | undefined> {
    const r = await this.run("ip", ["-d", "-o", "link", "show", "dev", this.o.iface]);
    if (r.code !== 0) return undefined;
    if (/\bwireguard\b/.test(r.stdout)) return "kernel";
    if (/\btun\b/.test(r.stdout)) return "userspace";
    throw new WireGuardError(this.o.iface, "a link of that name exists and is not WireGuard; rename or remove it");
  }

  /** The kernel's WireGuard if it has one, else wireguard-go; waits until `wg` can talk to it. */
  private async create(): Promise<WireGuardMode> {
    const o = this.o;
    const k = await this.run("ip", ["link", "add", "dev", o.iface, "type", "wireguard"]);
    if (k.code === 0) {
      o.log.info({ iface: o.iface, mode: "kernel" }, "WireGuard interface created");
      return "kernel";
    }
    const bin = o.userspaceBin ?? "wireguard-go";
    // Said in our words: wireguard-go's own, on a missing device, is a banner.
    if (!hasTunDevice(o.tunDevice))
      throw new WireGuardError(
        o.iface,
        `the kernel has no WireGuard (${firstLine(k.stderr)}) and ${bin} has no ${o.tunDevice ?? TUN_DEVICE} here: ${NO_TUN_FIX}`,
      );
    let started: CommandResult;
    try {
      // It forks itself into the background and returns (its UAPI socket appears under /var/run/wireguard).
      // Without LOG_LEVEL (wireguard-go's own setting; a plugin upgraded from before the rename of
      // TSOVERLAY_LOG_LEVEL may still be given it under that old name) the background process gets
      // /dev/null for its output instead of our pipes, which would otherwise stay open and hold this call.
      const { LOG_LEVEL: _ours, ...env } = process.env;
      started = await runHostCommand(bin, [o.iface], {
        timeoutMs: COMMAND_TIMEOUT_MS,
        env,
        ...(o.hostNetnsPath === undefined ? {} : { netnsPath: o.hostNetnsPath }),
      });
    } catch (err) {
      throw new WireGuardError(o.iface, `the kernel has no WireGuard (${firstLine(k.stderr)}) and ${bin} could not be started`, { cause: err });
    }
    if (started.code !== 0) {
      throw new WireGuardError(o.iface, `the kernel has no WireGuard (${firstLine(k.stderr)}) and ${bin} failed: ${firstLine(started.stderr)}`);
    }
    const deadline = Date.now() + USERSPACE_START_MS;
    for (;;) {
      const r = await this.run("wg", ["show", o.iface, "listen-port"]);
      if (r.code === 0) break;
      if (Date.now() > deadline) throw new WireGuardError(o.iface, `${bin} started but did not answer within ${USERSPACE_START_MS} ms: ${firstLine(r.stderr)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    o.log.info({ iface: o.iface, mode: "userspace", kernel: firstLine(k.stderr) }, "WireGuard interface created (wireguard-go: the kernel has no WireGuard)");
    return "userspace";
  }

  private async addresses(): Promise<string[]> {
    const r = await this.must("ip", ["-4", "-o", "address", "show", "dev", this.o.iface], "reading its addresses");
    return [...r.stdout.matchAll(/\binet (\d+\.\d+\.\d+\.\d+\/\d+)/g)].map((m) => m[1]!);
  }

  /** The peers as `wg show dump` lists them; its first line (the interface, with the private key) is dropped unread. */
  private async dump(): Promise<(WireGuardPeer & { latestHandshake: number })[]> {
    const r = await this.must("wg", ["show", this.o.iface, "dump"], "reading its peers");
    return r.stdout
      .split("\n")
      .slice(1)
      .filter((l) => l.trim() !== "")
      .map((l) => {
        const [publicKey = "", , endpoint = "", allowed = "", handshake = "0"] = l.split("\t");
        return {
          publicKey,
          endpoint: endpoint === "(none)" ? "" : endpoint,
          allowedIp: allowed === "(none)" ? "" : allowed,
          latestHandshake: Number(handshake),
        };
      });
  }

  private run(bin: string, args: readonly string[]): Promise<CommandResult> {
    return runHostCommand(bin, args, { timeoutMs: COMMAND_TIMEOUT_MS, ...(this.o.hostNetnsPath === undefined ? {} : { netnsPath: this.o.hostNetnsPath }) });
  }

  /** Runs a command that must succeed; the error names the step and `wg`/`ip`'s first line of complaint (never its output). */
  private async must(bin: string, args: readonly string[], step: string): Promise<CommandResult> {
    const r = await this.run(bin, args);
    if (r.code !== 0) throw new WireGuardError(this.o.iface, `${step} failed (${bin} exited ${r.code}: ${firstLine(r.stderr)})`);
    return r;
  }
}

function firstLine(text: string): string {
  return text.trim().split("\n")[0]?.slice(0, 200) ?? "";
}
