import { describe, expect, it } from "vitest";
import { docker, LAB_SCRIPT, labLeftovers, readLab, run } from "./support/lab.js";

/**
 * `lab up` that fails half-way takes down what it made (its EXIT trap), so
 * that the next run is not wedged. The lab the other tests use is taken down
 * first and brought back, with the same hosts and Docker version, at the end.
 */
const lab = (args: string[], env: Record<string, string> = {}) => run("bash", [LAB_SCRIPT, ...args], { timeoutMs: 30 * 60_000, env });

describe("the lab's own life", () => {
  it(
    "an up that fails after Consul, or after dockerd, leaves no namespace, process, mount or cgroup, and the next up works",
    async () => {
      const before = readLab();
      const args = ["up", "--hosts", String(before.hosts.length), "--docker", before.docker ?? "29"];
      const pids = new Set([...before.consul.map((c) => String(c.pid)), ...before.hosts.flatMap((h) => [String(h.dockerdPid), String(h.consulPid)])]);
      expect((await lab(["down"])).code).toBe(0);
      expect(await labLeftovers(pids)).toEqual([]);

      // Each stage is reached (its log line is there) before the failure, so there is something to clean up.
      const stages = [
        { at: "consul", reached: /waiting for the Consul cluster to elect a leader/ },
        { at: "dockerd", reached: /starting \d+ dockerd/ },
      ];
      for (const { at, reached } of stages) {
        const failed = await lab(args, { TSOVERLAY_LAB_FAIL_AT: at });
        expect(failed.code, at).not.toBe(0);
        expect(failed.stderr, at).toMatch(reached);
        expect(failed.stderr, at).toMatch(new RegExp(`failing after ${at} on purpose`));
        expect(failed.stderr, at).toMatch(/up failed; taking down what was made/);
        expect(await labLeftovers(), at).toEqual([]);
      }

      const up = await lab(args);
      expect(up.code, up.stderr.slice(-2000)).toBe(0);
      const after = readLab();
      expect(after.hosts.map((h) => h.name)).toEqual(before.hosts.map((h) => h.name));
      for (const h of after.hosts) expect((await docker(h, ["plugin", "ls", "--format", "{{.Enabled}}"])).stdout.trim()).toBe("true");
    },
    40 * 60_000,
  );
});
