# shellcheck shell=bash
# A 3-server Consul cluster, one server per namespace on the underlay, plus a
# client agent in every host namespace on 127.0.0.1:8500 — the usual Consul
# deployment, so each host's plugin talks to its local agent.

# Sets the array named $1 to the flags every agent gets, server or client:
# the common settings, then a -retry-join for each server.
consul_agent_args() {
  local -n _consul_args=$1
  local i
  _consul_args=(-disable-host-node-id=true -dns-port=-1 -log-level=warn -retry-interval=1s)
  for i in $(seq 1 "$CONSUL_SERVERS"); do _consul_args+=("-retry-join=$(consul_addr "$i")"); done
}

# Starts Consul server $1 (again: its data dir keeps its place in the cluster). Running already is fine.
consul_server_start() {
  local i=$1 conf="$LAB_DATA/consul/common.hcl" d="$LAB_DATA/consul/c$1"
  local -a args
  pidfile_running "$LAB_RUN/pids/consul-c$i.pid" && return 0
  mkdir -p "$d"
  consul_agent_args args
  spawn_in_ns "$(consul_ns "$i")" "$d/consul.log" "consul-c$i" "$CONSUL_BIN" agent -server \
    -bootstrap-expect="$CONSUL_SERVERS" -node="c$i" -data-dir="$d/data" -config-file="$conf" \
    -bind="$(consul_addr "$i")" -client="127.0.0.1 $(consul_addr "$i")" \
    "${args[@]}"
}

# Stops the Consul agent whose PID file is $1 (as a crash or a shutdown would); $2 names it.
consul_stop_pidfile() {
  local pidf=$1 pid
  [ -f "$pidf" ] || die "no $2"
  pid=$(cat "$pidf")
  kill -TERM "$pid" 2>/dev/null || true
  wait_for 30 not_running "$pid" || kill -KILL "$pid" 2>/dev/null || true
}

# Stops Consul server $1.
consul_server_stop() { consul_stop_pidfile "$LAB_RUN/pids/consul-c$1.pid" "Consul server c$1"; }

# Starts host $1's Consul client agent (on 127.0.0.1:8500 in the host's namespace).
consul_agent_start() {
  local i=$1 conf="$LAB_DATA/consul/common.hcl" d="$LAB_DATA/consul/h$1"
  local -a args
  mkdir -p "$d"
  consul_agent_args args
  spawn_in_ns "$(host_ns "$i")" "$d/consul.log" "consul-h$i" "$CONSUL_BIN" agent \
    -node="h$i" -data-dir="$d/data" -config-file="$conf" \
    -bind="$(host_addr "$i")" -client=127.0.0.1 \
    "${args[@]}"
}

# Stops host $1's Consul client agent.
consul_agent_stop() { consul_stop_pidfile "$LAB_RUN/pids/consul-h$1.pid" "Consul agent on h$1"; }

consul_up() {
  local hosts=$1 i conf="$LAB_DATA/consul/common.hcl"
  mkdir -p "$LAB_DATA/consul"
  # raft_multiplier 1 is Consul's production setting (the default 5 is for
  # small dev machines): a lost leader is replaced in a second or two, not ten.
  printf 'disable_update_check = true\nenable_script_checks = false\nperformance { raft_multiplier = 1 }\n' >"$conf"
  for i in $(seq 1 "$CONSUL_SERVERS"); do consul_server_start "$i"; done
  for i in $(seq 1 "$hosts"); do consul_agent_start "$i"; done
  log "waiting for the Consul cluster to elect a leader"
  wait_for 90 consul_has_leader "$(host_ns 1)" || die "Consul elected no leader (logs: $LAB_DATA/consul/*/consul.log)"
  for i in $(seq 1 "$hosts"); do
    wait_for 60 consul_has_leader "$(host_ns "$i")" || die "Consul agent on h$i did not join"
  done
}

consul_has_leader() {
  local leader; leader=$(in_ns "$1" curl -sf http://127.0.0.1:8500/v1/status/leader) || return 1
  [ -n "$leader" ] && [ "$leader" != '""' ]
}
