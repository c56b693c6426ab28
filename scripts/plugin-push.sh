#!/usr/bin/env bash
# Publishes a plugin laid out by plugin-build.sh to a registry, tagged with
# the version of the package inside it (or TAG): creates REPOSITORY:TAG on the daemon at
# $DOCKER_HOST, `docker plugin push`es it, and removes the local copy (a host
# installs what it runs from the registry, scripts/plugin-install.sh).
# Prints the pushed reference on stdout.
# usage: DOCKER_HOST=unix:///… scripts/plugin-push.sh PLUGIN_DIR REPOSITORY [TAG]
#   e.g. scripts/plugin-push.sh /tmp/tsoverlay-plugin registry.example:5000/tsoverlay
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
. "$(dirname "$0")/common.sh"
dir=${1:?usage: plugin-push.sh PLUGIN_DIR REPOSITORY [TAG]}
repository=${2:?usage: plugin-push.sh PLUGIN_DIR REPOSITORY [TAG]}
{ [ -f "$dir/config.json" ] && [ -d "$dir/rootfs" ]; } || fail "plugin-push: $dir is not a plugin laid out by plugin-build.sh (config.json and rootfs/)"
[[ $repository != *@* && ${repository##*/} != *:* ]] || fail "plugin-push: give the repository without a tag ($repository): the tag is the package's version"
version=${3:-$(sed -n 's/^  "version": "\([^"]*\)".*/\1/p' "$dir/rootfs/opt/tsoverlay/package.json")}
[ -n "$version" ] || fail "plugin-push: no version in $dir/rootfs/opt/tsoverlay/package.json"
[[ $version =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || fail "plugin-push: $version is not a valid tag"
ref="$repository:$version"
if dkr plugin inspect "$ref" >/dev/null 2>&1; then dkr plugin rm -f "$ref" >/dev/null; fi
dkr plugin create "$ref" "$dir" >/dev/null
trap 'dkr plugin rm -f "$ref" >/dev/null 2>&1 || true' EXIT
dkr plugin push "$ref" >&2 || fail "plugin-push: docker plugin push $ref failed"
say "pushed $ref"
echo "$ref"
