#!/usr/bin/env bash
# What a fresh machine must have before the demo, the tests or a plugin build
# start: root, Node >= 20 and Go >= 1.23 (the lab builds Consul, Docker and runc
# with it, GOTOOLCHAIN=local, so an older Go fails only deep inside a build).
# Debian 12 ships Node 18 and Go 1.19, so both are commonly too old. Each
# problem is one line with its fix; the exit status is the number of problems.
#
#   bash scripts/preflight.sh            root, Node, Go
#   bash scripts/preflight.sh --no-root  the same without the root check
set -uo pipefail

NODE_MIN=20
GO_MIN=1.23
need_root=1
[ "${1:-}" = "--no-root" ] && need_root=0

problems=0
problem() {
  printf '[tsoverlay] preflight: %s\n' "$*" >&2
  problems=$((problems + 1))
}

# Whether version $1 (MAJOR.MINOR…) is at least $2 (MAJOR.MINOR).
at_least() {
  local have_major=${1%%.*} rest=${1#*.} want_major=${2%%.*} want_minor=${2#*.} have_minor
  have_minor=${rest%%.*}
  [[ $have_major =~ ^[0-9]+$ && $have_minor =~ ^[0-9]+$ ]] || return 1
  ((have_major > want_major || (have_major == want_major && have_minor >= want_minor)))
}

if [ "$need_root" = 1 ] && [ "$(id -u)" != 0 ]; then
  problem "not root: the lab drives namespaces, dockerd and Consul — run it with sudo"
fi

node_fix="install Node $NODE_MIN or newer (Debian 13's nodejs, or NodeSource's nodejs $NODE_MIN.x for Debian 12) and put it first on PATH"
if ! command -v node >/dev/null 2>&1; then
  problem "Node not found: $node_fix"
else
  node_version=$(node -p 'process.versions.node' 2>/dev/null || true)
  at_least "$node_version.0" "$NODE_MIN.0" || problem "Node ${node_version:-of unknown version} is too old (need >= $NODE_MIN): $node_fix"
fi

go_fix="install Go $GO_MIN or newer (bookworm-backports' golang-$GO_MIN with /usr/lib/go-$GO_MIN/bin on PATH, or Debian 13's golang-go)"
if ! command -v go >/dev/null 2>&1; then
  problem "Go not found (it builds Consul, Docker and runc for the lab): $go_fix"
else
  go_version=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || true)
  go_version=${go_version#go}
  at_least "$go_version" "$GO_MIN" || problem "Go ${go_version:-of unknown version} is too old (need >= $GO_MIN): $go_fix"
fi

exit "$problems"
