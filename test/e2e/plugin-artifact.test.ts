/**
 * The plugin artifact is reproducible (issue 19): two builds of this tree by
 * scripts/plugin-build.sh, on h1's daemon, lay out the same files and Docker
 * makes the same layer of them (the digest a registry names it by).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { docker, dockerOk, readLab, run } from "./support/lab.js";

const lab = readLab();
const h1 = lab.hosts[0]!;

describe("the plugin artifact", () => {
  it("builds reproducibly: two builds of one tree give the same rootfs layer digest", async () => {
    const dirs = [mkdtempSync(join(tmpdir(), "tso-repro-")), mkdtempSync(join(tmpdir(), "tso-repro-"))];
    const names = dirs.map((_, i) => `tso-repro-${process.pid}-${i}`);
    try {
      const digests: string[] = [];
      for (const [i, dir] of dirs.entries()) {
        const out = join(dir, "plugin");
        const b = await run("bash", ["scripts/plugin-build.sh", out], {
          timeoutMs: 600_000,
          env: { DOCKER_HOST: `unix://${h1.dockerSock}`, SOURCE_DATE_EPOCH: "1764892800" },
        });
        expect(b.code, b.stderr.slice(-2000)).toBe(0);
        await dockerOk(h1, ["plugin", "create", names[i]!, out], { timeoutMs: 300_000 });
        digests.push(await dockerOk(h1, ["plugin", "inspect", "-f", "{{json .Config.Rootfs.DiffIds}}", names[i]!]));
        // Removed before the next is made: the daemon refuses to store a blob it already holds ("content … already exists").
        await dockerOk(h1, ["plugin", "rm", "-f", names[i]!]);
      }
      expect(digests[0]).toMatch(/^\["sha256:[0-9a-f]{64}"\]$/);
      expect(digests[1]).toBe(digests[0]);
    } finally {
      for (const n of names) await docker(h1, ["plugin", "rm", "-f", n]);
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  }, 900_000);
});
