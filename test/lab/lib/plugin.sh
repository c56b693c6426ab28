# shellcheck shell=bash
# Builds the plugin once (on h1's daemon), pushes it to the lab's registry
# (registry.sh) and installs it from there as a managed plugin on every host
# (`docker plugin install`, as a user would), pointed at that host's Consul agent (TLS with the lab's CA and
# client certificate, the host's own ACL token from a file) and underlay address.
# h1 runs one proxy accept worker (auto gives none on 2 vCPUs) so the tests exercise it.
# Gone hosts are collected after 30 s (not 10 min) so that the tests can watch it happen.
# Every host serves Prometheus metrics on its underlay address, port 9473.

plugin_up() {
  local hosts=$1 i repo dir="$LAB_DATA/plugin" workers drivers="tsoverlay,$PLUGIN_NAME" ref
  repo=$(cd "$LAB_DIR/../.." && pwd)
  DOCKER_HOST="unix://$(host_sock 1)" "$repo/scripts/plugin-build.sh" "$dir"
  ref=$(DOCKER_HOST="unix://$(host_sock 1)" "$repo/scripts/plugin-push.sh" "$dir" "$LAB_REGISTRY/tsoverlay")
  echo "$ref" >"$LAB_DATA/plugin-ref"
  for i in $(seq 1 "$hosts"); do
    if [ "$i" = 1 ]; then workers=1; else workers=auto; fi
    DOCKER_HOST="unix://$(host_sock "$i")" PLUGIN_NAME="$PLUGIN_NAME" "$repo/scripts/plugin-install.sh" "$ref" \
      CONSUL_HTTP_ADDR="https://127.0.0.1:$CONSUL_HTTPS_PORT" consul-tls.source="$(host_consul_dir "$i")" \
      CONSUL_CACERT=/etc/tsoverlay/consul/ca.pem CONSUL_CLIENT_CERT=/etc/tsoverlay/consul/client.pem \
      CONSUL_CLIENT_KEY=/etc/tsoverlay/consul/client-key.pem CONSUL_HTTP_TOKEN_FILE=/etc/tsoverlay/consul/token \
      TSOVERLAY_ADVERTISE_ADDR="$(host_addr "$i")" TSOVERLAY_ADVERTISE_IFACE=eth0 \
      TSOVERLAY_LOG_LEVEL="${TSOVERLAY_LOG_LEVEL:-debug}" TSOVERLAY_RECONCILE_S=2 \
      TSOVERLAY_GC_GRACE_S=30 TSOVERLAY_GC_INTERVAL_S=5 \
      TSOVERLAY_PROXY_WORKERS="$workers" \
      TSOVERLAY_DRIVER_NAMES="$drivers" TSOVERLAY_METRICS_ADDR="$(host_addr "$i"):9473" \
      state.source="$(host_data "$i")/tsoverlay-state" docker-api.source="$(host_data "$i")/api"
  done
}
