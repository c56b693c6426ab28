#!/usr/bin/env bash
# Publishes a plugin laid out by plugin-build.sh to a registry, tagged with
# the package's version: creates REPOSITORY:VERSION on the daemon at
# $DOCKER_HOST, `docker plugin push`es it, and removes the local copy (a host
# installs what it runs from the registry, scripts/plugin-install.sh).
# Prints the pushed reference on stdout.
# usage: DOCKER_HOST=unix:///… scripts/plugin-push.sh PLUGIN_DIR REPOSITORY
#   e.g. scripts/plugin-push.sh /tmp/tsoverlay-plugin registry.example:5000/tsoverlay
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
. "$(dirname "$0")/common.sh"
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: plugin-push.sh PLUGIN_DIR REPOSITORY}
repository=${2:?usage: plugin-push.sh PLUGIN_DIR REPOSITORY}
{ [ -f "$dir/config.json" ] && [ -d "$dir/rootfs" ]; } || fail "plugin-push: $dir is not a plugin laid out by plugin-build.sh (config.json and rootfs/)"
[[ $repository != *@* && ${repository##*/} != *:* ]] || fail "plugin-push: give the repository without a tag ($repository): the tag is the package's version"
version=$(sed -n 's/^  "version": "\([^"]*\)".*/\1/p' "$repo/package.json")
[ -n "$version" ] || fail "plugin-push: no version in package.json"
ref="$repository:$version"
if dkr plugin inspect "$ref" >/dev/null 2>&1; then dkr plugin rm -f "$ref" >/dev/null; fi
dkr plugin create "$ref" "$dir" >/dev/null
trap 'dkr plugin rm -f "$ref" >/dev/null 2>&1 || true' EXIT
dkr plugin push "$ref" >&2 || fail "plugin-push: docker plugin push $ref failed"
say "pushed $ref"
echo "$ref"
