#!/usr/bin/env bash
# The tsoverlay lab: N Docker hosts (network namespaces, one dockerd each) on
# a shared underlay, a 3-server Consul cluster, an `outside` server, and the
# plugin installed on every host.
#   lab.sh up [--hosts N] [--mtu M]   lab.sh down   lab.sh status [--json]
set -euo pipefail
LAB_DIR=$(cd "$(dirname "$0")" && pwd)
for f in common install underlay consul dockerd images plugin status; do . "$LAB_DIR/lib/$f.sh"; done

[ "$(id -u)" = 0 ] || die "the lab needs root (namespaces, dockerd): run it with sudo"

cmd_up() {
  local hosts=2 mtu=1500
  while [ $# -gt 0 ]; do
    case $1 in
      --hosts) hosts=${2:?--hosts needs a number}; shift 2 ;;
      --mtu) mtu=${2:?--mtu needs a number}; shift 2 ;;
      *) die "unknown option $1 (usage: lab.sh up [--hosts N] [--mtu M])" ;;
    esac
  done
  [[ $hosts =~ ^[0-9]+$ ]] && [ "$hosts" -ge 1 ] && [ "$hosts" -le $MAX_HOSTS ] || die "--hosts must be 1..$MAX_HOSTS"
  [[ $mtu =~ ^[0-9]+$ ]] && [ "$mtu" -ge 1280 ] && [ "$mtu" -le 9000 ] || die "--mtu must be 1280..9000"
  [ ! -e "$LAB_STATE" ] || die "the lab is already up (npm run lab -- down first)"
  local ns; for ns in $(all_lab_namespaces); do
    [ ! -e "/run/netns/$ns" ] || die "namespace $ns exists: a previous lab was not taken down (npm run lab -- down)"
  done

  local t0=$SECONDS
  ensure_packages
  ensure_consul
  mkdir -p "$LAB_RUN/pids" "$LAB_DATA"
  printf 'HOSTS=%s\nMTU=%s\n' "$hosts" "$mtu" >"$LAB_STATE"
  # From here on a failure takes down whatever was made.
  trap 'log "up failed; taking down what was made"; cmd_down' ERR
  log "underlay: $hosts hosts, MTU $mtu"
  underlay_up "$hosts" "$mtu"
  outside_up
  consul_up "$hosts"
  log "starting $hosts dockerd"
  dockerd_up "$hosts"
  images_up "$hosts"
  log "building and installing the plugin"
  plugin_up "$hosts"
  trap - ERR
  write_lab_json "$hosts" "$mtu"
  log "lab up in $((SECONDS - t0)) s"
  cmd_status
}

cmd_down() {
  trap - ERR
  set +e
  dockerd_down
  local pidf pid
  for pidf in "$LAB_RUN"/pids/*.pid; do
    [ -f "$pidf" ] || continue
    pid=$(cat "$pidf"); kill -TERM "$pid" 2>/dev/null
  done
  for pidf in "$LAB_RUN"/pids/*.pid; do
    [ -f "$pidf" ] || continue
    pid=$(cat "$pidf"); wait_for 15 not_running "$pid" || kill -KILL "$pid" 2>/dev/null
  done
  # Anything still running inside a lab namespace was started there by the lab.
  local ns
  for ns in $(all_lab_namespaces); do
    [ -e "/run/netns/$ns" ] || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  done
  sleep 0.2
  underlay_down
  rm -rf "$LAB_RUN" "$LAB_DATA"
  rmdir /run/docker/plugins /run/docker 2>/dev/null
  set -e
  log "lab down"
}

case ${1:-} in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) shift; cmd_status "$@" ;;
  *) echo "usage: lab.sh up [--hosts N] [--mtu M] | down | status [--json]" >&2; exit 2 ;;
esac
