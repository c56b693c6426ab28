# shellcheck shell=bash
# The lab's plugin registry: Debian's docker-registry (the CNCF Distribution
# registry) on the outside server, over HTTP at $LAB_REGISTRY, its storage
# under $LAB_DATA (gone with `down`). plugin.sh pushes the plugin to it and
# every host installs it from there, as a user installs a published plugin.

registry_up() {
  local dir="$LAB_DATA/registry"
  mkdir -p "$dir/data"
  cat >"$dir/config.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $LAB_REGISTRY
YML
  spawn_in_ns "$NS_OUTSIDE" "$dir/registry.log" registry docker-registry serve "$dir/config.yml"
  wait_for 20 in_ns "$NS_OUTSIDE" curl -sf "http://$LAB_REGISTRY/v2/" -o /dev/null || die "the lab registry did not start (log: $dir/registry.log)"
}
