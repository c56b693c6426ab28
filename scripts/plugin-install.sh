#!/usr/bin/env bash
# Installs (or reinstalls) the managed plugin on the daemon at $DOCKER_HOST,
# applies settings, enables it. From a registry — REFERENCE is what
# plugin-push.sh printed, e.g. registry.example:5000/tsoverlay:0.1.0, and
# `docker plugin install --grant-all-permissions --alias NAME` does it — or,
# when the argument is a directory made by plugin-build.sh, from that
# directory (`docker plugin create`).
# Installed as NAME:latest (default tsoverlay-plugin) — not as `tsoverlay`:
# the daemon would resolve `-d tsoverlay` to the managed plugin and fail for
# want of the tag. The plugin answers as `tsoverlay` through its legacy socket.
# usage: scripts/plugin-install.sh REFERENCE|PLUGIN_DIR [KEY=VALUE ...]
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
. "$(dirname "$0")/common.sh"
from=${1:?usage: plugin-install.sh REFERENCE|PLUGIN_DIR [KEY=VALUE ...]}; shift
name=${PLUGIN_NAME:-tsoverlay-plugin}

if dkr plugin inspect "$name" >/dev/null 2>&1; then
  dkr plugin disable -f "$name" >/dev/null 2>&1 || true
  dkr plugin rm -f "$name" >/dev/null
fi
if [ -d "$from" ]; then
  dkr plugin create "$name" "$from" >/dev/null
else
  # Disabled until the settings are in: enabled with the defaults, it would start against the wrong Consul.
  dkr plugin install --grant-all-permissions --disable --alias "$name" "$from" >/dev/null || fail "docker plugin install $from failed"
fi
[ $# -eq 0 ] || dkr plugin set "$name" "$@"
dkr plugin enable "$name" >/dev/null
dkr plugin inspect -f '{{.Enabled}}' "$name" | grep -qx true || fail "plugin $name did not stay enabled"
say "plugin $name:latest enabled ($from)"
