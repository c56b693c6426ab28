# shellcheck shell=bash
# One dockerd per host namespace, each in a persistent mount namespace of its
# own with a private /run.
#
# Why: dockerd keeps managed plugins under /run/docker/plugins whatever
# --exec-root says, and that folder is not per daemon; each host's
# tsoverlay.sock must belong to that host. A bind mount over it in a slave
# mount namespace is lost as soon as anything removes and re-creates the
# root's /run/docker, so each daemon gets a tmpfs on /run, with its plugin
# folder (on disk, under its data dir, where the host can reach it) bound to
# /run/docker/plugins. The namespace is kept in a file, so that a dockerd
# restart (or live-restore) finds the same mounts again, as on a real host.
# `nsenter --net` (not `ip netns exec`, which remounts /sys and hides the
# cgroup mounts dockerd needs).

# The folder holding the namespace files must be a private mount.
mntns_dir_up() {
  mkdir -p "$LAB_RUN/mnt"
  if ! findmnt -rn "$LAB_RUN/mnt" >/dev/null; then
    mount --bind "$LAB_RUN/mnt" "$LAB_RUN/mnt"
    mount --make-private "$LAB_RUN/mnt"
  fi
}

host_mntns_up() {
  local i=$1 f; f=$(host_mntns "$i")
  if findmnt -rn "$f" >/dev/null 2>&1; then return 0; fi
  mntns_dir_up
  touch "$f"
  # shellcheck disable=SC2016 # the script expands its own $1 (the plugin folder, passed after it)
  # Each host also gets its own /etc/resolv.conf: the lab's resolver (underlay.sh), as a host's own would be.
  # The plugin's state folder is a shared mount, as every folder is on a systemd host: the plugin's pins of its
  # namespaces there reach the host's mount namespace and outlive a `docker plugin disable` (README: Upgrading).
  unshare --mount="$f" --propagation slave sh -c '
      set -e
      mount -t tmpfs -o mode=755 tso-run /run
      mkdir -p /run/docker/plugins
      mount --bind "$1" /run/docker/plugins
      mount --bind "$2" /etc/resolv.conf
      mount --bind "$3" "$3"
      mount --make-shared "$3"' sh "$(host_plugins "$i")" "$LAB_DATA/resolv.conf" "$(host_data "$i")/tsoverlay-state"
}

host_mntns_down() {
  local f; f=$(host_mntns "$1")
  findmnt -rn "$f" >/dev/null 2>&1 && umount "$f"
  rm -f "$f"
}

# Starts (or restarts) dockerd of host $1, of the lab's Docker version ($LAB_DOCKER).
dockerd_start() {
  local i=$1 data bin; data=$(host_data "$i")
  bin=$(docker_bin_dir "${LAB_DOCKER:?}")
  mkdir -p "$data/exec" "$data/docker" "$data/tsoverlay-state" "$data/api" "$(host_plugins "$i")"
  # Containers ask the plugin's name service first (the gateway bridge's address), then the host's resolver.
  # The lab's registry speaks HTTP (registry.sh): insecure-registries lets `docker plugin install` use it.
  [ -f "$data/daemon.json" ] || printf '{"dns": ["%s", "%s"], "insecure-registries": ["%s"]}\n' "$LAB_NAME_SERVER" "$OUT_PREFIX.2" "$LAB_REGISTRY" >"$data/daemon.json"
  host_mntns_up "$i"
  # dockerd finds containerd, runc and docker-proxy in PATH: that version's own first.
  setsid nsenter --mount="$(host_mntns "$i")" --net="/run/netns/$(host_ns "$i")" \
    env PATH="${bin:+$bin:}$PATH" "${bin:-/usr/sbin}/dockerd" --data-root "$data/docker" --exec-root "$data/exec" --pidfile "$data/docker.pid" \
      -H "unix://$(host_sock "$i")" -H "unix://$data/api/docker.sock" --config-file "$data/daemon.json" --cgroup-parent "/$(host_ns "$i")" \
      >>"$data/dockerd.log" 2>&1 </dev/null &
  echo $! >"$LAB_RUN/pids/dockerd-h$i.pid"
}

dockerd_wait() {
  wait_for 60 dk "$1" info || die "dockerd on h$1 did not start (log: $(host_data "$1")/dockerd.log)"
}

# Stops dockerd of host $1 the way a host shutdown does (containers and
# plugins are stopped by the daemon itself); its mount namespace stays.
dockerd_stop() {
  local pidf="$LAB_RUN/pids/dockerd-h$1.pid" pid
  [ -f "$pidf" ] || return 0
  pid=$(cat "$pidf")
  kill -TERM "$pid" 2>/dev/null || true
  wait_for 60 not_running "$pid" || kill -KILL "$pid" 2>/dev/null || true
}

# The cgroups dockerd of host $1 puts its containers in (--cgroup-parent), in every hierarchy.
host_cgroups() { find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d -name "$(host_ns "$1")" 2>/dev/null; }

# Kills every container process of host $1 (they live in their own network namespaces).
kill_host_containers() {
  local cg pid
  local -a pids
  for cg in $(host_cgroups "$1"); do
    mapfile -t pids < <(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  done
}

remove_host_cgroups() {
  local cg
  for cg in $(host_cgroups "$1"); do find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true; done
}

# Host $1 dies at once, as if powered off: off the underlay, and every process
# it ran (dockerd, containerd, the plugin, the Consul agent, the containers)
# killed without a chance to clean up. Its mount namespace (and so the overlay
# namespaces the plugin had mounted) survives, as a disk would.
host_kill() {
  local i=$1 pid
  in_ns "$(host_ns "$i")" ip link set eth0 down
  for pid in $(ip netns pids "$(host_ns "$i")" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  kill_host_containers "$i"
}

# Host $1 comes back: on the underlay again, its Consul agent and dockerd started.
host_revive() {
  local i=$1
  in_ns "$(host_ns "$i")" ip link set eth0 up
  in_ns "$(host_ns "$i")" ip route replace default via "$UL_PREFIX.1"
  pidfile_running "$LAB_RUN/pids/consul-h$i.pid" || consul_agent_start "$i"
  dockerd_start "$i"
  dockerd_wait "$i"
}

dockerd_up() {
  local hosts=$1 i
  for i in $(seq 1 "$hosts"); do dockerd_start "$i"; done
  for i in $(seq 1 "$hosts"); do dockerd_wait "$i"; done
}

# Stops every container and plugin first so dockerd exits without leftovers.
dockerd_down() {
  local i
  local -a ids
  for i in $(seq 1 "$MAX_HOSTS"); do
    [ -S "$(host_sock "$i")" ] || continue
    mapfile -t ids < <(dk "$i" ps -aq 2>/dev/null || true)
    [ ${#ids[@]} -eq 0 ] || dk "$i" rm -f "${ids[@]}" >/dev/null 2>&1 || true
    dk "$i" plugin disable -f "$PLUGIN_NAME" >/dev/null 2>&1 || true
  done
  for i in $(seq 1 "$MAX_HOSTS"); do dockerd_stop "$i"; done
  for i in $(seq 1 "$MAX_HOSTS"); do kill_host_containers "$i"; done
  sleep 0.2
  for i in $(seq 1 "$MAX_HOSTS"); do remove_host_cgroups "$i"; host_mntns_down "$i"; done
  if findmnt -rn "$LAB_RUN/mnt" >/dev/null 2>&1; then umount "$LAB_RUN/mnt"; fi
}

not_running() { ! kill -0 "$1" 2>/dev/null; }
