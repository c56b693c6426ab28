/**
 * `tsoverlay doctor`: this host checked for what has bitten users, each
 * finding with its fix in one line. Composition-level because it looks at
 * everything at once: the kernel, iptables, the store, the daemon and the
 * plugin's own state. It only reads; it repairs nothing.
 *
 * "problem" is something that breaks networks now; "warn" something that
 * will, or that is known to misbehave; "ok" and "info" say what was seen.
 *
 * One module, over the usual size: each check is a few lines of reading and
 * a finding, and they are kept together in the order the output shows them,
 * so that what the doctor looks at, and the fix it names, can be read as one
 * list; a check shared with another part (kernel reads, store liveness) lives
 * in that part and is only called here.
 */

import { hasTunDevice, linkMtu, moduleState, NO_TUN_FIX, readSysctl } from "../../driver/kernel/host-checks.js";
import type { Iptables } from "../../driver/kernel/iptables.js";
import { FWD_CHAIN } from "../../driver/kernel/egress/rules.js";
import { keys, previousKeys } from "../../driver/cluster/keys.js";
import { livenessOf } from "../../driver/cluster/record-checks.js";
import { VXLAN_OVERHEAD, WIREGUARD_OVERHEAD } from "../../driver/network/network-options.js";
import type { EncryptionReport } from "../../driver/encryption/wireguard-peers.js";
import type { LocalNetwork } from "../../driver/local/local-state.js";
import type { DockerPort } from "../../driver/contracts/docker.js";
import { isStoreUnavailable, type Store } from "../../driver/contracts/store.js";
import type { Finding } from "../../driver/api.js";
import type { ClusterAsk } from "../../driver/cluster/cluster-ask.js";
import type { FailingStep } from "../../driver/local/outbox.js";
import { messageOf } from "../../lib/errors.js";

export interface DoctorInputs {
  /** Where sysctls are read: `<procRoot>/sys/net/…` (the managed plugin has only /proc/sys/net of the host there). */
  procRoot: string;
  underlay: { ifindex: number; mtuAtStart: number };
  iptables: Iptables;
  /** The cluster store as opened (not the retrying wrapper: the doctor wants the first answer). */
  store: Store;
  consulAddr: string;
  docker: DockerPort | undefined;
  /** This host's networks that have endpoints here. */
  networks: () => Promise<LocalNetwork[]>;
  /** The plugin's own state, as the status endpoint has it. */
  status: () => Promise<{
    pendingTeardown: number;
    /** Steps failing for reasons of their own (retried with a growing pause). */
    failingTeardown: FailingStep[];
    storeCondition: string | undefined;
    names: { serving: boolean; reason?: string; address?: string };
    /** Why this host takes no part in the cluster (a newer store layout), if so. */
    layoutProblem?: string;
  }>;
  /** Every live host's clock against this one's (see ClusterAsk "clock"). */
  clocks: () => Promise<ClockReading[]>;
  /** This host's WireGuard (encrypted networks); undefined when it cannot have one (no key). */
  encryption: () => Promise<EncryptionReport | undefined>;
  /** wireguard-go's TUN device (tests); default /dev/net/tun. */
  tunDevice?: string;
}

/** A host's clock as read through the store: `at` is its time when it answered, seen between `askedAt` and `seenAt` here. */
export interface ClockReading {
  hostId: string;
  at: number;
  askedAt: number;
  seenAt: number;
}

/** How long the clock check waits for every live host's answer. */
const CLOCK_ASK_MS = 3_000;

/** Every live host's time, asked through the store (each host answers "clock" with its Date.now()). */
export async function clockReadings(asks: ClusterAsk): Promise<ClockReading[]> {
  const askedAt = Date.now();
  const { answers } = await asks.ask("clock", CLOCK_ASK_MS);
  const seenAt = Date.now();
  return [...answers].flatMap(([hostId, a]) => {
    const at = (a as { now?: unknown } | null)?.now;
    return typeof at === "number" ? [{ hostId, at, askedAt, seenAt }] : [];
  });
}

/** Skew that breaks things: Consul sessions and TTLs, "gone since", the record collector's grace. */
const CLOCK_SKEW_MS = 2_000;

export async function runDoctor(d: DoctorInputs): Promise<Finding[]> {
  const checks = [kernelModules, forwarding, forwardChain, underlayMtu, encryption, clusterStore, clocks, daemon, pluginState];
  const out: Finding[] = [];
  for (const check of checks) {
    try {
      out.push(...(await check(d)));
    } catch (e) {
      out.push({ check: check.name, status: "warn", detail: `the check itself failed: ${messageOf(e)}` });
    }
  }
  return out;
}

