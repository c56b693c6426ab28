/**
 * Where the DNS listener sends the queries that are not ours to answer.
 *
 * Design note. The listener runs in the host's network namespace and stands
 * in front of every container's DNS (Docker forwards what it does not know), so what it cannot
 * answer must go where the host itself would send it: the nameservers of the
 * host's resolv.conf. From the host namespace these include loopback
 * resolvers (systemd-resolved's 127.0.0.53, a local dnsmasq), which a
 * container could not reach. At most three are used, in order, as glibc does
 * (and as Docker's own forwarder does: maxExtDNS = 3). The file is rewritten
 * under us (DHCP, NetworkManager, resolved, a VPN client), so it is re-read
 * whenever its mtime (or size or inode) changes; that is checked at most once
 * a second, on demand, so an idle listener costs nothing and a busy one one
 * stat a second. The listener's own addresses are dropped from the list: a
 * host that lists 100.72.0.1 in its own resolv.conf would otherwise have every
 * forward come back to us and loop until each hop timed out. An explicit list
 * (from the configuration) replaces the file altogether.
 */
import { readFile, stat } from "node:fs/promises";
import net from "node:net";
import type { Logger } from "../../lib/log.js";

/** glibc's MAXNS: later nameserver lines are ignored. */
export const MAX_NAMESERVERS = 3;
export const DNS_PORT = 53;
export const DEFAULT_RESOLV_CONF = "/etc/resolv.conf";
/** The file is looked at no more often than this. */
const RECHECK_MS = 1000;

export interface HostPort {
  host: string;
  port: number;
}

/** What the listener asks for, per forwarded query: the servers to try, in order. */
export interface UpstreamSource {
  servers(): Promise<HostPort[]>;
}

/**
 * The nameserver addresses of a resolv.conf, in order, at most three (as
 * glibc reads it: `#` and `;` start comments, the first word after
 * `nameserver` is the address, anything that is no IPv4 or IPv6 address is
 * skipped and does not count towards the three).
 */
export function parseResolvConf(text: string): string[] {
  const found: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const [keyword, address] = line.split(/\s+/);
    if (keyword !== "nameserver" || address === undefined || net.isIP(address) === 0) continue;
    found.push(address);
    if (found.length === MAX_NAMESERVERS) break;
  }
  return found;
}

/** "a:b" for IPv4, "[a::b]:c" for IPv6: as addresses are written in our logs and errors. */
export function formatHostPort(hp: HostPort): string {
  return net.isIPv6(hp.host) ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** An address as a socket reports it, without the IPv4-mapped prefix ("::ffff:10.0.0.5" → "10.0.0.5"). */
export function plainAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return (mapped?.[1] ?? address).toLowerCase();
}

export function sameHostPort(a: HostPort, b: HostPort): boolean {
  return a.port === b.port && plainAddress(a.host) === plainAddress(b.host);
}

/** `servers` minus any that is one of `self` (same address and port). */
export function withoutSelf(servers: readonly HostPort[], self: readonly HostPort[]): HostPort[] {
  return servers.filter((s) => !self.some((me) => sameHostPort(s, me)));
}

export interface HostResolversOptions {
  /** The resolv.conf to follow (default /etc/resolv.conf). */
  path?: string;
  /** Explicit upstreams; when given, the file is not read. A string is an address on port 53. */
  servers?: ReadonlyArray<string | HostPort>;
  /** The listener's own addresses: never forwarded to. */
  exclude?: readonly HostPort[];
  log: Logger;
  /** The clock for the once-a-second check (tests). */
  now?: () => number;
}

/** The upstream servers: an explicit list, or the host's resolv.conf as it is now. */
export class HostResolvers implements UpstreamSource {
  private readonly log: Logger;
  private readonly path: string;
  private readonly exclude: readonly HostPort[];
  private readonly now: () => number;
  private readonly explicit: HostPort[] | undefined;
  private current: HostPort[] = [];
  private lastCheck = Number.NEGATIVE_INFINITY;
  /** mtime, size and inode of the file last read ("" = not read successfully). */
  private seen = "";
  private checking: Promise<void> | undefined;
  private failing = false;

  constructor(opts: HostResolversOptions) {
    this.log = opts.log.child({ component: "dns" });
    this.path = opts.path ?? DEFAULT_RESOLV_CONF;
    this.exclude = opts.exclude ?? [];
    this.now = opts.now ?? Date.now;
    if (opts.servers !== undefined) {
      const given: HostPort[] = [];
      for (const s of opts.servers) {
        const hp = typeof s === "string" ? { host: s, port: DNS_PORT } : s;
        if (net.isIP(hp.host) === 0 || !Number.isInteger(hp.port) || hp.port < 1 || hp.port > 65535) {
          this.log.warn({ server: s }, "DNS upstream is not an IP address and port; ignored");
          continue;
        }
        given.push({ host: hp.host, port: hp.port });
      }
      this.explicit = this.keep(given);
    }
  }

  async servers(): Promise<HostPort[]> {
    if (this.explicit !== undefined) return this.explicit;
    const now = this.now();
    if (now - this.lastCheck >= RECHECK_MS) {
      this.lastCheck = now;
      this.checking ??= this.refresh().finally(() => {
        this.checking = undefined;
      });
    }
    if (this.checking !== undefined) await this.checking;
    return this.current;
  }

  /** Re-reads the file if it changed; on failure keeps the last list it read. */
  private async refresh(): Promise<void> {
    try {
      const st = await stat(this.path);
      const signature = `${st.mtimeMs}:${st.size}:${st.ino}`;
      if (signature === this.seen) return;
      const text = await readFile(this.path, "utf8");
      const next = this.keep(parseResolvConf(text).map((host) => ({ host, port: DNS_PORT })));
      this.seen = signature;
      if (this.failing) this.log.info({ path: this.path }, "resolv.conf readable again");
      this.failing = false;
      if (next.map(formatHostPort).join() !== this.current.map(formatHostPort).join()) {
        this.log.info({ path: this.path, servers: next.map(formatHostPort) }, "DNS upstreams from resolv.conf");
      }
      this.current = next;
    } catch (err) {
      this.seen = "";
      if (!this.failing)
        this.log.warn({ err, path: this.path, keeping: this.current.map(formatHostPort) }, "cannot read resolv.conf; keeping the last DNS upstreams");
      this.failing = true;
    }
  }

  private keep(servers: HostPort[]): HostPort[] {
    const kept = withoutSelf(servers, this.exclude);
    if (kept.length < servers.length) {
      this.log.warn(
        { dropped: servers.filter((s) => !kept.includes(s)).map(formatHostPort) },
        "DNS upstream is this listener itself; dropped (forwarding to it would loop)",
      );
    }
    return kept;
  }
}
