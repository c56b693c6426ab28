# shellcheck shell=bash
# Shared settings and helpers for the lab. Sourced, not run.
# Everything the lab creates is named here so that `down` can find it again.
# The settings are read by lab.sh and the other libs, which ShellCheck cannot
# see when it checks this file on its own:
# shellcheck disable=SC2034

LAB_RUN=/run/tso-lab          # pids, sockets, lab.json, per-host run dirs
LAB_DATA=/var/lib/tso-lab     # docker data roots, consul data, logs
LAB_CACHE=/var/cache/tsoverlay # consul build, base rootfs: survives `down`
LAB_STATE="$LAB_RUN/lab.env"
LAB_JSON="$LAB_RUN/lab.json"

CONSUL_VERSION=v1.20.6
CONSUL_BIN="$LAB_CACHE/consul-$CONSUL_VERSION/consul"

NS_UNDERLAY=tso-ul
NS_OUTSIDE=tso-out
# The outside server's name in the hosts' resolver (not an overlay name: the plugin forwards it).
OUTSIDE_NAME=outside.lab
# The plugin's name service: the gateway bridge's address (TSOVERLAY_GATEWAY_SUBNET's first host).
LAB_NAME_SERVER=100.72.0.1
UL_BRIDGE=ul0
UL_PREFIX=198.18.0          # underlay /24: .1 router, .2-.4 consul, .11.. hosts
OUT_PREFIX=198.19.0         # "internet" /24 behind the router: .1 router, .2 server
# The lab's plugin registry (registry.sh), on the outside server; the daemons know it as insecure (HTTP).
LAB_REGISTRY="$OUT_PREFIX.2:5000"
MAX_HOSTS=5
CONSUL_SERVERS=3
CONSUL_HTTPS_PORT=8501
PLUGIN_NAME=tsoverlay-plugin
TEST_IMAGE=tso-test:latest

# One CLI for every daemon version (built by install.sh; Debian's 20.10 CLI until then).
DOCKER_CLI="$LAB_CACHE/docker-cli-28.5.2/docker"
[ -x "$DOCKER_CLI" ] || DOCKER_CLI=/usr/bin/docker
[ -x "$DOCKER_CLI" ] || DOCKER_CLI=docker
export DOCKER_CLI

log() { printf '[lab] %s\n' "$*" >&2; }
die() { printf '[lab] error: %s\n' "$*" >&2; exit 1; }

host_ns() { echo "tso-h$1"; }
host_addr() { echo "$UL_PREFIX.$((10 + $1))"; }
consul_ns() { echo "tso-c$1"; }
consul_addr() { echo "$UL_PREFIX.$((1 + $1))"; }
host_data() { echo "$LAB_DATA/h$1"; }
# The lab's Consul CA, certificates and management token.
consul_tls_dir() { echo "$LAB_DATA/consul/tls"; }
# What host $1's plugin gets through its consul-tls mount: CA, client certificate and key, token.
host_consul_dir() { echo "$LAB_DATA/h$1/consul-tls"; }
# The daemon's socket and its plugin folder live on disk, outside /run: each
# dockerd has a private /run (see dockerd.sh), and the host must reach both.
host_sock() { echo "$LAB_DATA/h$1/docker.sock"; }
host_plugins() { echo "$LAB_DATA/h$1/plugins"; }
host_mntns() { echo "$LAB_RUN/mnt/h$1"; }
all_lab_namespaces() {
  echo "$NS_UNDERLAY $NS_OUTSIDE"
  local i; for i in $(seq 1 "$CONSUL_SERVERS"); do consul_ns "$i"; done
  for i in $(seq 1 "$MAX_HOSTS"); do host_ns "$i"; done
}

# dockerd of host $1, through the CLI that matches the daemon's version.
dk() { local h=$1; shift; DOCKER_BUILDKIT=0 "$DOCKER_CLI" -H "unix://$(host_sock "$h")" "$@"; }

in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }

# Starts a long-running process in namespace $1, detached, logging to $2;
# records its PID under $LAB_RUN/pids/$3.pid. setsid and nsenter both exec,
# so the recorded PID is the program's own.
spawn_in_ns() {
  local ns=$1 logf=$2 name=$3; shift 3
  mkdir -p "$LAB_RUN/pids" "$(dirname "$logf")"
  setsid nsenter --net="/run/netns/$ns" "$@" >"$logf" 2>&1 </dev/null &
  echo $! >"$LAB_RUN/pids/$name.pid"
}

# True when the PID in file $1 is a running process.
pidfile_running() {
  local p; p=$(cat "$1" 2>/dev/null) || return 1
  [[ $p =~ ^[0-9]+$ ]] && [ "$p" -gt 0 ] && kill -0 "$p" 2>/dev/null
}

# Waits up to $1 seconds for command "$@" to succeed.
wait_for() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.3
  done
}
