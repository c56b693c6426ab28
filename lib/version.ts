/**
 * This tree's version (package.json's), as the plugin and the `tsoverlay`
 * command report it. Found by walking up from this module: it runs from
 * lib/ (tests), dist/lib/ (the build) and the plugin image's copy of dist/.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

function readVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = path.join(dir, "package.json");
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version?: string };
      if (pkg.name === "tsoverlay" && typeof pkg.version === "string") return pkg.version;
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no tsoverlay package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

export const VERSION = readVersion();
