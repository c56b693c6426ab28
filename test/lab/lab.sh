#!/usr/bin/env bash
# The tsoverlay lab: N Docker hosts (network namespaces, one dockerd each) on
# a shared underlay, a 3-server Consul cluster, an `outside` server, and the
# plugin installed on every host.
#   lab.sh up [--hosts N] [--mtu M] [--docker 29|28|20.10]   lab.sh down   lab.sh status [--json]
#   (--docker defaults to $TSOVERLAY_DOCKER, else 29: the newest)
#   lab.sh plugin   (rebuild and reinstall the plugin on a running lab)
#   lab.sh packages (install the Debian packages the lab and the checks need; up does it too)
#   lab.sh consul stop|start N|all   lab.sh host stop|start|kill|revive N   (outage and restart tests)
#   lab.sh consul ARGS...   (any other consul command, on h1, as the lab's operator: TLS and the management token)
# shellcheck source-path=SCRIPTDIR
set -Eeuo pipefail
LAB_DIR=$(cd "$(dirname "$0")" && pwd)
# One line each (not a loop) so that ShellCheck follows them.
. "$LAB_DIR/lib/common.sh"
. "$LAB_DIR/lib/install.sh"
. "$LAB_DIR/lib/underlay.sh"
. "$LAB_DIR/lib/consul.sh"
. "$LAB_DIR/lib/dockerd.sh"
. "$LAB_DIR/lib/images.sh"
. "$LAB_DIR/lib/registry.sh"
. "$LAB_DIR/lib/plugin.sh"
. "$LAB_DIR/lib/status.sh"

[ "$(id -u)" = 0 ] || die "the lab needs root (namespaces, dockerd): run it with sudo"

cmd_up() {
  local hosts=2 mtu=1500 docker=${TSOVERLAY_DOCKER:-29}
  while [ $# -gt 0 ]; do
    case $1 in
      --hosts) hosts=${2:?--hosts needs a number}; shift 2 ;;
      --mtu) mtu=${2:?--mtu needs a number}; shift 2 ;;
      --docker) docker=${2:?--docker needs a version: 29, 28 or 20.10}; shift 2 ;;
      *) die "unknown option $1 (usage: lab.sh up [--hosts N] [--mtu M] [--docker 29|28|20.10])" ;;
    esac
  done
  case $docker in 29|28|20.10) ;; *) die "--docker must be 29, 28 or 20.10 (got $docker)" ;; esac
  if ! { [[ $hosts =~ ^[0-9]+$ ]] && [ "$hosts" -ge 1 ] && [ "$hosts" -le "$MAX_HOSTS" ]; }; then die "--hosts must be 1..$MAX_HOSTS"; fi
  if ! { [[ $mtu =~ ^[0-9]+$ ]] && [ "$mtu" -ge 1280 ] && [ "$mtu" -le 9000 ]; }; then die "--mtu must be 1280..9000"; fi
  [ ! -e "$LAB_STATE" ] || die "the lab is already up (npm run lab -- down first)"
  local ns; for ns in $(all_lab_namespaces); do
    [ ! -e "/run/netns/$ns" ] || die "namespace $ns exists: a previous lab was not taken down (npm run lab -- down)"
  done

  local t0=$SECONDS
  ensure_packages
  ensure_consul
  ensure_docker "$docker"
  LAB_DOCKER=$docker
  mkdir -p "$LAB_RUN/pids" "$LAB_DATA"
  printf 'HOSTS=%s\nMTU=%s\nLAB_DOCKER=%s\n' "$hosts" "$mtu" "$docker" >"$LAB_STATE"
  # From here on any failure — a failing command in any function, or die —
  # ends the shell, and the EXIT trap takes down whatever was made.
  LAB_UP_DONE=0
  trap 'if [ "$LAB_UP_DONE" != 1 ]; then log "up failed; taking down what was made"; cmd_down; fi' EXIT
  [ -z "${TSOVERLAY_LAB_FAIL_AT:-}" ] || log "TSOVERLAY_LAB_FAIL_AT=$TSOVERLAY_LAB_FAIL_AT: this up will fail on purpose"
  log "underlay: $hosts hosts, MTU $mtu"
  underlay_up "$hosts" "$mtu"
  fail_at underlay
  outside_up
  registry_up
  consul_up "$hosts"
  fail_at consul
  log "starting $hosts dockerd (Docker $(docker_full_version "$docker"))"
  dockerd_up "$hosts"
  fail_at dockerd
  images_up "$hosts"
  log "building and installing the plugin"
  plugin_up "$hosts"
  fail_at plugin
  write_lab_json "$hosts" "$mtu"
  LAB_UP_DONE=1
  trap - EXIT
  log "lab up in $((SECONDS - t0)) s"
  cmd_status
}

