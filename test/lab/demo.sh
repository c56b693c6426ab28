#!/usr/bin/env bash
# `npm run demo`: a 2-host lab, one tsoverlay network on both hosts, a
# container on each, a cross-host ping and HTTP fetch — then the commands to
# keep exploring. Leaves the lab up; `npm run lab -- down` removes it.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
LAB_DIR=$(cd "$(dirname "$0")" && pwd)
. "$LAB_DIR/lib/common.sh"
REPO=$(cd "$LAB_DIR/../.." && pwd)
bash "$REPO/scripts/preflight.sh" || die "fix the above first (scripts/preflight.sh checks it again)"

if [ -e "$LAB_STATE" ]; then
  log "a lab is already up: reusing it"
else
  bash "$LAB_DIR/lab.sh" up --hosts 2
fi

NET=demo
SUBNET=10.99.0.0/24
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

# Created once, on h1: the plugin creates it on h2 too.
if ! dk 1 network inspect "$NET" >/dev/null 2>&1; then
  step "docker -H unix://$(host_sock 1) network create -d tsoverlay --ipam-driver tsoverlay --subnet $SUBNET $NET"
  dk 1 network create -d tsoverlay --ipam-driver tsoverlay --subnet "$SUBNET" "$NET"
fi
step "docker -H unix://$(host_sock 2) network ls --filter driver=tsoverlay"
wait_for 10 dk 2 network inspect "$NET" || die "$NET did not reach h2"
dk 2 network ls --filter driver=tsoverlay

dk 1 rm -f demo-web >/dev/null 2>&1 || true
dk 2 rm -f demo-client >/dev/null 2>&1 || true
step "docker -H unix://$(host_sock 1) run -d --name demo-web --network $NET -p 8080:80 $TEST_IMAGE httpd -f -p 80 -h /var/www"
dk 1 run -d --name demo-web --network "$NET" -p 8080:80 "$TEST_IMAGE" httpd -f -p 80 -h /var/www
step "docker -H unix://$(host_sock 2) run -d --name demo-client --network $NET $TEST_IMAGE sleep 3600"
dk 2 run -d --name demo-client --network "$NET" "$TEST_IMAGE" sleep 3600

# By name, from h2 to h1 (the name service; the daemons' "dns" setting points at it).
step "docker -H unix://$(host_sock 2) exec demo-client ping -c 3 demo-web"
wait_for 10 dk 2 exec demo-client nslookup demo-web || die "demo-web does not resolve on h2"
dk 2 exec demo-client ping -c 3 demo-web
step "docker -H unix://$(host_sock 2) exec demo-client wget -qO- http://demo-web/"
dk 2 exec demo-client wget -qO- http://demo-web/
# A published port, from outside the cluster.
step "nsenter --net=/run/netns/$NS_OUTSIDE curl -s http://$(host_addr 1):8080/"
in_ns "$NS_OUTSIDE" curl -s "http://$(host_addr 1):8080/"
# What docker ps cannot show: every container of the cluster, with its host and published port.
# (The port reaches the cluster record beside Docker's call: give it a moment.)
demo_port_recorded() { node "$REPO/dist/cli/main.js" --socket "$(host_plugins 2)/tsoverlay.sock" ports --json | grep -q '"hostPort": 8080'; }
wait_for 10 demo_port_recorded || true
step "npx tsoverlay --socket $(host_plugins 2)/tsoverlay.sock ps"
node "$REPO/dist/cli/main.js" --socket "$(host_plugins 2)/tsoverlay.sock" ps

cat <<EOT

tsoverlay works across hosts: $NET ($SUBNET) was created once, on h1, and is on h2 too;
demo-client on h2 reaches demo-web on h1 by name over VXLAN, and the outside reaches
demo-web through h1's published port 8080.
Keep exploring:
  docker -H unix://$(host_sock 2) network inspect $NET
  docker -H unix://$(host_sock 2) exec -it demo-client sh
  npx tsoverlay --socket $(host_plugins 1)/tsoverlay.sock hosts      # also: networks, ports, peers, doctor, probe
  curl --unix-socket $(host_plugins 1)/tsoverlay.sock http://x/tsoverlay/status
  npm run lab -- consul kv get -recurse tsoverlay/v1/     # the consul CLI on h1, as the lab's operator (TLS, management token)
  npm run lab -- status
  npm run lab -- down        # removes everything
EOT
