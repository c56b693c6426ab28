/**
 * A rolling upgrade from the previous release (issue 19): h1 runs the last
 * release of store layout revision 1, built from its own sources and
 * installed from the lab's registry, beside h2 and h3 on this one; their
 * containers reach each other both ways. Then h1 is upgraded the documented
 * way (disable → upgrade → enable) and the layout is migrated once: the
 * `layout` marker is not written again, and what the hosts wrote at the old
 * locations for h1's sake goes.
 *
 * During the rolling upgrade the hosts' tokens get write on the old shared
 * prefixes (README: "Upgrading from the previous layout"); the lab's
 * per-host policies are restored afterwards, and h1 gets back the plugin the
 * lab installed, with its settings.
 *
 * The previous release is built from git history: in a clone without it
 * (shallow) this file is skipped, and says so.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { consulHttp, consulKeys, docker, dockerOk, readLab, run, waitFor, type LabHost } from "./support/lab.js";
import { containerIp, createNetworkOn, ping, removeContainers, removeNetworkOn, startContainer } from "./support/overlay.js";
import { pluginStatus } from "./support/publish.js";
import { RENAMES } from "../../plugin/compose/setting-renames.js";

/** The last release before store layout revision 2 (the merge that brought it is its child). */
const PREVIOUS_RELEASE = "ad2813f15f624a2c8c0f714aef10a903c16bd72a";
const PREVIOUS_TAG = `previous-${PREVIOUS_RELEASE.slice(0, 12)}`;
const ROOT = new URL("../../", import.meta.url).pathname;
const lab = readLab();
const [h1, h2, h3] = [lab.hosts[0]!, lab.hosts[1]!, lab.hosts[2]];
const NET = "roll";
const SUBNET = "10.68.0.0/24";
const ENC_NET = "roll-enc";
const ENC_SUBNET = "10.69.0.0/24";
const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;

