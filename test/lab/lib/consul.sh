# shellcheck shell=bash
# A 3-server Consul cluster, one server per namespace on the underlay, plus a
# client agent in every host namespace on 127.0.0.1:8501 — the usual Consul
# deployment, so each host's plugin talks to its local agent — run the way
# production runs it: TLS everywhere with a private CA (no plain HTTP port,
# verify_incoming: every caller shows a certificate of that CA), ACLs with
# default_policy = deny, every agent with a node-identity token of its own, and
# each host's plugin with a token of the least-privilege policy the README
# documents (scripts/consul-policy.hcl).

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
    -bootstrap-expect="$CONSUL_SERVERS" -node="c$i" -data-dir="$d/data" -config-file="$conf" -config-file="$d/agent.hcl" \
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

# Starts host $1's Consul client agent (on 127.0.0.1:$CONSUL_HTTPS_PORT in the host's namespace).
consul_agent_start() {
  local i=$1 conf="$LAB_DATA/consul/common.hcl" d="$LAB_DATA/consul/h$1"
  local -a args
  mkdir -p "$d"
  consul_agent_args args
  spawn_in_ns "$(host_ns "$i")" "$d/consul.log" "consul-h$i" "$CONSUL_BIN" agent \
    -node="h$i" -data-dir="$d/data" -config-file="$conf" -config-file="$d/agent.hcl" \
    -bind="$(host_addr "$i")" -client=127.0.0.1 \
    "${args[@]}"
}

# Stops host $1's Consul client agent.
consul_agent_stop() { consul_stop_pidfile "$LAB_RUN/pids/consul-h$1.pid" "Consul agent on h$1"; }

consul_up() {
  local hosts=$1 i conf="$LAB_DATA/consul/common.hcl"
  mkdir -p "$LAB_DATA/consul"
  consul_pki
  # raft_multiplier 1 is Consul's production setting (the default 5 is for
  # small dev machines): a lost leader is replaced in a second or two, not ten.
  cat >"$conf" <<HCL
disable_update_check = true
enable_script_checks = false
performance { raft_multiplier = 1 }
ports {
  http = -1
  https = $CONSUL_HTTPS_PORT
}
tls {
  defaults {
    ca_file = "$(consul_tls_dir)/consul-agent-ca.pem"
    verify_incoming = true
    verify_outgoing = true
  }
  internal_rpc { verify_server_hostname = true }
}
acl {
  enabled = true
  default_policy = "deny"
  enable_token_persistence = true
}
HCL
  for i in $(seq 1 "$CONSUL_SERVERS"); do
    consul_agent_hcl "$LAB_DATA/consul/c$i" "dc1-server-consul-$((i - 1))" "initial_management = \"$(consul_management_token)\""
    consul_server_start "$i"
  done
  for i in $(seq 1 "$hosts"); do
    consul_agent_hcl "$LAB_DATA/consul/h$i" "dc1-client-consul-$((i - 1))" ""
    consul_agent_start "$i"
  done
  log "waiting for the Consul cluster to elect a leader"
  wait_for 90 consul_has_leader "$(host_ns 1)" || die "Consul elected no leader (logs: $LAB_DATA/consul/*/consul.log)"
  for i in $(seq 1 "$hosts"); do
    wait_for 60 consul_has_leader "$(host_ns "$i")" || die "Consul agent on h$i did not join"
  done
  consul_tokens "$hosts"
}

