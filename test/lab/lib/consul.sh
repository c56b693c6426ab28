# A 3-server Consul cluster, one server per namespace on the underlay, plus a
# client agent in every host namespace on 127.0.0.1:8500 — the usual Consul
# deployment, so each host's plugin talks to its local agent.

consul_common_args() {
  echo "-disable-host-node-id=true -dns-port=-1 -log-level=warn -retry-interval=1s"
}

consul_join_args() {
  local i; for i in $(seq 1 $CONSUL_SERVERS); do echo "-retry-join=$(consul_addr "$i")"; done
}

consul_up() {
  local hosts=$1 i conf="$LAB_DATA/consul/common.hcl"
  mkdir -p "$LAB_DATA/consul"
  printf 'disable_update_check = true\nenable_script_checks = false\n' >"$conf"
  for i in $(seq 1 $CONSUL_SERVERS); do
    local d="$LAB_DATA/consul/c$i"; mkdir -p "$d"
    # shellcheck disable=SC2046
    spawn_in_ns "$(consul_ns "$i")" "$d/consul.log" "consul-c$i" "$CONSUL_BIN" agent -server \
      -bootstrap-expect=$CONSUL_SERVERS -node="c$i" -data-dir="$d/data" -config-file="$conf" \
      -bind="$(consul_addr "$i")" -client="127.0.0.1 $(consul_addr "$i")" \
      $(consul_common_args) $(consul_join_args)
  done
  for i in $(seq 1 "$hosts"); do
    local d="$LAB_DATA/consul/h$i"; mkdir -p "$d"
    # shellcheck disable=SC2046
    spawn_in_ns "$(host_ns "$i")" "$d/consul.log" "consul-h$i" "$CONSUL_BIN" agent \
      -node="h$i" -data-dir="$d/data" -config-file="$conf" \
      -bind="$(host_addr "$i")" -client=127.0.0.1 \
      $(consul_common_args) $(consul_join_args)
  done
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
