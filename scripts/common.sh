# shellcheck shell=bash
# Helpers shared by the packaging scripts. Sourced, not run.
# (The lab has its own, test/lab/lib/common.sh: log/die/dk there, say/fail/dkr here.)
TSO_CACHE=${TSO_CACHE:-/var/cache/tsoverlay}
DOCKER_CLI=${DOCKER_CLI:-/usr/bin/docker}
[ -x "$DOCKER_CLI" ] || DOCKER_CLI=docker
say() { printf '[tsoverlay] %s\n' "$*" >&2; }
fail() { printf '[tsoverlay] error: %s\n' "$*" >&2; exit 1; }
# `docker` against the daemon named by $DOCKER_HOST (or the default one).
dkr() { DOCKER_BUILDKIT=0 "$DOCKER_CLI" "$@"; }

# The plugin's base image (base-image.sh, the Dockerfile's FROM): Debian
# $BASE_SUITE with $BASE_PACKAGES, plus the Node runtime of scripts/plugin-node. Its cached
# tarball and its tag are both named from these inputs and the Node version, so
# changing any of them makes a new image instead of reusing an old one.
BASE_SUITE=bookworm
# wireguard-tools: `wg`, which configures the kernel's WireGuard and wireguard-go alike.
BASE_PACKAGES=iptables,iproute2,conntrack,wireguard-tools
# The base tarball's file name (under $TSO_CACHE) for Node version $1 (e.g. v20.20.2).
base_tarball_name() { echo "base-$BASE_SUITE-node-$1-${BASE_PACKAGES//,/-}.tar"; }
# The base image's tag for Node version $1: tsoverlay/base:bookworm-node20-<hash>,
# the hash (12 hex digits of SHA-256) taken over the tarball's name.
base_image_tag() {
  local major=${1#v} hash
  major=${major%%.*}
  hash=$(base_tarball_name "$1" | sha256sum | cut -c1-12)
  echo "tsoverlay/base:$BASE_SUITE-node$major-$hash"
}