# The lab's private CA, a server certificate per server and a client
# certificate per host (its agent's, which the host's plugin shows too).
consul_pki() {
  local dir i
  dir=$(consul_tls_dir)
  mkdir -p "$dir"
  (
    cd "$dir"
    "$CONSUL_BIN" tls ca create -days 30 >/dev/null
    for i in $(seq 1 "$CONSUL_SERVERS"); do "$CONSUL_BIN" tls cert create -server -dc dc1 -days 30 -additional-ipaddress "$(consul_addr "$i")" >/dev/null; done
    for i in $(seq 1 "$MAX_HOSTS"); do "$CONSUL_BIN" tls cert create -client -dc dc1 -days 30 >/dev/null; done
  ) || die "making the lab's Consul certificates failed"
  cat /proc/sys/kernel/random/uuid >"$dir/management.token"
  chmod 600 "$dir"/*-key.pem "$dir/management.token"
}

# Writes agent.hcl in folder $1: the agent's certificate ($2, a file stem in the CA folder), and ACL token settings ($3).
consul_agent_hcl() {
  local d=$1 cert=$2 tokens=$3 tls
  tls=$(consul_tls_dir)
  mkdir -p "$d"
  cat >"$d/agent.hcl" <<HCL
tls {
  defaults {
    cert_file = "$tls/$cert.pem"
    key_file = "$tls/$cert-key.pem"
  }
}
acl { tokens { $tokens } }
HCL
}

# Every agent gets a node-identity token (it registers its own node and nothing
# else); each host's plugin a token of the tsoverlay policy for that host, in a
# folder of its own with the CA and the client certificate, mounted into the plugin.
consul_tokens() {
  local hosts=$1 i node secret dir
  for i in $(seq 1 "$CONSUL_SERVERS"); do consul_agent_token "$(consul_ns "$i")" "c$i"; done
  for i in $(seq 1 "$hosts"); do
    node="h$i"
    consul_agent_token "$(host_ns "$i")" "$node"
    sed -e "s/@HOST_ID@/$(host_addr "$i")/g" -e "s/@NODE@/$node/g" "$LAB_DIR/../../scripts/consul-policy.hcl" >"$LAB_DATA/consul/policy-$node.hcl"
    consul_cli "$(host_ns 1)" acl policy create -name "tsoverlay-$node" -rules "@$LAB_DATA/consul/policy-$node.hcl" >/dev/null ||
      die "creating the ACL policy of $node failed"
    secret=$(consul_cli "$(host_ns 1)" acl token create -policy-name "tsoverlay-$node" -description "tsoverlay on $node" -format json | jq -r .SecretID) ||
      die "creating the plugin token of $node failed"
    dir=$(host_consul_dir "$i")
    mkdir -p "$dir"
    cp "$(consul_tls_dir)/consul-agent-ca.pem" "$dir/ca.pem"
    cp "$(consul_tls_dir)/dc1-client-consul-$((i - 1)).pem" "$dir/client.pem"
    cp "$(consul_tls_dir)/dc1-client-consul-$((i - 1))-key.pem" "$dir/client-key.pem"
    printf '%s\n' "$secret" >"$dir/token"
    chmod 600 "$dir/client-key.pem" "$dir/token"
  done
}

# Creates agent $2's node-identity token and hands it to the agent in namespace $1.
consul_agent_token() {
  local ns=$1 node=$2 secret
  secret=$(consul_cli "$(host_ns 1)" acl token create -node-identity "$node:dc1" -description "agent $node" -format json | jq -r .SecretID) ||
    die "creating the agent token of $node failed"
  consul_cli "$ns" acl set-agent-token agent "$secret" >/dev/null || die "giving $node its agent token failed"
}

# The consul CLI in namespace $1, against the agent there, as the lab's operator (management token).
consul_cli() {
  local ns=$1; shift
  in_ns "$ns" env CONSUL_HTTP_ADDR="https://127.0.0.1:$CONSUL_HTTPS_PORT" CONSUL_CACERT="$(consul_tls_dir)/consul-agent-ca.pem" \
    CONSUL_CLIENT_CERT="$(consul_tls_dir)/dc1-client-consul-0.pem" CONSUL_CLIENT_KEY="$(consul_tls_dir)/dc1-client-consul-0-key.pem" \
    CONSUL_HTTP_TOKEN_FILE="$(consul_tls_dir)/management.token" "$CONSUL_BIN" "$@"
}

# curl against the agent in namespace $1 with the lab's client certificate: curl_consul NS PATH [curl args...]
curl_consul() {
  local ns=$1 path=$2; shift 2
  in_ns "$ns" curl -sf --cacert "$(consul_tls_dir)/consul-agent-ca.pem" --cert "$(consul_tls_dir)/dc1-client-consul-0.pem" \
    --key "$(consul_tls_dir)/dc1-client-consul-0-key.pem" "$@" "https://127.0.0.1:$CONSUL_HTTPS_PORT$path"
}

consul_management_token() { cat "$(consul_tls_dir)/management.token"; }

consul_has_leader() {
  local leader; leader=$(curl_consul "$1" /v1/status/leader) || return 1
  [ -n "$leader" ] && [ "$leader" != '""' ]
}
