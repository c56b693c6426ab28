# shellcheck shell=bash
# Debian packages and the Consul build the lab needs; each step is skipped when
# already satisfied, so a warm machine starts fast.

ensure_packages() {
  local missing=()
  command -v dockerd >/dev/null && [ -x /usr/bin/docker ] || missing+=(docker.io)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v bridge >/dev/null || missing+=(iproute2)
  command -v iptables >/dev/null || missing+=(iptables)
  [ -x /bin/busybox ] && /bin/busybox --list | grep -qx httpd || missing+=(busybox-static)
  command -v iperf3 >/dev/null || missing+=(iperf3)
  command -v socat >/dev/null || missing+=(socat)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v nsenter >/dev/null && command -v unshare >/dev/null || missing+=(util-linux)
  command -v curl >/dev/null || missing+=(curl)
  command -v jq >/dev/null || missing+=(jq)
  command -v ping >/dev/null || missing+=(iputils-ping)
  command -v pgrep >/dev/null || missing+=(procps)
  # Encrypted networks' tests: captures on the underlay, and `wg` to remove a peer by hand.
  command -v tcpdump >/dev/null || missing+=(tcpdump)
  command -v wg >/dev/null || missing+=(wireguard-tools)
  # For the Docker 28/29 builds: runc with seccomp, and nft for Docker 29's nftables firewall backend.
  [ -e /usr/include/seccomp.h ] || missing+=(libseccomp-dev)
  command -v nft >/dev/null || missing+=(nftables)
  command -v findmnt >/dev/null || missing+=(util-linux)
  # The hosts' own resolver (a DNS server in the `outside` namespace): names that are not the overlay's.
  command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)
  # Not for the lab itself: `npm run lint:sh` checks the shell scripts with it.
  command -v shellcheck >/dev/null || missing+=(shellcheck)
  # The lab's plugin registry (registry.sh): the CNCF Distribution registry, Debian's build.
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  # Nor this: the text of the benches' PNG charts (test/bench/charts.ts).
  [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    apt_install_quietly "${missing[@]}"
  fi
}

# apt-get install that starts no service: Debian's docker.io would start a
# root-namespace dockerd (and dnsmasq, nftables their units) where an init
# system runs, and the lab wants none of them. Debian's own switch for that
# is /usr/sbin/policy-rc.d answering 101 ("action forbidden"); one the
# machine already has is left as it is.
apt_install_quietly() {
  local prc=/usr/sbin/policy-rc.d
  if [ -e "$prc" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    return
  fi
  (
    trap 'rm -f "$prc"' EXIT
    printf '#!/bin/sh\n# tsoverlay lab: installing packages, starting no service\nexit 101\n' >"$prc"
    chmod 755 "$prc"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  )
}

# Consul refuses `go install module@version` (its go.mod has replace
# directives): download the module, copy it somewhere writable, drop the
# replaces (the submodule versions it requires are published) and build.
ensure_consul() {
  [ -x "$CONSUL_BIN" ] && return 0
  command -v go >/dev/null || die "Go toolchain not found: needed to build Consul $CONSUL_VERSION"
  log "building Consul $CONSUL_VERSION from its Go module (first run only; several minutes)"
  local work; work=$(mktemp -d /tmp/tso-consul-build.XXXXXX)
  # The build runs in a subshell whose EXIT trap removes the work dir however
  # it ends: done, a failing command (set -e) or die. Its failure fails the caller.
  (
    trap 'rm -rf "$work"' EXIT
    local dir m
    dir=$(cd "$work" && go mod download -json "github.com/hashicorp/consul@$CONSUL_VERSION" | jq -r .Dir)
    [ -d "$dir" ] || die "go mod download of consul $CONSUL_VERSION failed"
    cp -r "$dir" "$work/src"
    chmod -R u+w "$work/src"
    for m in api envoyextensions proto-public sdk troubleshoot; do
      (cd "$work/src" && go mod edit -dropreplace="github.com/hashicorp/consul/$m")
    done
    mkdir -p "$(dirname "$CONSUL_BIN")"
    (cd "$work/src" && GOFLAGS=-mod=mod go build -trimpath -o "$CONSUL_BIN.tmp" .) || die "consul build failed"
    mv "$CONSUL_BIN.tmp" "$CONSUL_BIN"
  )
  "$CONSUL_BIN" version | head -1 >&2
}

# ---------------------------------------------------------------- Docker
# The lab runs one of three Docker versions (lab.sh up --docker 29|28|20.10).
# 20.10 is Debian's docker.io. 28 and 29 are built once from the Go module
# proxy with the static build tags moby's own hack/make.sh uses, and cached
# with their docker-proxy (and, for 29, runc 1.5.1: Debian's runc 1.1.5 cannot
# start containers or managed plugins on 29.5+, "namespace {time} does not
# exist"). Debian's containerd 1.6.20 serves all three. One CLI, 28.5.2,
# talks to all three daemons (the 20.10 CLI is too old for 29.0-29.2 and
# lacks flags such as --ipv4 and --gw-priority).
DOCKER_CLI_VERSION=28.5.2
DOCKER_CLI_BIN="$LAB_CACHE/docker-cli-$DOCKER_CLI_VERSION/docker"  # common.sh names the same path
RUNC_VERSION=1.5.1

# The full version the lab runs for a short one.
docker_full_version() {
  case $1 in
    29) echo 29.8.1 ;;
    28) echo 28.5.2 ;;
    20.10) echo 20.10 ;;
    *) die "unknown Docker version $1 (the lab runs 29, 28 or 20.10)" ;;
  esac
}

