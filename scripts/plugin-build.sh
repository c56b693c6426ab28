#!/usr/bin/env bash
# Builds the managed plugin: compiles the TypeScript, builds the Dockerfile
# on the daemon at $DOCKER_HOST, and lays out OUT_DIR/{config.json,rootfs/}
# for `docker plugin create`.
# usage: DOCKER_HOST=unix:///… scripts/plugin-build.sh OUT_DIR
set -euo pipefail
. "$(dirname "$0")/common.sh"
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: plugin-build.sh OUT_DIR}

"$repo/scripts/base-image.sh"

(cd "$repo" && npm run --silent build)
ctx=$(mktemp -d /tmp/tso-plugin-ctx.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
cp -r "$repo/package.json" "$repo/package-lock.json" "$repo/dist" "$repo/Dockerfile" "$ctx/"
cp -r "$repo/node_modules" "$ctx/"
(cd "$ctx" && npm prune --omit=dev --no-audit --no-fund >/dev/null 2>&1)

tag=tsoverlay/plugin-rootfs:build
dkr build -q -t "$tag" "$ctx" >/dev/null
cid=$(dkr create "$tag")
rm -rf "$out"; mkdir -p "$out/rootfs"
dkr export "$cid" | tar -C "$out/rootfs" -x
dkr rm "$cid" >/dev/null
cp "$repo/config.json" "$out/config.json"
say "plugin laid out in $out"
