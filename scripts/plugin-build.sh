#!/usr/bin/env bash
# Builds the managed plugin: compiles the TypeScript, builds the Dockerfile
# on the daemon at $DOCKER_HOST, and lays out OUT_DIR/{config.json,rootfs/}
# for `docker plugin create`. Leaves the image tsoverlay/cli on that daemon.
# SOURCE_DIR (default: this checkout) is another release's source tree, e.g.
# `git archive REV | tar -x -C DIR`: its package files, compiled code and
# config.json go in, with this checkout's base image, Node and wireguard-go
# (how the rolling-upgrade test gets the previous release).
# usage: DOCKER_HOST=unix:///… scripts/plugin-build.sh OUT_DIR [SOURCE_DIR]
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
. "$(dirname "$0")/common.sh"
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: plugin-build.sh OUT_DIR [SOURCE_DIR]}
src=$(cd "${2:-$repo}" && pwd)
{ [ -f "$src/package.json" ] && [ -f "$src/config.json" ]; } || fail "plugin-build: $src is not a tsoverlay source tree (package.json, config.json)"
# OUT_DIR is emptied below: only when it is absent, empty, or a plugin laid
# out by an earlier run (config.json and rootfs/, nothing else).
if [ -e "$out" ]; then
  [ -d "$out" ] || fail "plugin-build: $out exists and is not a directory"
  extra=$(find "$out" -mindepth 1 -maxdepth 1 ! -name config.json ! -name rootfs -printf '%f ')
  [ -z "$extra" ] || fail "plugin-build: refusing to empty $out: it holds more than a plugin ($extra)"
fi

# The base image's tag changes with its inputs (common.sh): the Dockerfile gets it as a build arg.
base_image=$("$repo/scripts/base-image.sh")
# wireguard-go, built once and cached (a failure stops here, before the npm build).
wireguard_go=$("$repo/scripts/wireguard-go-build.sh")

if [ "$src" != "$repo" ] && [ ! -d "$src/node_modules" ]; then
  # Its own lockfile, development dependencies included (the compiler); `npm install` as .ci/run does (npm ci refuses older locks here).
  (cd "$src" && npm install --no-audit --no-fund >"$src/npm-install.log" 2>&1) || { tail -20 "$src/npm-install.log" >&2; fail "plugin-build: npm install in $src failed"; }
fi
(cd "$src" && npm run --silent build)
ctx=$(mktemp -d /tmp/tso-plugin-ctx.XXXXXX)
cid=
trap 'rm -rf "$ctx"; [ -z "$cid" ] || dkr rm -f "$cid" >/dev/null 2>&1 || true' EXIT
cp -r "$src/package.json" "$src/package-lock.json" "$src/dist" "$ctx/"
cp "$repo/Dockerfile" "$ctx/"
# Encrypted networks on kernels without WireGuard (README: Encrypted networks):
# 0755 here, as the Dockerfile's COPY keeps the mode (no --chmod without BuildKit).
install -m 0755 "$wireguard_go" "$ctx/wireguard-go"
# The runtime dependencies exactly as the lockfile pins them, production only (not this checkout's node_modules).
(cd "$ctx" && npm ci --omit=dev --no-audit --no-fund >"$ctx/npm.log" 2>&1) || { tail -20 "$ctx/npm.log" >&2; fail "npm ci --omit=dev failed"; }
rm -f "$ctx/npm.log"

tag=tsoverlay/plugin-rootfs:build
dkr build -q -t "$tag" --build-arg "BASE_IMAGE=$base_image" "$ctx" >/dev/null
# The same files as an image whose entry is the `tsoverlay` CLI, for hosts without Node:
#   docker run --rm -v /run/docker/plugins:/run/docker/plugins:ro tsoverlay/cli ps
printf 'FROM %s\nENTRYPOINT ["/usr/local/bin/node", "/opt/tsoverlay/dist/cli/main.js"]\n' "$tag" | dkr build -q -t tsoverlay/cli - >/dev/null
cid=$(dkr create "$tag")
rm -rf "$out"; mkdir -p "$out/rootfs"
dkr export "$cid" | tar -C "$out/rootfs" -x
dkr rm "$cid" >/dev/null
cid=
cp "$src/config.json" "$out/config.json"
# Every file dated the commit's time (or SOURCE_DATE_EPOCH): two builds of one commit lay out the same
# tree, so `docker plugin create` makes the same layer of it (README: Using the plugin on a Docker host).
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$src" log -1 --format=%ct 2>/dev/null || echo 0)}
find "$out" -exec touch -h -d "@$epoch" {} +
say "plugin laid out in $out"
