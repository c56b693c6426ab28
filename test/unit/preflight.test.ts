/**
 * scripts/preflight.sh against stand-ins for `node`, `go` and `id` that report
 * chosen versions: PATH holds only the stand-ins, so a tool left out is
 * missing, whatever this machine has installed.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterEach, describe, expect, it } from "vitest";

const SCRIPT = resolve(import.meta.dirname, "../../scripts/preflight.sh");
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Machine {
  node?: string;
  go?: string;
  uid?: number;
}

function preflight(m: Machine, args: string[] = []): { code: number | null; lines: string[] } {
  const bin = mkdtempSync(join(tmpdir(), "tso-preflight-"));
  dirs.push(bin);
  const tool = (name: string, body: string) => {
    writeFileSync(join(bin, name), `#!/bin/bash\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  };
  tool("id", `echo ${m.uid ?? 0}`);
  if (m.node !== undefined) tool("node", `echo ${m.node}`);
  if (m.go !== undefined) tool("go", `[ "$*" = "env GOVERSION" ] && echo go${m.go}`);
  const r = spawnSync("/bin/bash", [SCRIPT, ...args], { env: { PATH: bin }, encoding: "utf8" });
  return { code: r.status, lines: r.stderr.split("\n").filter((l) => l !== "") };
}

describe("the newcomer preflight", () => {
  it("passes silently with root, Node 20.20.2 and Go 1.23.0 (or newer)", () => {
    expect(preflight({ node: "20.20.2", go: "1.23.0" })).toEqual({ code: 0, lines: [] });
    expect(preflight({ node: "22.1.0", go: "1.26.8" })).toEqual({ code: 0, lines: [] });
  });

  it("names Debian 12's Node 18 and Go 1.19 as too old, each in one line with its fix", () => {
    const r = preflight({ node: "18.19.0", go: "1.19.8" });
    expect(r.code).toBe(2);
    expect(r.lines).toHaveLength(2);
    expect(r.lines[0]).toMatch(/^\[tsoverlay\] preflight: Node 18\.19\.0 is too old \(need >= 20\): install Node 20 or newer/);
    expect(r.lines[1]).toMatch(/^\[tsoverlay\] preflight: Go 1\.19\.8 is too old \(need >= 1\.23\): install Go 1\.23 or newer/);
  });

  it("names a missing Node or Go, and a Go 1.9 is not mistaken for a 1.90", () => {
    const none = preflight({});
    expect(none.code).toBe(2);
    expect(none.lines[0]).toMatch(/Node not found: install Node 20/);
    expect(none.lines[1]).toMatch(/Go not found \(it builds Consul, Docker and runc for the lab\): install Go 1\.23/);
    expect(preflight({ node: "20.0.0", go: "1.9" }).lines).toEqual([expect.stringMatching(/Go 1\.9 is too old/)]);
    expect(preflight({ node: "20.0.0", go: "2.0" }).code).toBe(0);
  });

  it("asks for root unless told not to", () => {
    const r = preflight({ node: "20.20.2", go: "1.26.8", uid: 1000 });
    expect(r.code).toBe(1);
    expect(r.lines).toEqual([expect.stringMatching(/not root: .* run it with sudo$/)]);
    expect(preflight({ node: "20.20.2", go: "1.26.8", uid: 1000 }, ["--no-root"]).code).toBe(0);
  });
});