function kernelModules(d: DoctorInputs): Finding[] {
  const out: Finding[] = [];
  for (const m of ["vxlan", "bridge"]) {
    // The plugin's own /proc lists the host's modules (not namespaced): the sysctl mount holds only sys/net.
    const state = moduleState("/proc", m);
    out.push(
      state === "absent"
        ? {
            check: `kernel module ${m}`,
            status: "warn",
            detail: `${m} is neither loaded nor built in`,
            fix: `modprobe ${m} (and add it to /etc/modules-load.d)`,
          }
        : { check: `kernel module ${m}`, status: "ok", detail: state },
    );
  }
  if (moduleState("/proc", "br_netfilter") !== "absent") {
    const calls = readSysctl("net/bridge/bridge-nf-call-iptables", d.procRoot);
    out.push({
      check: "br_netfilter",
      status: "info",
      detail: `loaded (bridge-nf-call-iptables=${calls ?? "?"}): bridged frames pass iptables; each overlay network's namespace has its own, empty tables, so the host's FORWARD rules do not see overlay traffic`,
    });
  }
  return out;
}

async function forwarding(d: DoctorInputs): Promise<Finding[]> {
  const v = readSysctl("net/ipv4/ip_forward", d.procRoot);
  const outward = (await d.networks()).filter((n) => n.record?.internal !== true);
  if (v === "1") return [{ check: "ip_forward", status: "ok", detail: "net.ipv4.ip_forward=1" }];
  return [
    {
      check: "ip_forward",
      status: outward.length > 0 ? "problem" : "warn",
      detail: `net.ipv4.ip_forward=${v ?? "unreadable"}: containers cannot reach the outside and published ports do not forward${outward.length > 0 ? ` (${outward.length} network(s) here need it)` : ""}`,
      fix: "sysctl -w net.ipv4.ip_forward=1 (and net.ipv4.ip_forward=1 in /etc/sysctl.d/)",
    },
  ];
}

async function forwardChain(d: DoctorInputs): Promise<Finding[]> {
  const policy = await d.iptables.policy("filter", "FORWARD");
  const outward = (await d.networks()).filter((n) => n.record?.internal !== true);
  const jumps = (await d.iptables.listRules("filter", "FORWARD")) ?? [];
  const ours = jumps.some((r) => r.includes(`-j ${FWD_CHAIN}`));
  if (outward.length > 0 && !ours) {
    return [
      {
        check: "FORWARD chain",
        status: "problem",
        detail: `policy ${policy ?? "?"}, and no jump to ${FWD_CHAIN}: egress of this host's networks is not allowed through`,
        fix: `the plugin puts the jump back within TSOVERLAY_RECONCILE_S (5 s by default); if it keeps going, check that no firewall manager flushes FORWARD`,
      },
    ];
  }
  return [{ check: "FORWARD chain", status: "ok", detail: `policy ${policy ?? "?"}${ours ? `, ${FWD_CHAIN} jumped to` : ", no egress here yet"}` }];
}

async function underlayMtu(d: DoctorInputs): Promise<Finding[]> {
  const link = await linkMtu(d.underlay.ifindex);
  const nets = await d.networks();
  const out: Finding[] = [];
  for (const n of nets) {
    const overhead = VXLAN_OVERHEAD + (n.record?.encrypted === true ? WIREGUARD_OVERHEAD : 0);
    const overlay = n.record?.mtu ?? d.underlay.mtuAtStart - overhead;
    if (overlay + overhead > link.mtu) {
      out.push({
        check: "underlay MTU",
        status: "problem",
        detail: `network ${n.subnet} runs with MTU ${overlay}, which needs ${overlay + overhead} on the underlay; ${link.name} has ${link.mtu}: large packets are dropped`,
        fix: `raise ${link.name}'s MTU to ${overlay + overhead}, or recreate the network with -o mtu=${link.mtu - overhead}`,
      });
    }
  }
  if (out.length === 0)
    out.push({
      check: "underlay MTU",
      status: "ok",
      detail: `${link.name} MTU ${link.mtu}, ${nets.length} network(s) here fit (VXLAN adds ${VXLAN_OVERHEAD})`,
    });
  return out;
}

