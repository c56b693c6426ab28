#!/usr/bin/env bash
# Makes the plugin's base image (the Dockerfile's FROM) without a registry:
# a minimal Debian rootfs from debootstrap plus this machine's Node runtime,
# cached as a tarball, then `docker import`ed into the daemon at $DOCKER_HOST.
# Prints the image's tag on stdout (plugin-build.sh passes it to the Dockerfile).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
. "$(dirname "$0")/common.sh"

node_bin=$(command -v node) || fail "node not found"
node_ver=$("$node_bin" --version)
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
  install -m 0755 "$node_bin" "$work/rootfs/usr/local/bin/node"
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/usr/share/doc" "$work/rootfs/usr/share/man"
  mkdir -p "$TSO_CACHE"
  tar -C "$work/rootfs" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
say "importing $image"
dkr import "$tarball" "$image" >/dev/null
echo "$image"
