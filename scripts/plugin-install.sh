#!/usr/bin/env bash
# Installs (or reinstalls) the managed plugin from a directory made by
# plugin-build.sh on the daemon at $DOCKER_HOST, applies settings, enables it.
# Installed as NAME:latest (default tsoverlay-plugin) — not as `tsoverlay`:
# the daemon would resolve `-d tsoverlay` to the managed plugin and fail for
# want of the tag. The plugin answers as `tsoverlay` through its legacy socket.
# usage: scripts/plugin-install.sh PLUGIN_DIR [KEY=VALUE ...]
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
. "$(dirname "$0")/common.sh"
dir=${1:?usage: plugin-install.sh PLUGIN_DIR [KEY=VALUE ...]}; shift
name=${PLUGIN_NAME:-tsoverlay-plugin}

if dkr plugin inspect "$name" >/dev/null 2>&1; then
  dkr plugin disable -f "$name" >/dev/null 2>&1 || true
  dkr plugin rm -f "$name" >/dev/null
fi
dkr plugin create "$name" "$dir" >/dev/null
[ $# -eq 0 ] || dkr plugin set "$name" "$@"
dkr plugin enable "$name" >/dev/null
dkr plugin inspect -f '{{.Enabled}}' "$name" | grep -qx true || fail "plugin $name did not stay enabled"
say "plugin $name:latest enabled"