/** Which WireGuard this host uses (kernel or wireguard-go), and whether every live host is its peer. */
async function encryption(d: DoctorInputs): Promise<Finding[]> {
  const r = await d.encryption();
  const check = "encryption";
  if (r === undefined)
    return [
      {
        check,
        status: "problem",
        detail: "this host has no WireGuard key: it cannot join encrypted networks",
        fix: "see the plugin's log at start for why the key could not be made or read",
      },
    ];
  const out: Finding[] = [];
  if (moduleState("/proc", "wireguard") === "absent" && !hasTunDevice(d.tunDevice))
    out.push({
      check,
      status: "problem",
      detail:
        "the kernel has no WireGuard loaded and this plugin has no /dev/net/tun for wireguard-go: an encrypted network cannot start here (unless the kernel loads WireGuard on first use)",
      fix: NO_TUN_FIX,
    });
  if (!r.active) return [{ check, status: "ok", detail: `no encrypted network here yet (tunnel address ${r.address})` }, ...out];
  if (r.error !== undefined)
    out.push({ check, status: "problem", detail: `WireGuard: ${r.error}`, fix: "the plugin retries every reconcile period; check the plugin's log" });
  for (const l of r.leftOut)
    out.push({ check, status: "problem", detail: `host ${l.hostId} is not a WireGuard peer: ${l.why}`, fix: "upgrade or restart the plugin on that host" });
  const state = r.state;
  if (state !== undefined) {
    const missing = r.expected - state.peers.length;
    if (missing > 0)
      out.push({
        check,
        status: "problem",
        detail: `${missing} live host(s) missing from ${state.iface}'s peers`,
        fix: "the next reconcile adds them; if it persists, check the plugin's log",
      });
    const now = Date.now() / 1000;
    const recent = state.peers.filter((p) => p.latestHandshake > 0 && now - p.latestHandshake < 180).length;
    out.unshift({
      check,
      status: "ok",
      detail: `${state.mode === "kernel" ? "the kernel's WireGuard" : "wireguard-go (userspace: the kernel has no WireGuard)"} on ${state.iface}, ${state.address}, port ${state.listenPort}, MTU ${state.mtu}; ${state.peers.length} peer(s), ${recent} with a handshake in the last 3 minutes`,
    });
  }
  return out;
}

async function clusterStore(d: DoctorInputs): Promise<Finding[]> {
  const where = d.consulAddr === "" ? "the embedded store" : `the Consul agent at ${d.consulAddr}`;
  try {
    const [byHost, previous] = await Promise.all([d.store.list(keys.byHost()), d.store.list(previousKeys.hosts())]);
    const live = [...livenessOf(byHost, previous).values()];
    const older = live.filter((h) => h.layout === "previous").length;
    const found: Finding[] = [
      {
        check: "cluster store",
        status: "ok",
        detail: `${where} answers; ${live.length} host(s) registered${older > 0 ? ` (${older} of them on the previous store layout)` : ""}`,
      },
    ];
    const layout = (await d.status()).layoutProblem;
    if (layout !== undefined) {
      found.push({
        check: "cluster store layout",
        status: "problem",
        detail: `${layout}; this host takes no part in the cluster`,
        fix: "upgrade the plugin on this host",
      });
    }
    return found;
  } catch (e) {
    const unavailable = isStoreUnavailable(e);
    return [
      {
        check: "cluster store",
        status: "problem",
        detail: `${where}: ${unavailable ? e.unavailable : messageOf(e)}`,
        fix: /leader/i.test(messageOf(e))
          ? "the Consul servers have no leader: start enough servers for a quorum (consul operator raft list-peers)"
          : unavailable
            ? `start the Consul agent on this host (systemctl start consul) and check that it joined the cluster (consul members)`
            : "the agent answered and refused: fix what the message names (an ACL token without key write access, CONSUL_HTTP_TOKEN_FILE; a TLS setting, CONSUL_CACERT, CONSUL_CLIENT_CERT/KEY, CONSUL_TLS_SERVER_NAME)",
      },
    ];
  }
}

/** This host's clock against the others': an answer stamped outside [asked, seen] by more than the tolerance is skew. */
export async function clocks(d: Pick<DoctorInputs, "clocks">): Promise<Finding[]> {
  const readings = await d.clocks();
  const skewed = readings.flatMap((r) => {
    const off = r.at < r.askedAt ? r.at - r.askedAt : r.at > r.seenAt ? r.at - r.seenAt : 0;
    return Math.abs(off) > CLOCK_SKEW_MS ? [`${r.hostId} ${off > 0 ? "ahead by" : "behind by"} ${(Math.abs(off) / 1000).toFixed(1)} s`] : [];
  });
  if (skewed.length > 0) {
    return [
      {
        check: "clock",
        status: "warn",
        detail: `clocks disagree with this host's: ${skewed.join(", ")} (liveness, "gone since" and the record collector's grace read time)`,
        fix: "run a time service (chrony or systemd-timesyncd) on every host",
      },
    ];
  }
  return [{ check: "clock", status: "ok", detail: `${readings.length} host(s) within ${CLOCK_SKEW_MS / 1000} s of this one` }];
}