# Folder whose binaries come first in PATH for that version's dockerd (empty: Debian's).
docker_bin_dir() {
  case $1 in
    20.10) echo "" ;;
    *) echo "$LAB_CACHE/docker-$(docker_full_version "$1")/bin" ;;
  esac
}

go_env() { env GOFLAGS=-buildvcs=false GOTOOLCHAIN=local GOGC=1000 GO111MODULE=on "$@"; }

# Copies Go module $1@$2 into a fresh writable folder and prints its path.
go_module_copy() {
  local mod=$1 ver=$2 work dir
  work=$(mktemp -d /tmp/tso-go-build.XXXXXX)
  dir=$(cd "$work" && go_env go mod download -json "$mod@$ver" | jq -r .Dir)
  # The callers remove $work when their build fails, but have no path yet if this does.
  if [ ! -d "$dir" ]; then rm -rf "$work"; die "go mod download of $mod@$ver failed"; fi
  cp -r "$dir" "$work/src"
  chmod -R u+w "$work/src"
  echo "$work"
}

# Builds dockerd and docker-proxy of moby module $2@$3 as version $1 into $4.
# $5: "vendor" when the module has vendor.mod instead of go.mod (28.x); $6: build tags.
build_moby() {
  local version=$1 mod=$2 ver=$3 out=$4 layout=$5 tags=$6 work pkg ldf
  command -v go >/dev/null || die "Go toolchain not found: needed to build Docker $version"
  log "building dockerd and docker-proxy $version from $mod@$ver (first run only; about 4 minutes)"
  work=$(go_module_copy "$mod" "$ver")
  # Not `( … ) || die`: bash ignores set -e inside a subshell that is tested,
  # so a failing step would go unnoticed. The subshell fails by itself, and
  # cleans up on the way out.
  (
    trap 'rm -rf "$work"' EXIT
    trap 'log "building Docker $version failed"' ERR
    cd "$work/src" || exit
    local modflag=()
    if [ "$layout" = vendor ]; then
      cp vendor.mod go.mod && cp vendor.sum go.sum && rm -rf vendor
      go_env go mod vendor >/dev/null
      modflag=(-mod=vendor)
    else
      go_env go mod download >/dev/null
    fi
    pkg="$mod/dockerversion"
    ldf="-w -X $pkg.Version=$version -X $pkg.GitCommit=tsoverlay-lab -X $pkg.BuildTime=$(date -u +%FT%TZ) -X $pkg.PlatformName=tsoverlay-lab"
    mkdir -p "$out"
    go_env CGO_ENABLED=1 go build "${modflag[@]}" -tags "$tags" -ldflags "$ldf -extldflags -static" -o "$out/dockerd.tmp" ./cmd/dockerd
    go_env CGO_ENABLED=0 go build "${modflag[@]}" -tags "$tags" -ldflags "$ldf" -o "$out/docker-proxy" ./cmd/docker-proxy
    mv "$out/dockerd.tmp" "$out/dockerd"
  )
}

