# shellcheck shell=bash
# lab.json (read by the tests) and the human status report.

pid_of() { cat "$LAB_RUN/pids/$1.pid" 2>/dev/null || echo 0; }

write_lab_json() {
  local hosts=$1 mtu=$2 i consul='[]' hostlist='[]'
  for i in $(seq 1 "$CONSUL_SERVERS"); do
    consul=$(jq -c --arg name "c$i" --arg netns "$(consul_ns "$i")" --arg addr "$(consul_addr "$i")" \
      --argjson pid "$(pid_of "consul-c$i")" '. + [{name: $name, netns: $netns, addr: $addr, pid: $pid}]' <<<"$consul")
  done
  for i in $(seq 1 "$hosts"); do
    hostlist=$(jq -c --arg name "h$i" --arg netns "$(host_ns "$i")" --arg addr "$(host_addr "$i")" \
      --arg sock "$(host_sock "$i")" --arg plugins "$(host_plugins "$i")" --arg data "$(host_data "$i")" \
      --arg mntns "$(host_mntns "$i")" --arg docker "$(lab_docker_version "$i")" --arg consulDir "$(host_consul_dir "$i")" \
      --argjson dpid "$(pid_of "dockerd-h$i")" --argjson cpid "$(pid_of "consul-h$i")" \
      '. + [{name: $name, netns: $netns, addr: $addr, dockerSock: $sock, pluginsDir: $plugins, dataDir: $data,
             mntns: $mntns, dockerVersion: $docker, dockerdPid: $dpid, consulPid: $cpid, consulDir: $consulDir}]' <<<"$hostlist")
  done
  jq -n --argjson mtu "$mtu" --arg outNs "$NS_OUTSIDE" --arg outAddr "$OUT_PREFIX.2" --arg router "$UL_PREFIX.1" --arg ulNs "$NS_UNDERLAY" \
    --arg plugin "$PLUGIN_NAME" --arg image "$TEST_IMAGE" --arg consulBin "$CONSUL_BIN" --arg registry "$LAB_REGISTRY" \
    --arg pluginRef "$(cat "$LAB_DATA/plugin-ref" 2>/dev/null || true)" --arg pluginDir "$LAB_DATA/plugin" \
    --arg dockerCli "$DOCKER_CLI" --arg docker "${LAB_DOCKER:-}" \
    --argjson consul "$consul" --argjson hosts "$hostlist" --arg tls "$(consul_tls_dir)" --argjson port "$CONSUL_HTTPS_PORT" \
    '{mtu: $mtu, outside: {netns: $outNs, addr: $outAddr}, underlayRouter: $router, underlayNetns: $ulNs, pluginName: $plugin,
      registry: $registry, pluginRef: $pluginRef, pluginDir: $pluginDir,
      testImage: $image, consulBin: $consulBin, dockerCli: $dockerCli, docker: $docker, consul: $consul, hosts: $hosts,
      consulApi: {url: ("https://127.0.0.1:" + ($port | tostring)), ca: ($tls + "/consul-agent-ca.pem"), cert: ($tls + "/dc1-client-consul-0.pem"),
                  key: ($tls + "/dc1-client-consul-0-key.pem"), managementTokenFile: ($tls + "/management.token")}}' >"$LAB_JSON.tmp"
  mv "$LAB_JSON.tmp" "$LAB_JSON"
}

# lab.json again after processes were restarted (their PIDs changed).
write_lab_json_pids() {
  # shellcheck source=/dev/null # lab.env is written by cmd_up
  . "$LAB_STATE"
  write_lab_json "${HOSTS:?}" "${MTU:?}"
}

# The server version dockerd of host $1 reports ("?" if it does not answer).
lab_docker_version() {
  dk "$1" version -f '{{.Server.Version}}' 2>/dev/null || echo "?"
}

cmd_status() {
  if [ "${1:-}" = --json ]; then
    if [ -f "$LAB_JSON" ]; then cat "$LAB_JSON"; else echo '{}'; fi
    return
  fi
  if [ ! -f "$LAB_STATE" ]; then echo "lab: down"; return; fi
  # shellcheck source=/dev/null # lab.env is written by cmd_up
  . "$LAB_STATE"
  local i
  echo "lab: up, $HOSTS hosts, Docker ${LAB_DOCKER:-?}, underlay $UL_PREFIX.0/24 MTU $MTU, outside $OUT_PREFIX.2"
  echo "consul members (from h1):"
  consul_cli "$(host_ns 1)" members 2>/dev/null | sed 's/^/  /' || echo "  (unreachable)"
  echo "  leader: $(curl_consul "$(host_ns 1)" /v1/status/leader 2>/dev/null || echo none)"
  echo "hosts:"
  for i in $(seq 1 "$HOSTS"); do
    local st; st=$(dk "$i" plugin inspect -f '{{.Enabled}}' "$PLUGIN_NAME" 2>/dev/null || echo missing)
    echo "  h$i  $(host_addr "$i")  Docker $(lab_docker_version "$i")  plugin enabled=$st"
    echo "      docker -H unix://$(host_sock "$i") ps"
    echo "      nsenter --net=/run/netns/$(host_ns "$i") sh    # a shell in the host"
  done
}
