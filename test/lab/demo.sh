#!/usr/bin/env bash
# `npm run demo`: a 2-host lab, one tsoverlay network on both hosts, a
# container on each, a cross-host ping and HTTP fetch — then the commands to
# keep exploring. Leaves the lab up; `npm run lab -- down` removes it.
set -euo pipefail
LAB_DIR=$(cd "$(dirname "$0")" && pwd)
. "$LAB_DIR/lib/common.sh"
[ "$(id -u)" = 0 ] || die "the demo needs root (namespaces, dockerd): run it with sudo"

if [ -e "$LAB_STATE" ]; then
  log "a lab is already up: reusing it"
else
  bash "$LAB_DIR/lab.sh" up --hosts 2
fi

NET=demo
SUBNET=10.99.0.0/24
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

for h in 1 2; do
  if ! dk "$h" network inspect "$NET" >/dev/null 2>&1; then
    step "docker -H unix://$(host_sock "$h") network create -d tsoverlay --ipam-driver tsoverlay --subnet $SUBNET $NET"
    dk "$h" network create -d tsoverlay --ipam-driver tsoverlay --subnet "$SUBNET" "$NET"
  fi
  dk "$h" rm -f "demo-h$h" >/dev/null 2>&1 || true
  step "docker -H unix://$(host_sock "$h") run -d --name demo-h$h --network $NET $TEST_IMAGE httpd -f -p 80 -h /var/www"
  dk "$h" run -d --name "demo-h$h" --network "$NET" "$TEST_IMAGE" httpd -f -p 80 -h /var/www
done
ip1=$(dk 1 inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" demo-h1)
ip2=$(dk 2 inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" demo-h2)
echo "demo-h1 on h1 ($(host_addr 1)) has $ip1; demo-h2 on h2 ($(host_addr 2)) has $ip2"

step "docker -H unix://$(host_sock 1) exec demo-h1 ping -c 3 $ip2"
dk 1 exec demo-h1 ping -c 3 "$ip2"
step "docker -H unix://$(host_sock 2) exec demo-h2 wget -qO- http://$ip1/"
dk 2 exec demo-h2 wget -qO- "http://$ip1/"

cat <<EOT

tsoverlay works across hosts: demo-h1 on h1 and demo-h2 on h2 share $NET ($SUBNET) over VXLAN.
Keep exploring:
  docker -H unix://$(host_sock 1) network inspect $NET
  docker -H unix://$(host_sock 2) exec -it demo-h2 sh
  docker -H unix://$(host_sock 1) run --rm --network $NET $TEST_IMAGE ping -c 2 $ip2
  nsenter --net=/run/netns/$(host_ns 1) $CONSUL_BIN kv get -recurse tsoverlay/v1/
  npm run lab -- status
  npm run lab -- down        # removes everything
EOT
