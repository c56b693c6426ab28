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
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # Debian's docker.io may start a root-namespace dockerd where an init system
  # runs; the lab never uses it and does not touch it.
}

# Consul refuses `go install module@version` (its go.mod has replace
# directives): download the module, copy it somewhere writable, drop the
# replaces (the submodule versions it requires are published) and build.
ensure_consul() {
  [ -x "$CONSUL_BIN" ] && return 0
  command -v go >/dev/null || die "Go toolchain not found: needed to build Consul $CONSUL_VERSION"
  log "building Consul $CONSUL_VERSION from its Go module (first run only; several minutes)"
  local work; work=$(mktemp -d /tmp/tso-consul-build.XXXXXX)
  local dir
  dir=$(cd "$work" && go mod download -json "github.com/hashicorp/consul@$CONSUL_VERSION" | jq -r .Dir)
  [ -d "$dir" ] || die "go mod download of consul $CONSUL_VERSION failed"
  cp -r "$dir" "$work/src"
  chmod -R u+w "$work/src"
  local m
  for m in api envoyextensions proto-public sdk troubleshoot; do
    (cd "$work/src" && go mod edit -dropreplace="github.com/hashicorp/consul/$m")
  done
  mkdir -p "$(dirname "$CONSUL_BIN")"
  (cd "$work/src" && GOFLAGS=-mod=mod go build -trimpath -o "$CONSUL_BIN.tmp" .) || die "consul build failed"
  mv "$CONSUL_BIN.tmp" "$CONSUL_BIN"
  rm -rf "$work"
  "$CONSUL_BIN" version | head -1 >&2
}
