# Helpers shared by the packaging scripts. Sourced, not run.
TSO_CACHE=${TSO_CACHE:-/var/cache/tsoverlay}
BASE_IMAGE=tsoverlay/base:bookworm-node20-conntrack
DOCKER_CLI=${DOCKER_CLI:-/usr/bin/docker}
[ -x "$DOCKER_CLI" ] || DOCKER_CLI=docker
say() { printf '[tsoverlay] %s\n' "$*" >&2; }
fail() { printf '[tsoverlay] error: %s\n' "$*" >&2; exit 1; }
# `docker` against the daemon named by $DOCKER_HOST (or the default one).
dkr() { DOCKER_BUILDKIT=0 "$DOCKER_CLI" "$@"; }
