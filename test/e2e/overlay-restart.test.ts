import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { postPlugin } from "../support/plugin-client.js";
import { docker, pluginPid, readLab, waitFor } from "./support/lab.js";
import { createNetworkOn, ping, removeContainers, removeNetworkOn, startContainer } from "./support/overlay.js";

const lab = readLab();
const [h1, h2] = [lab.hosts[0]!, lab.hosts[1]!];

describe("plugin restart", () => {
  it("keeps existing containers talking while the plugin is killed and restarted, then serves new ones", async () => {
    await createNetworkOn([h1, h2], "restart", "10.41.0.0/24");
    try {
      const ipA = await startContainer(lab, h1, "rs-a", "restart");
      const ipB = await startContainer(lab, h2, "rs-b", "restart");
      const before = await pluginPid(h2);
      expect(before).toBeDefined();

      const traffic = docker(h1, ["exec", "rs-a", "ping", "-i", "0.2", "-c", "75", "-W", "1", ipB], { timeoutMs: 60_000 });
      // The kill lands while the ping runs (15 s): every one of its packets must come back.
      await waitFor(
        "the ping to run in rs-a",
        async () => ((await docker(h1, ["top", "rs-a"])).stdout.includes(`ping -i 0.2 -c 75 -W 1 ${ipB}`) ? true : undefined),
        10_000,
        100,
      );
      process.kill(before!, "SIGKILL");
      const after = await waitFor(
        "the daemon to restart the plugin",
        async () => {
          const pid = await pluginPid(h2);
          return pid !== undefined && pid !== before ? pid : undefined;
        },
        30_000,
        100,
      );
      const id = (await docker(h2, ["plugin", "inspect", "-f", "{{.Id}}", lab.pluginName])).stdout.trim();
      await waitFor(
        "the restarted plugin to answer",
        async () => {
          const r = await postPlugin(join(h2.pluginsDir, id, "tsoverlay.sock"), "/Plugin.Activate").catch(() => undefined);
          return r?.status === 200 ? true : undefined;
        },
        30_000,
        100,
      );
      expect(after).not.toBe(before);

      const r = await traffic;
      expect(r.stdout).toMatch(/75 packets transmitted, 75 packets received, 0% packet loss/);

      const ipC = await startContainer(lab, h2, "rs-c", "restart");
      expect(await ping(h2, "rs-c", ipA)).toBe(true);
      expect(await ping(h2, "rs-c", ipB)).toBe(true);
      expect(await ping(h1, "rs-a", ipC)).toBe(true);
    } finally {
      await removeContainers(h1, ["rs-a"]);
      await removeContainers(h2, ["rs-b", "rs-c"]);
      await removeNetworkOn([h1, h2], "restart");
    }
  });
});
