# One dockerd per host namespace. Each runs in a mount namespace of its own
# (a slave of the root's) where a per-host folder is bind-mounted over
# /run/docker/plugins: that folder is not per daemon, and each host's
# tsoverlay.sock must belong to that host. `nsenter --net` (not
# `ip netns exec`, which remounts /sys and hides the cgroup mounts).

dockerd_up() {
  local hosts=$1 i
  mkdir -p /run/docker/plugins
  for i in $(seq 1 "$hosts"); do
    local run; run=$(host_dir "$i")
    local data; data=$(host_data "$i")
    mkdir -p "$run/plugins" "$run/exec" "$data/docker" "$data/tsoverlay-state"
    echo '{}' >"$run/daemon.json"
    setsid unshare --mount --propagation slave -- sh -c '
        set -e
        mount --bind "$1/plugins" /run/docker/plugins
        ns=$2; shift 2
        exec nsenter --net="/run/netns/$ns" "$@"' sh "$run" "$(host_ns "$i")" \
      dockerd --data-root "$data/docker" --exec-root "$run/exec" --pidfile "$run/docker.pid" \
        -H "unix://$(host_sock "$i")" --config-file "$run/daemon.json" \
        >"$data/dockerd.log" 2>&1 </dev/null &
    echo $! >"$LAB_RUN/pids/dockerd-h$i.pid"
  done
  for i in $(seq 1 "$hosts"); do
    wait_for 60 dk "$i" info || die "dockerd on h$i did not start (log: $(host_data "$i")/dockerd.log)"
  done
}

# Stops every container and plugin first so dockerd exits without leftovers.
dockerd_down() {
  local i pidf pid
  for i in $(seq 1 $MAX_HOSTS); do
    [ -S "$(host_sock "$i")" ] || continue
    local ids; ids=$(dk "$i" ps -aq 2>/dev/null || true)
    [ -z "$ids" ] || dk "$i" rm -f $ids >/dev/null 2>&1 || true
    dk "$i" plugin disable -f "$PLUGIN_NAME" >/dev/null 2>&1 || true
  done
  for i in $(seq 1 $MAX_HOSTS); do
    pidf="$LAB_RUN/pids/dockerd-h$i.pid"
    [ -f "$pidf" ] || continue
    pid=$(cat "$pidf")
    kill -TERM "$pid" 2>/dev/null || true
  done
  for i in $(seq 1 $MAX_HOSTS); do
    pidf="$LAB_RUN/pids/dockerd-h$i.pid"
    [ -f "$pidf" ] || continue
    pid=$(cat "$pidf")
    wait_for 30 not_running "$pid" || kill -KILL "$pid" 2>/dev/null || true
  done
}

not_running() { ! kill -0 "$1" 2>/dev/null; }