build_runc() {
  local out=$1 work
  log "building runc $RUNC_VERSION (seconds)"
  work=$(go_module_copy github.com/opencontainers/runc "v$RUNC_VERSION")
  (
    trap 'rm -rf "$work"' EXIT
    trap 'log "building runc $RUNC_VERSION failed"' ERR
    cd "$work/src" || exit
    go_env CGO_ENABLED=1 go build -trimpath -tags "seccomp urfave_cli_no_docs" \
      -ldflags "-X main.version=$RUNC_VERSION -X main.gitCommit=tsoverlay-lab" -o "$out/runc.tmp" .
    mv "$out/runc.tmp" "$out/runc"
  )
}

ensure_docker_cli() {
  [ -x "$DOCKER_CLI_BIN" ] && return 0
  command -v go >/dev/null || die "Go toolchain not found: needed to build the Docker CLI $DOCKER_CLI_VERSION"
  log "building the Docker CLI $DOCKER_CLI_VERSION (first run only)"
  local work; work=$(go_module_copy github.com/docker/cli "v$DOCKER_CLI_VERSION+incompatible")
  (
    trap 'rm -rf "$work"' EXIT
    trap 'log "building the Docker CLI failed"' ERR
    cd "$work/src" || exit
    cp vendor.mod go.mod && cp vendor.sum go.sum && rm -rf vendor
    go_env go mod vendor >/dev/null
    mkdir -p "$(dirname "$DOCKER_CLI_BIN")"
    go_env CGO_ENABLED=0 go build -mod=vendor -tags "osusergo netgo" \
      -ldflags "-w -X github.com/docker/cli/cli/version.Version=$DOCKER_CLI_VERSION -X github.com/docker/cli/cli/version.GitCommit=tsoverlay-lab" \
      -o "$DOCKER_CLI_BIN.tmp" ./cmd/docker
    mv "$DOCKER_CLI_BIN.tmp" "$DOCKER_CLI_BIN"
  )
  # shellcheck disable=SC2034 # DOCKER_CLI is common.sh's, read by dk
  DOCKER_CLI=$DOCKER_CLI_BIN
}

# Makes sure Docker version $1 can run (building it if needed).
ensure_docker() {
  local v=$1 dir; dir=$(docker_bin_dir "$v")
  case $v in
    20.10) command -v /usr/sbin/dockerd >/dev/null || die "Debian's docker.io (dockerd 20.10) is not installed" ;;
    28) [ -x "$dir/dockerd" ] || build_moby 28.5.2 github.com/docker/docker v28.5.2+incompatible "$dir" vendor \
          "netgo osusergo static_build exclude_graphdriver_btrfs" ;;
    29) [ -x "$dir/dockerd" ] || build_moby 29.8.1 github.com/moby/moby/v2 v2.0.0-beta.24 "$dir" gomod \
          "netgo osusergo static_build nri_no_wasm exclude_graphdriver_btrfs"
        [ -x "$dir/runc" ] || build_runc "$dir" ;;
  esac
  ensure_docker_cli
}
