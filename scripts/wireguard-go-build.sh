#!/usr/bin/env bash
# Builds wireguard-go, WireGuard's official userspace implementation, from the
# Go module proxy (no other download is needed), for the plugin image: hosts
# whose kernel has no WireGuard run encrypted networks with it. Cached under
# $TSO_CACHE by version; prints the binary's path on stdout.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
. "$(dirname "$0")/common.sh"

module=golang.zx2c4.com/wireguard
version=${WIREGUARD_GO_VERSION:-v0.0.0-20260522210424-ecfc5a8d5446}
bin="$TSO_CACHE/wireguard-go-$version"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

command -v go >/dev/null || fail "Go not found: needed to build wireguard-go (scripts/preflight.sh names the version)"
command -v jq >/dev/null || fail "jq not found (apt-get install jq)"
say "building wireguard-go $version from the Go module proxy (first run only)"
work=$(mktemp -d /tmp/tso-wireguard-go.XXXXXX)
trap 'rm -rf "$work"' EXIT
# GOTOOLCHAIN=local: build with the Go that is installed, never fetch another one.
gobuild() { env GOFLAGS=-buildvcs=false GOTOOLCHAIN=local GO111MODULE=on CGO_ENABLED=0 "$@"; }
dir=$(cd "$work" && gobuild go mod download -json "$module@$version" | jq -r .Dir)
[ -d "$dir" ] || fail "go mod download of $module@$version failed"
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
mkdir -p "$TSO_CACHE"
(cd "$work/src" && gobuild go build -trimpath -ldflags "-s -w" -o "$bin.tmp" .) || fail "wireguard-go build failed"
mv "$bin.tmp" "$bin"
echo "$bin"