const hasHistory = (() => {
  try {
    execFileSync("git", ["-C", ROOT, "cat-file", "-e", `${PREVIOUS_RELEASE}^{commit}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();
if (!hasHistory) console.warn(`rolling-upgrade: skipped, this clone lacks the previous release's commit ${PREVIOUS_RELEASE} (shallow?)`);

/** The previous layout's shared prefixes, which its hosts write (README: "Upgrading from the previous layout"). */
const OLD_PREFIXES = ["hosts/", "endpoints/", "answers/"];
const OLD_RULES = OLD_PREFIXES.map((p) => `key_prefix "tsoverlay/v1/${p}" { policy = "write" }`).join("\n");

interface Policy {
  ID: string;
  Name: string;
  Rules: string;
}

async function consulJson<T>(method: string, path: string, body?: unknown): Promise<T> {
  const r = await consulHttp(h1, method, path, body === undefined ? undefined : JSON.stringify(body));
  if (r.code !== 0) throw new Error(`consul ${method} ${path} failed: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** The tsoverlay ACL policies of the lab's hosts (one per host, README's per-host policy). */
async function hostPolicies(): Promise<Policy[]> {
  const list = await consulJson<{ ID: string; Name: string }[]>("GET", "/v1/acl/policies");
  return Promise.all(list.filter((p) => p.Name.startsWith("tsoverlay-")).map((p) => consulJson<Policy>("GET", `/v1/acl/policy/${p.ID}`)));
}

async function setRules(p: Policy, rules: string): Promise<void> {
  await consulJson("PUT", `/v1/acl/policy/${p.ID}`, { Name: p.Name, Rules: rules });
}

/** A key write with a host's own token (its plugin's). */
async function writeAs(host: LabHost, key: string, value: string): Promise<boolean> {
  const r = await consulHttp(host, "PUT", `/v1/kv/${key}`, value, { tokenFile: join(host.consulDir, "token") });
  return r.code === 0 && r.stdout.trim() === "true";
}

interface Installed {
  ref: string;
  env: string[];
  mounts: { Name: string; Source: string | null; Settable: string[] | null }[];
}

async function installed(host: LabHost): Promise<Installed> {
  const [ref, env, mounts] = (
    await dockerOk(host, ["plugin", "inspect", "-f", "{{.PluginReference}}\n{{json .Settings.Env}}\n{{json .Settings.Mounts}}", lab.pluginName])
  ).split("\n");
  return { ref: ref!, env: JSON.parse(env!) as string[], mounts: JSON.parse(mounts!) as Installed["mounts"] };
}

/** A setting as a plugin that declares `declared` takes it: as it is. */
const asIs = (name: string, value: string, declared: Set<string>): string | undefined => (declared.has(name) ? `${name}=${value}` : undefined);

/** A setting as the previous release spelled it (setting-renames.ts read the other way); undefined if it had none. */
function previousSpelling(name: string, value: string, declared: Set<string>): string | undefined {
  const r = RENAMES.find((x) => x.now === name && declared.has(x.old));
  if (r === undefined) return asIs(name, value, declared);
  if (r.old === "TSOVERLAY_RECONCILE_MS") return `${r.old}=${Math.round(Number(value) * 1000)}`;
  if (r.old === "TSOVERLAY_DNS") return `${r.old}=${/^(1|t|true)$/i.test(value) ? "on" : "off"}`;
  return `${r.old}=${value}`;
}

/** KEY=VALUE settings of `from` that a plugin whose config.json declares `names` (env and mounts) takes, in its spelling. */
function settingsFor(from: Installed, names: { env: Set<string>; mounts: Set<string> }, spell = asIs): string[] {
  const env = from.env.flatMap((kv) => {
    const [name, value] = [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)];
    const spelled = value === "" ? undefined : spell(name, value, names.env);
    return spelled === undefined ? [] : [spelled];
  });
  const mounts = from.mounts.filter((m) => m.Settable?.includes("source") && names.mounts.has(m.Name) && m.Source).map((m) => `${m.Name}.source=${m.Source}`);
  return [...env, ...mounts];
}

/** Installs `ref` afresh on a host with `settings`, as scripts/plugin-install.sh does. */
async function reinstall(host: LabHost, ref: string, settings: string[]): Promise<void> {
  const r = await run(join(ROOT, "scripts/plugin-install.sh"), [ref, ...settings], {
    timeoutMs: 300_000,
    env: { DOCKER_HOST: `unix://${host.dockerSock}`, PLUGIN_NAME: lab.pluginName },
  });
  if (r.code !== 0) throw new Error(`plugin-install.sh ${ref} on ${host.name} failed: ${r.stderr}`);
}

async function waitReady(host: LabHost, want?: string): Promise<void> {
  await waitFor(
    `the plugin on ${host.name} to be ready${want === undefined ? "" : ` at ${want}`}`,
    async () => {
      const s = (await pluginStatus(host).catch(() => undefined)) as { ready?: boolean; version?: string } | undefined;
      return s?.ready === true && (want === undefined || s.version === want) ? true : undefined;
    },
    90_000,
    100,
  );
}

interface KvEntry {
  Key: string;
  ModifyIndex: number;
  CreateIndex: number;
}

async function marker(): Promise<KvEntry | undefined> {
  const r = await consulHttp(h1, "GET", "/v1/kv/tsoverlay/v1/layout");
  return r.code === 0 ? (JSON.parse(r.stdout) as KvEntry[])[0] : undefined;
}

async function oldLocationKeys(): Promise<string[]> {
  return (await Promise.all(OLD_PREFIXES.map((p) => consulKeys(h1, `tsoverlay/v1/${p}`)))).flat();
}

describe.skipIf(!hasHistory)("a rolling upgrade from the previous release (store layout revision 1)", () => {
  let previousRef = "";
  let labInstall: Installed | undefined;
  let policies: Policy[] = [];
  let layoutBefore: KvEntry | undefined;
  const src = mkdtempSync(join(tmpdir(), "tso-previous-src-"));
  const out = mkdtempSync(join(tmpdir(), "tso-previous-plugin-"));

  beforeAll(async () => {
    // The previous release from its own sources and lockfile, pushed to the lab's registry under a tag of its own.
    execFileSync("sh", ["-c", `git -C "${ROOT}" archive ${PREVIOUS_RELEASE} | tar -x -C "${src}"`]);
    const env = { DOCKER_HOST: `unix://${h1.dockerSock}` };
    const built = await run(join(ROOT, "scripts/plugin-build.sh"), [out, src], { timeoutMs: 900_000, env });
    expect(built.code, built.stderr).toBe(0);
    const pushed = await run(join(ROOT, "scripts/plugin-push.sh"), [out, `${lab.registry}/tsoverlay`, PREVIOUS_TAG], { timeoutMs: 300_000, env });
    expect(pushed.code, pushed.stderr).toBe(0);
    previousRef = pushed.stdout.trim();

    layoutBefore = await marker();
    labInstall = await installed(h1);
    // Write on the old shared prefixes while hosts of the previous layout run (README).
    policies = await hostPolicies();
    expect(policies.length).toBe(lab.hosts.length);
    for (const p of policies) await setRules(p, `${p.Rules}\n${OLD_RULES}\n`);
    const probe = `tsoverlay/v1/hosts/rolling-probe-${process.pid}`;
    for (const h of lab.hosts)
      await waitFor(`${h.name}'s token to write ${probe}`, async () => ((await writeAs(h, probe, "x")) ? true : undefined), 60_000, 500);
    await consulHttp(h1, "DELETE", `/v1/kv/${probe}`);
  }, 1_200_000);

  afterAll(async () => {
    try {
      await removeContainers(h1, ["roll-a", "roll-c", "roll-e"]);
      await removeContainers(h2, ["roll-b"]);
      await removeNetworkOn([h1, h2], NET).catch(() => undefined);
      await removeNetworkOn([h1, h2], ENC_NET).catch(() => undefined);
      // h1 back on what the lab installed, with its settings, whatever happened above.
      if (labInstall !== undefined) {
        const now = await installed(h1).catch(() => undefined);
        if (now?.ref !== labInstall.ref || now.env.join() !== labInstall.env.join()) {
          const names = { env: new Set(labInstall.env.map((kv) => kv.slice(0, kv.indexOf("=")))), mounts: new Set(labInstall.mounts.map((m) => m.Name)) };
          await reinstall(h1, labInstall.ref, settingsFor(labInstall, names));
        }
        await waitReady(h1, version);
      }
    } finally {
      for (const p of policies) await setRules(p, p.Rules);
      if (previousRef !== "") await docker(h1, ["plugin", "rm", "-f", previousRef]);
      rmSync(src, { recursive: true, force: true });
      rmSync(out, { recursive: true, force: true });
    }
  }, 600_000);

  it("h1 on the previous release and h2 on this one reach each other both ways; upgrading h1 migrates the layout once", async () => {
    expect(layoutBefore, "this lab's hosts wrote the layout marker when they started").toBeDefined();

    // h1 goes back to the previous release, with those of the lab's settings it knows.
    const previousConfig = JSON.parse(readFileSync(join(src, "config.json"), "utf8")) as { env: { name: string }[]; mounts: { name: string }[] };
    const names = { env: new Set(previousConfig.env.map((e) => e.name)), mounts: new Set(previousConfig.mounts.map((m) => m.name)) };
    await reinstall(h1, previousRef, settingsFor(labInstall!, names, previousSpelling));
    await waitReady(h1);
    await waitFor(
      "h1's liveness at the previous layout's location",
      async () => ((await consulKeys(h1, `tsoverlay/v1/hosts/${h1.addr}`)).length > 0 ? true : undefined),
      30_000,
      200,
    );

    // Containers on both sides, each reaching the other.
    await createNetworkOn([h2, h1], NET, SUBNET);
    const a = await startContainer(lab, h1, "roll-a", NET);
    const b = await startContainer(lab, h2, "roll-b", NET);
    expect(await waitFor("h1's container (previous release) to reach h2's", async () => ((await ping(h1, "roll-a", b)) ? true : undefined), 30_000, 200)).toBe(
      true,
    );
    expect(await waitFor("h2's container to reach h1's (previous release)", async () => ((await ping(h2, "roll-b", a)) ? true : undefined), 30_000, 200)).toBe(
      true,
    );
    // What each side read: h1's endpoint at the old location (written by the previous release), h2's copy of its own there too.
    const oldEndpoints = await consulKeys(h1, "tsoverlay/v1/endpoints/");
    expect(oldEndpoints.length, oldEndpoints.join(" ")).toBeGreaterThanOrEqual(2);

    // The documented upgrade of h1 to this release (README: Upgrading and changing settings with containers running).
    const mounts = (await installed(h1)).mounts.filter((m) => m.Settable?.includes("source") && m.Source).map((m) => `${m.Name}.source=${m.Source}`);
    await dockerOk(h1, ["plugin", "disable", "-f", lab.pluginName], { timeoutMs: 60_000 });
    await dockerOk(h1, ["plugin", "upgrade", "--grant-all-permissions", "--skip-remote-check", lab.pluginName, labInstall!.ref], { timeoutMs: 300_000 });
    await dockerOk(h1, ["plugin", "set", lab.pluginName, ...mounts]);
    await dockerOk(h1, ["plugin", "enable", lab.pluginName], { timeoutMs: 60_000 });
    await waitReady(h1, version);

    // `docker plugin upgrade` keeps the devices of the release first installed: this one's /dev/net/tun (wireguard-go,
    // this lab's kernel has no WireGuard) is not given. doctor names it with the fix, and an encrypted network says so.
    const doctor = await run("curl", ["-sS", "--max-time", "20", "--unix-socket", `${h1.pluginsDir}/tsoverlay.sock`, "http://plugin/tsoverlay/doctor"]);
    const findings = JSON.parse(doctor.stdout) as { check: string; status: string; detail: string; fix?: string }[];
    const tun = findings.find((f) => f.check === "encryption" && f.status === "problem");
    expect(tun?.detail, doctor.stdout).toMatch(/no \/dev\/net\/tun/);
    expect(tun?.fix).toMatch(/reinstall the plugin/);
    await dockerOk(h1, ["network", "create", "-d", "tsoverlay", "--ipam-driver", "tsoverlay", "-o", "encrypted", "--subnet", ENC_SUBNET, ENC_NET]);
    const enc = await docker(h1, ["run", "-d", "--name", "roll-e", "--network", ENC_NET, lab.testImage, "sleep", "60"]);
    expect(enc.code).not.toBe(0);
    expect(enc.stderr).toMatch(/has no \/dev\/net\/tun here: reinstall the plugin/);
    await removeContainers(h1, ["roll-e"]);
    await removeNetworkOn([h1], ENC_NET);

    // Migrated once: the marker stands as it was, and nothing is left at the old locations.
    const left = await waitFor(
      "the old locations to be emptied",
      async () => {
        const keys = await oldLocationKeys();
        return keys.length === 0 ? keys : undefined;
      },
      60_000,
      500,
    ).catch(async () => oldLocationKeys());
    expect(left).toEqual([]);
    const layoutAfter = await marker();
    expect(layoutAfter?.ModifyIndex).toBe(layoutBefore!.ModifyIndex);
    expect((await consulKeys(h1, `tsoverlay/v1/by-host/${h1.addr}/alive`)).length).toBe(1);

    // After the upgrade, a new container on h1 and h2's reach each other.
    const c = await startContainer(lab, h1, "roll-c", NET);
    expect(await containerIp(h1, "roll-c", NET)).toBe(c);
    expect(await waitFor("h1's new container to reach h2's", async () => ((await ping(h1, "roll-c", b)) ? true : undefined), 30_000, 200)).toBe(true);
    expect(await waitFor("h2's container to reach h1's new one", async () => ((await ping(h2, "roll-b", c)) ? true : undefined), 30_000, 200)).toBe(true);
    if (h3 !== undefined) expect((await consulKeys(h1, `tsoverlay/v1/by-host/${h3.addr}/alive`)).length).toBe(1);
  }, 600_000);
});
