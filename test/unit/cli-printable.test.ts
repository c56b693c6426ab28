/**
 * The CLI prints strings that anyone who can write the cluster store chose
 * (host names, network and container names, other hosts' answers): none of
 * them reaches the terminal with a control character or an escape sequence.
 */
import { describe, expect, it } from "vitest";
import { hosts, networks, ports, ps } from "../../cli/cluster-commands.js";
import { doctor } from "../../cli/doctor-command.js";
import { peers } from "../../cli/peers-command.js";
import { printable } from "../../cli/printable.js";
import { probe } from "../../cli/probe-command.js";
import type { ClusterSnapshot } from "../../driver/cluster/cluster-view.js";
import type { ProbeReport } from "../../driver/api.js";

/** Retitles the terminal, clears it, moves the cursor home and rewrites the line, rings, and a C1 CSI. */
const EVIL = "web\u001b]0;pwned\u0007\u001b[2J\u001b[H\rok\u0008\u0007\u009b31m\u001bP1$r\u001b\\\u001bc\u007f";
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

const snapshot: ClusterSnapshot = {
  self: "198.18.0.11",
  at: "2025-01-01T00:00:00Z",
  hosts: [
    {
      hostId: "198.18.0.11",
      vtep: "198.18.0.11",
      hostname: EVIL,
      alive: true,
      startedAt: null,
      goneSince: null,
      pluginVersion: EVIL,
      dockerVersion: EVIL,
      endpoints: 1,
    },
  ],
  networks: [{ names: [EVIL], subnet: "10.1.0.0/24", vni: 5000, gateway: "10.1.0.1/24", internal: false, mtu: null, hosts: [EVIL], endpoints: 1 }],
  endpoints: [
    {
      network: EVIL,
      subnet: "10.1.0.0/24",
      endpointId: EVIL,
      hostId: EVIL,
      vtep: "198.18.0.11",
      alive: true,
      ip: "10.1.0.2",
      mac: EVIL,
      name: EVIL,
      names: [EVIL, EVIL],
      ports: [{ proto: "tcp", hostIp: EVIL, hostPort: 80, containerPort: 80, via: "proxy" }],
    },
  ],
};

/** Lines as printed, each without its newline. */
const lines = (text: string) => text.split("\n");

describe("what the CLI prints", () => {
  it("strips escape sequences whole, then every other control character", () => {
    expect(printable(EVIL)).toBe("webok");
    expect(printable("plain text, ünïcode ✓")).toBe("plain text, ünïcode ✓");
  });

  it("tables (ps, networks, hosts, ports) carry no control character, and their columns line up", () => {
    for (const out of [ps(snapshot, undefined), networks(snapshot), hosts(snapshot), ports(snapshot, undefined)]) {
      for (const line of lines(out.text)) expect(line).not.toMatch(CONTROLS);
      expect(out.text).toContain("webok");
    }
    const [header, row] = lines(ps(snapshot, undefined).text);
    expect(row!.indexOf("webok", 1)).toBe(header!.indexOf("NETWORK"));
  });

  it("peers, doctor and probe lines carry none either", () => {
    const report = {
      hosts: [{ hostId: EVIL, networks: [{ subnet: "10.1.0.0/24", peers: 1, checked: true, missing: [EVIL], stale: [EVIL], extra: [EVIL] }], error: null }],
      missing: [EVIL],
    };
    const p = peers(report, snapshot, undefined);
    expect(p.text).toContain("webok");
    for (const line of lines(p.text)) expect(line).not.toMatch(CONTROLS);

    const d = doctor([{ check: EVIL, status: "problem", detail: EVIL, fix: EVIL }]);
    for (const line of lines(d.text)) expect(line).not.toMatch(CONTROLS);
    expect(d.json).toEqual([{ check: EVIL, status: "problem", detail: EVIL, fix: EVIL }]);

    const r: ProbeReport = {
      peer: EVIL,
      network: EVIL,
      subnet: "10.1.0.0/24",
      vni: 1,
      verdict: "ok",
      summary: EVIL,
      rttMs: null,
      pathMtu: null,
      neededMtu: 1500,
      samples: [],
    };
    for (const line of lines(probe(r).text)) expect(line).not.toMatch(CONTROLS);
  });
});
