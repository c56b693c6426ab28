import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, it } from "vitest";

// The layer rules of .dependency-cruiser.cjs, run by `npm run check:deps` on the
// real tree, shown to bite: each case writes a small tree that is clean but for
// one import running the wrong way, and runs the repo's own configuration on it.
const REPO = resolve(import.meta.dirname, "../..");
const DEPCRUISE = join(REPO, "node_modules/.bin/depcruise");
const run = promisify(execFile);

/** A clean miniature of the product: every layer, both process entries, each import the right way. */
const CLEAN: Record<string, string> = {
  "plugin/main.ts": 'import "./compose/host.js";\nimport "./routes.js";\n',
  "plugin/routes.ts": 'import "../driver/driver.js";\n',
  "plugin/compose/host.ts": 'import "../../driver/driver.js";\nimport "../../driver/store/consul.js";\nimport "../../proxy/manager.js";\n',
  "driver/driver.ts": 'import "./contracts/store.js";\nimport "../lib/result.js";\n',
  "driver/contracts/store.ts": "export interface Store { get(): void }\n",
  "driver/store/consul.ts": 'import type { Store } from "../contracts/store.js";\nexport const s: Store | undefined = undefined;\n',
  "proxy/manager.ts": 'import "../lib/result.js";\n',
  "proxy/accept-worker.ts": 'import "./manager.js";\n',
  "lib/result.ts": "export const ok = true;\n",
  "test/support/fake.ts": "export const fake = 1;\n",
};

const trees: string[] = [];
afterAll(() => {
  for (const t of trees.splice(0)) rmSync(t, { recursive: true, force: true });
});

async function violations(changes: Record<string, string>): Promise<string[]> {
  const root = mkdtempSync(join(tmpdir(), "tso-layers-"));
  trees.push(root);
  for (const [file, text] of Object.entries({ ...CLEAN, ...changes })) {
    mkdirSync(dirname(join(root, file)), { recursive: true });
    writeFileSync(join(root, file), text);
  }
  writeFileSync(join(root, "tsconfig.check.json"), JSON.stringify({ compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", strict: true } }));
  const args = ["plugin", "driver", "proxy", "lib", "--config", join(REPO, ".dependency-cruiser.cjs"), "--output-type", "json"];
  // depcruise exits non-zero when it finds violations; the JSON is on stdout either way.
  const out = await run(DEPCRUISE, args, { cwd: root }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? "" }));
  const result = JSON.parse(out.stdout) as { summary: { violations: { rule: { name: string }; from: string; to: string }[] } };
  return result.summary.violations.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`);
}

// Each depcruise run (1–3 s alone on a busy 2-core machine) has a tree of its own, so all nine go side by side.
describe.concurrent("the layer rules (npm run check:deps)", { timeout: 60_000 }, () => {
  it("pass a tree whose imports all run the right way", async ({ expect }) => {
    expect(await violations({})).toEqual([]);
  });

  it("fail an import from an adapter into the edge", async ({ expect }) => {
    expect(await violations({ "plugin/routes.ts": 'import "../driver/driver.js";\nimport "../driver/store/consul.js";\n' })).toEqual([
      "edge-never-reaches-adapters: plugin/routes.ts → driver/store/consul.ts",
    ]);
  });

  it("fail the edge reaching the composition, and the composition reaching the edge", async ({ expect }) => {
    const [edge, composition] = await Promise.all([
      violations({ "plugin/routes.ts": 'import "../driver/driver.js";\nimport "./compose/host.js";\n' }),
      violations({ "plugin/compose/host.ts": CLEAN["plugin/compose/host.ts"] + 'import "../routes.js";\n' }),
    ]);
    expect(edge).toContain("only-the-process-entry-composes: plugin/routes.ts → plugin/compose/host.ts");
    expect(composition).toEqual(["composition-is-not-edge: plugin/compose/host.ts → plugin/routes.ts"]);
  });

  it("fail an import from proxy/ into the domain", async ({ expect }) => {
    expect(await violations({ "proxy/manager.ts": 'import "../lib/result.js";\nimport "../driver/driver.js";\n' })).toEqual([
      "proxy-is-a-library: proxy/manager.ts → driver/driver.ts",
    ]);
  });

  it("fail the domain reaching an adapter, and an adapter reaching past the domain's contracts", async ({ expect }) => {
    const [domain, adapter] = await Promise.all([
      violations({ "driver/driver.ts": 'import "./contracts/store.js";\nimport "./store/consul.js";\n' }),
      violations({ "driver/store/consul.ts": 'import "../driver.js";\n' }),
    ]);
    expect(domain).toContain("domain-knows-no-edge-no-adapter: driver/driver.ts → driver/store/consul.ts");
    expect(adapter).toEqual(["adapters-know-only-domain-contracts: driver/store/consul.ts → driver/driver.ts"]);
  });

  it("fail a cycle, product code importing test code, and a product file only tests reach", async ({ expect }) => {
    const [cycle, testCode, orphan] = await Promise.all([
      violations({
        "driver/driver.ts": 'import "./contracts/store.js";\nimport "./peers.js";\n',
        "driver/peers.ts": 'import "./driver.js";\n',
      }),
      violations({ "plugin/compose/host.ts": CLEAN["plugin/compose/host.ts"] + 'import "../../test/support/fake.js";\n' }),
      violations({ "driver/orphan.ts": "export const unused = 1;\n" }),
    ]);
    expect(
      cycle.filter((v) => v.startsWith("no-circular:")),
      cycle.join("\n"),
    ).toEqual(["no-circular: driver/driver.ts → driver/peers.ts"]);
    expect(testCode).toEqual(["product-imports-no-test-code: plugin/compose/host.ts → test/support/fake.ts"]);
    expect(orphan).toEqual(["product-reachable-from-an-entry: driver/orphan.ts → driver/orphan.ts"]);
  });
});