# For the test of a failed `up`: TSOVERLAY_LAB_FAIL_AT=<step> makes up fail after that step.
fail_at() {
  if [ "${TSOVERLAY_LAB_FAIL_AT:-}" = "$1" ]; then die "failing after $1 on purpose (TSOVERLAY_LAB_FAIL_AT)"; fi
}

cmd_down() {
  trap - EXIT
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
  set -e
  log "lab down"
}

# Rebuilds the plugin from the working tree and reinstalls it on every host of
# a running lab (for development; networks and containers should be gone first).
cmd_plugin() {
  [ -e "$LAB_STATE" ] || die "the lab is down (npm run lab -- up first)"
  # shellcheck source=/dev/null # lab.env is written by cmd_up
  . "$LAB_STATE"
  plugin_up "$HOSTS"
}

# Stops or starts one host's dockerd (and with it the plugin and containers), for restart tests.
cmd_host() {
  [ -e "$LAB_STATE" ] || die "the lab is down"
  # shellcheck source=/dev/null # lab.env is written by cmd_up
  . "$LAB_STATE"
  local verb=${1:-} i=${2:-}
  if ! { [[ $i =~ ^[0-9]+$ ]] && [ "$i" -ge 1 ] && [ "$i" -le "$HOSTS" ]; }; then die "usage: lab.sh host stop|start|kill|revive 1..$HOSTS"; fi
  case $verb in
    stop) dockerd_stop "$i" ;;
    start) dockerd_start "$i"; dockerd_wait "$i" ;;
    kill) host_kill "$i" ;;
    revive) host_revive "$i" ;;
    *) die "usage: lab.sh host stop|start|kill|revive 1..$HOSTS" ;;
  esac
  write_lab_json_pids
}

# Stops or starts Consul servers (1..3 or "all"), for outage tests.
cmd_consul() {
  [ -e "$LAB_STATE" ] || die "the lab is down"
  local verb=${1:-} which=${2:-} i list
  case $verb in stop | start) ;; *) consul_cli "$(host_ns 1)" "$@"; return ;; esac
  if [ "$which" = all ]; then list=$(seq 1 "$CONSUL_SERVERS"); else list=$which; fi
  [[ $list =~ ^[0-9\ $'\n']+$ ]] || die "usage: lab.sh consul stop|start 1..$CONSUL_SERVERS|all"
  for i in $list; do
    if ! { [ "$i" -ge 1 ] && [ "$i" -le "$CONSUL_SERVERS" ]; }; then die "no Consul server $i"; fi
    case $verb in
      stop) consul_server_stop "$i" ;;
      start) consul_server_start "$i" ;;
      *) die "usage: lab.sh consul stop|start 1..$CONSUL_SERVERS|all" ;;
    esac
  done
  write_lab_json_pids
}

# A host's own Consul client agent (what `tsoverlay doctor` must notice gone).
cmd_agent() {
  [ -e "$LAB_STATE" ] || die "the lab is down"
  # shellcheck source=/dev/null # lab.env is written by cmd_up
  . "$LAB_STATE"
  local verb=${1:-} i=${2:-}
  if ! { [[ $i =~ ^[0-9]+$ ]] && [ "$i" -ge 1 ] && [ "$i" -le "$HOSTS" ]; }; then die "usage: lab.sh agent stop|start 1..$HOSTS"; fi
  case $verb in
    stop) consul_agent_stop "$i" ;;
    start) pidfile_running "$LAB_RUN/pids/consul-h$i.pid" || consul_agent_start "$i" ;;
    *) die "usage: lab.sh agent stop|start 1..$HOSTS" ;;
  esac
  write_lab_json_pids
}

case ${1:-} in
  up) shift; cmd_up "$@" ;;
  agent) shift; cmd_agent "$@" ;;
  packages) ensure_packages ;;
  plugin) cmd_plugin ;;
  consul) shift; cmd_consul "$@" ;;
  host) shift; cmd_host "$@" ;;
  down) cmd_down ;;
  status) shift; cmd_status "$@" ;;
  *) echo "usage: lab.sh up [--hosts N] [--mtu M] [--docker 29|28|20.10] | down | status [--json] | packages | plugin | consul stop|start N|all | consul ARGS... | agent stop|start N | host stop|start|kill|revive N" >&2; exit 2 ;;
esac