/** Docker releases known to misbehave with remote network drivers (the README's table of Docker versions, under Requirements). */
async function daemon(d: DoctorInputs): Promise<Finding[]> {
  if (d.docker === undefined)
    return [{ check: "Docker", status: "info", detail: "no Docker API socket configured: networks are per host, names only from Docker 29's IPAM" }];
  const f = await d.docker.daemonFacts();
  const [major, minor, patch] = f.version.split(/[.+-]/).map((x) => Number(x));
  const out: Finding[] = [
    {
      check: "Docker",
      status: "ok",
      detail: `Docker ${f.version}${f.runcVersion === undefined ? "" : `, runc ${f.runcVersion}`}${f.liveRestore ? ", live-restore on" : ""}`,
    },
  ];
  if (major === 29 && minor === 0 && (patch ?? 0) <= 2) {
    out.push({
      check: "Docker version",
      status: "problem",
      detail: `Docker ${f.version} crashes when a remote-driver endpoint stops being a container's gateway (moby/moby#51554)`,
      fix: "upgrade to Docker 29.0.3 or later",
    });
  }
  if (major !== undefined && major < 23) {
    out.push({ check: "Docker version", status: "warn", detail: `Docker ${f.version} is out of support`, fix: "upgrade to Docker 28 or 29" });
  }
  if (major === 29 && f.liveRestore) {
    out.push({
      check: "live-restore",
      status: "warn",
      detail:
        "Docker 29 with live-restore: after a dockerd restart, `docker network connect` to a tsoverlay network fails and unpublishing is not sent (a Docker bug)",
      fix: 'set "live-restore": false in daemon.json, or restart such containers after a dockerd restart',
    });
  }
  const runc = f.runcVersion?.replace(/^v/, "").split(".").map(Number);
  if (major === 29 && (minor ?? 0) >= 5 && runc !== undefined && (runc[0]! < 1 || (runc[0] === 1 && runc[1]! < 2))) {
    out.push({
      check: "runc",
      status: "problem",
      detail: `Docker ${f.version} needs runc 1.2 or later; this daemon runs ${f.runcVersion}`,
      fix: "install runc 1.2 or later",
    });
  }
  return out;
}

export async function pluginState(d: Pick<DoctorInputs, "status">): Promise<Finding[]> {
  const s = await d.status();
  const out: Finding[] = [];
  for (const f of s.failingTeardown) {
    out.push({
      check: "failing teardown",
      status: "problem",
      detail: `the ${f.op} step of network ${f.network} failed ${f.attempts} time(s): ${f.error}; it is tried again in ${Math.ceil(f.retryInMs / 1000)} s, and until it works the network's later teardown waits and new addresses in it are refused (other networks are not held up)`,
      fix: "see the plugin's log for the step; once its cause is gone it completes on its own",
    });
  }
  out.push(queuedTeardown(s.pendingTeardown, s.failingTeardown.length, s.storeCondition));
  out.push(
    s.names.serving
      ? {
          check: "name service",
          status: "info",
          detail: `serving on ${s.names.address}; containers resolve names on other hosts only when the daemon's "dns" setting lists ${s.names.address?.split(":")[0]} first`,
        }
      : {
          check: "name service",
          status: "warn",
          detail: `not serving: ${s.names.reason ?? "unknown"}`,
          fix: "names of containers on other hosts will not resolve; see the plugin's log",
        },
  );
  return out;
}

/** The queue as a whole: empty, waiting for the store, or behind the failing steps reported on their own. */
function queuedTeardown(pending: number, failing: number, storeCondition: string | undefined): Finding {
  if (pending === 0) return { check: "queued teardown", status: "ok", detail: "none" };
  if (failing > 0) return { check: "queued teardown", status: "info", detail: `${pending} teardown step(s) pending, ${failing} of them failing (see above)` };
  return {
    check: "queued teardown",
    status: "warn",
    detail: `${pending} teardown step(s) wait for the cluster store${storeCondition === undefined ? "" : ` (${storeCondition})`}`,
    fix: "they run on their own when the store answers; see the cluster store finding",
  };
}
