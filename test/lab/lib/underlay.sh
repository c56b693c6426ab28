# shellcheck shell=bash
# The underlay: one bridge in a namespace of its own (a bridge in the root
# namespace would be filtered by the root namespace's iptables and
# br_netfilter), every host and Consul server on it, and an `outside`
# namespace routed behind it that stands in for the internet.

new_ns() {
  ip netns add "$1"
  in_ns "$1" ip link set lo up
}

# Connects namespace $1 to the underlay bridge as $2/24 with peer name $3.
attach_to_underlay() {
  local ns=$1 addr=$2 peer=$3 mtu=$4
  ip link add eth0 netns "$ns" mtu "$mtu" type veth peer name "$peer" netns "$NS_UNDERLAY" mtu "$mtu"
  in_ns "$NS_UNDERLAY" ip link set "$peer" master "$UL_BRIDGE" up
  in_ns "$ns" ip addr add "$addr/24" dev eth0
  in_ns "$ns" ip link set eth0 up
  in_ns "$ns" ip route add default via "$UL_PREFIX.1"
}

underlay_up() {
  local hosts=$1 mtu=$2 i
  new_ns "$NS_UNDERLAY"
  in_ns "$NS_UNDERLAY" ip link add "$UL_BRIDGE" mtu "$mtu" type bridge
  in_ns "$NS_UNDERLAY" ip addr add "$UL_PREFIX.1/24" dev "$UL_BRIDGE"
  in_ns "$NS_UNDERLAY" ip link set "$UL_BRIDGE" up
  in_ns "$NS_UNDERLAY" sysctl -qw net.ipv4.ip_forward=1

  new_ns "$NS_OUTSIDE"
  ip link add eth0 netns "$NS_OUTSIDE" mtu "$mtu" type veth peer name out0 netns "$NS_UNDERLAY" mtu "$mtu"
  in_ns "$NS_UNDERLAY" ip addr add "$OUT_PREFIX.1/24" dev out0
  in_ns "$NS_UNDERLAY" ip link set out0 up
  in_ns "$NS_OUTSIDE" ip addr add "$OUT_PREFIX.2/24" dev eth0
  in_ns "$NS_OUTSIDE" ip link set eth0 up
  in_ns "$NS_OUTSIDE" ip route add default via "$OUT_PREFIX.1"

  for i in $(seq 1 "$CONSUL_SERVERS"); do
    new_ns "$(consul_ns "$i")"
    attach_to_underlay "$(consul_ns "$i")" "$(consul_addr "$i")" "c$i" "$mtu"
  done
  for i in $(seq 1 "$hosts"); do
    new_ns "$(host_ns "$i")"
    attach_to_underlay "$(host_ns "$i")" "$(host_addr "$i")" "h$i" "$mtu"
  done
}

# The `outside` server: busybox httpd with a CGI that echoes the client's
# address, so egress tests can see which source address arrived.
outside_up() {
  local www="$LAB_DATA/outside/www"
  mkdir -p "$www/cgi-bin"
  echo "hello from outside" >"$www/index.html"
  cat >"$www/cgi-bin/whoami" <<'CGI'
#!/bin/sh
# busybox httpd listens dual-stack: IPv4 clients arrive as [::ffff:a.b.c.d].
addr=${REMOTE_ADDR#\[::ffff:}
addr=${addr%\]}
printf 'Content-Type: text/plain\r\n\r\n%s\n' "$addr"
CGI
  chmod +x "$www/cgi-bin/whoami"
  spawn_in_ns "$NS_OUTSIDE" "$LAB_DATA/outside/httpd.log" outside-httpd \
    /bin/busybox httpd -f -p 80 -h "$www"
  wait_for 10 in_ns "$NS_OUTSIDE" curl -sf "http://$OUT_PREFIX.2/" || die "outside httpd did not start"
  # The hosts' resolver (their /etc/resolv.conf names it): knows the outside server as $OUTSIDE_NAME.
  spawn_in_ns "$NS_OUTSIDE" "$LAB_DATA/outside/dnsmasq.log" outside-dns \
    dnsmasq --keep-in-foreground --log-facility=- --no-resolv --no-hosts --bind-interfaces \
      --listen-address="$OUT_PREFIX.2" --address="/$OUTSIDE_NAME/$OUT_PREFIX.2" --local=/lab/ --pid-file=
  wait_for 10 in_ns "$NS_OUTSIDE" /bin/busybox nslookup -type=a "$OUTSIDE_NAME" "$OUT_PREFIX.2" || die "the outside resolver did not start (log: $LAB_DATA/outside/dnsmasq.log)"
  printf 'nameserver %s\n' "$OUT_PREFIX.2" >"$LAB_DATA/resolv.conf"
}

underlay_down() {
  local ns
  for ns in $(all_lab_namespaces); do
    if [ -e "/run/netns/$ns" ]; then ip netns del "$ns" 2>/dev/null || true; fi
  done
}
