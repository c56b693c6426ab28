import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { postPlugin } from "../support/plugin-client.js";
import { consulHttp, docker, inNetns, LAB_SCRIPT, readLab, run } from "./support/lab.js";

const lab = readLab();

describe("lab foundation", () => {
  describe.each(lab.hosts.map((h) => [h.name, h] as const))("host %s", (_name, host) => {
    it("lists the managed plugin as enabled", async () => {
      const r = await docker(host, ["plugin", "ls", "--format", "{{.Name}} {{.Enabled}}"]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.split("\n")).toContain(`${lab.pluginName}:latest true`);
    });

    it("installed the plugin from the lab's registry: its reference is the pushed one, tagged with the package's version", async () => {
      const version = (JSON.parse(readFileSync("package.json", "utf8")) as { version: string }).version;
      expect(lab.pluginRef).toBe(`${lab.registry}/tsoverlay:${version}`);
      const r = await docker(host, ["plugin", "inspect", "-f", "{{.PluginReference}}", lab.pluginName]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe(lab.pluginRef);
    });

    it("answers Plugin.Activate with both interfaces on its managed and its legacy socket", async () => {
      const id = (await docker(host, ["plugin", "inspect", "-f", "{{.Id}}", lab.pluginName])).stdout.trim();
      expect(id).toMatch(/^[0-9a-f]{64}$/);
      for (const sock of [join(host.pluginsDir, id, "tsoverlay.sock"), join(host.pluginsDir, "tsoverlay.sock")]) {
        const r = await postPlugin(sock, "/Plugin.Activate");
        expect(r.status, sock).toBe(200);
        expect(r.body, sock).toEqual({ Implements: ["NetworkDriver", "IpamDriver"] });
      }
    });

    it("creates and removes a network with `docker network create -d tsoverlay`", async () => {
      const name = `found-${host.name}`;
      const c = await docker(host, ["network", "create", "-d", "tsoverlay", "--ipam-driver", "tsoverlay", name]);
      expect(c.code, c.stderr).toBe(0);
      const driver = await docker(host, ["network", "inspect", "-f", "{{.Driver}}", name]);
      expect(driver.stdout.trim()).toBe("tsoverlay");
      const rm = await docker(host, ["network", "rm", name]);
      expect(rm.code, rm.stderr).toBe(0);
      const gone = await docker(host, ["network", "inspect", name]);
      expect(gone.code).not.toBe(0);
    });

    it("runs a test-image container that reaches the outside server", async () => {
      // Debian's busybox-static 1.35 wget segfaults with -T: bound it with `timeout` instead.
      const r = await docker(host, ["run", "--rm", lab.testImage, "timeout", "10", "wget", "-qO-", `http://${lab.outside.addr}/`]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain("hello from outside");
    });
  });

  it("serves the plugin from a real registry (Debian's docker-registry) on the outside server", async () => {
    const version = (JSON.parse(readFileSync("package.json", "utf8")) as { version: string }).version;
    const tags = await inNetns(lab.outside.netns, ["curl", "-sf", `http://${lab.registry}/v2/tsoverlay/tags/list`]);
    expect(tags.code, tags.stderr).toBe(0);
    expect((JSON.parse(tags.stdout) as { tags: string[] }).tags).toContain(version);
    // A plugin manifest: its config is the plugin's config.json (the registry keeps it as a blob).
    const manifest = await inNetns(lab.outside.netns, [
      "curl",
      "-sf",
      "-H",
      "Accept: application/vnd.docker.distribution.manifest.v2+json",
      `http://${lab.registry}/v2/tsoverlay/manifests/${version}`,
    ]);
    expect(manifest.code, manifest.stderr).toBe(0);
    expect((JSON.parse(manifest.stdout) as { config: { mediaType: string } }).config.mediaType).toBe("application/vnd.docker.plugin.v1+json");
  });

  it("has a 3-server Consul cluster with a leader", async () => {
    const h1 = lab.hosts[0]!;
    const raft = await consulHttp(h1, "GET", "/v1/operator/raft/configuration");
    expect(raft.code, raft.stderr + raft.stdout).toBe(0);
    const servers = (JSON.parse(raft.stdout) as { Servers: { Node: string; Leader: boolean; Voter: boolean }[] }).Servers;
    expect(servers.map((s) => s.Node).sort()).toEqual(["c1", "c2", "c3"]);
    expect(servers.filter((s) => s.Leader)).toHaveLength(1);
    const members = await run("bash", [LAB_SCRIPT, "consul", "members"]);
    expect(members.stdout.split("\n").filter((l) => /\salive\s/.test(l)).length, members.stderr).toBe(3 + lab.hosts.length);
  });

  it("runs Consul as production does: TLS only, a client certificate required, ACLs that deny by default", async () => {
    const h1 = lab.hosts[0]!;
    const api = lab.consulApi;
    // No plain HTTP port at all.
    expect((await inNetns(h1.netns, ["curl", "-sS", "-m", "5", "http://127.0.0.1:8500/v1/status/leader"])).code).not.toBe(0);
    // TLS without a client certificate of the lab's CA is refused.
    expect((await inNetns(h1.netns, ["curl", "-sS", "-m", "5", "--cacert", api.ca, `${api.url}/v1/status/leader`])).code).not.toBe(0);
    const anonymous = await inNetns(h1.netns, [
      "curl",
      "-sS",
      "-m",
      "5",
      "--cacert",
      api.ca,
      "--cert",
      api.cert,
      "--key",
      api.key,
      `${api.url}/v1/status/leader`,
    ]);
    expect(anonymous.code, anonymous.stderr).toBe(0);
    // No token: no write (default_policy = deny).
    const noToken = await inNetns(h1.netns, [
      "curl",
      "-sS",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "-X",
      "PUT",
      "-d",
      "x",
      "--cacert",
      api.ca,
      "--cert",
      api.cert,
      "--key",
      api.key,
      `${api.url}/v1/kv/tsoverlay/v1/lab-check`,
    ]);
    expect(noToken.stdout).toBe("403");
  });

  it("reads from host 2's Consul view a key written through host 1's", async () => {
    const [h1, h2] = [lab.hosts[0]!, lab.hosts[1]!];
    const value = `written-by-h1-${Date.now()}`;
    const put = await consulHttp(h1, "PUT", "/v1/kv/tsoverlay-lab-check", value);
    expect(put.code, put.stderr).toBe(0);
    const get = await consulHttp(h2, "GET", "/v1/kv/tsoverlay-lab-check?raw");
    expect(get.stdout).toBe(value);
    await consulHttp(h1, "DELETE", "/v1/kv/tsoverlay-lab-check");
  });
});
