import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createLogger } from "../../lib/log.js";
import { createApp } from "../../plugin/http/app.js";
import { groupId, listenUnix } from "../../plugin/http/listen.js";
import { ReadinessGate } from "../../plugin/readiness.js";
import { buildRoutes } from "../../plugin/routes/index.js";
import { postPlugin } from "../support/plugin-client.js";

const dir = mkdtempSync(join(tmpdir(), "tso-sockmode-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const app = () => createApp(buildRoutes(new ReadinessGate()), createLogger("silent"));

describe("the plugin's socket", () => {
  it("is 0600 whatever the umask (0777 under umask 000 before), and the umask is left as it was", async () => {
    const previous = process.umask(0);
    try {
      const sock = join(dir, "plugins", "tsoverlay.sock");
      const l = await listenUnix(app(), sock);
      try {
        expect(statSync(sock).mode & 0o777).toBe(0o600);
        expect(process.umask(0)).toBe(0);
        expect((await postPlugin(sock, "/Plugin.Activate")).status).toBe(200);
      } finally {
        await l.close();
      }
    } finally {
      process.umask(previous);
    }
  });

  it("is 0660 with the group given, so that its members may use it", async () => {
    const gid = process.getgid!();
    const previous = process.umask(0);
    try {
      const sock = join(dir, "group.sock");
      const l = await listenUnix(app(), sock, { gid });
      try {
        const st = statSync(sock);
        expect(st.mode & 0o777).toBe(0o660);
        expect(st.gid).toBe(gid);
      } finally {
        await l.close();
      }
    } finally {
      process.umask(previous);
    }
  });

  it.runIf(process.getuid?.() === 0)("refuses another user, also under umask 000 (run as root: the test connects as nobody)", async () => {
    // A folder anyone may enter (mkdtemp's is 0700): only the socket's own mode can keep nobody out.
    chmodSync(dir, 0o755);
    const sock = join(dir, "nobody.sock");
    const previous = process.umask(0);
    const l = await listenUnix(app(), sock).finally(() => process.umask(previous));
    try {
      const child = spawn(
        process.execPath,
        [
          "-e",
          `require("net").connect(${JSON.stringify(sock)}).on("connect", () => { console.log("connected"); process.exit(0) }).on("error", (e) => { console.log(e.code); process.exit(0) })`,
        ],
        {
          uid: 65534,
          gid: 65534,
        },
      );
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      await new Promise((r) => child.once("exit", r));
      expect(out.trim()).toBe("EACCES");
    } finally {
      await l.close();
    }
  });

  it("takes a group by number, or by name from /etc/group's format; an unknown name is undefined", async () => {
    const file = join(dir, "group");
    writeFileSync(file, "root:x:0:\ndocker:x:998:alice,bob\ntsoverlay-ops:x:1234:\n");
    expect(await groupId("4321", file)).toBe(4321);
    expect(await groupId("docker", file)).toBe(998);
    expect(await groupId("tsoverlay-ops", file)).toBe(1234);
    expect(await groupId("dock", file)).toBeUndefined();
    expect(await groupId("docker", join(dir, "no-such-file"))).toBeUndefined();
  });
});
