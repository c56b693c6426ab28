# lab.json (read by the tests) and the human status report.

write_lab_json() {
  local hosts=$1 mtu=$2 i sep=""
  {
    printf '{"mtu":%s,"outside":{"netns":"%s","addr":"%s.2"},"underlayRouter":"%s.1",' "$mtu" "$NS_OUTSIDE" "$OUT_PREFIX" "$UL_PREFIX"
    printf '"pluginName":"%s","testImage":"%s","consulBin":"%s","consul":[' "$PLUGIN_NAME" "$TEST_IMAGE" "$CONSUL_BIN"
    for i in $(seq 1 $CONSUL_SERVERS); do
      printf '%s{"name":"c%s","netns":"%s","addr":"%s","pid":%s}' "$sep" "$i" "$(consul_ns "$i")" "$(consul_addr "$i")" "$(cat "$LAB_RUN/pids/consul-c$i.pid")"; sep=","
    done
    printf '],"hosts":['; sep=""
    for i in $(seq 1 "$hosts"); do
      printf '%s{"name":"h%s","netns":"%s","addr":"%s","dockerSock":"%s","pluginsDir":"%s","dataDir":"%s","dockerdPid":%s,"consulPid":%s}' \
        "$sep" "$i" "$(host_ns "$i")" "$(host_addr "$i")" "$(host_sock "$i")" "$(host_dir "$i")/plugins" \
        "$(host_data "$i")" "$(cat "$LAB_RUN/pids/dockerd-h$i.pid")" "$(cat "$LAB_RUN/pids/consul-h$i.pid")"
      sep=","
    done
    printf ']}\n'
  } >"$LAB_JSON"
}

cmd_status() {
  if [ "${1:-}" = --json ]; then
    [ -f "$LAB_JSON" ] && cat "$LAB_JSON" || echo '{}'
    return
  fi
  if [ ! -f "$LAB_STATE" ]; then echo "lab: down"; return; fi
  . "$LAB_STATE"
  local i
  echo "lab: up, $HOSTS hosts, underlay $UL_PREFIX.0/24 MTU $MTU, outside $OUT_PREFIX.2"
  echo "consul members (from h1):"
  in_ns "$(host_ns 1)" "$CONSUL_BIN" members 2>/dev/null | sed 's/^/  /' || echo "  (unreachable)"
  echo "  leader: $(in_ns "$(host_ns 1)" curl -sf http://127.0.0.1:8500/v1/status/leader 2>/dev/null || echo none)"
  echo "hosts:"
  for i in $(seq 1 "$HOSTS"); do
    local st; st=$(dk "$i" plugin inspect -f '{{.Enabled}}' "$PLUGIN_NAME" 2>/dev/null || echo missing)
    echo "  h$i  $(host_addr "$i")  plugin enabled=$st"
    echo "      docker -H unix://$(host_sock "$i") ps"
    echo "      nsenter --net=/run/netns/$(host_ns "$i") sh    # a shell in the host"
  done
}
