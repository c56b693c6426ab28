# The managed plugin's rootfs. No registry is reachable where tsoverlay is
# built and tested, so the base is made locally (scripts/base-image.sh:
# debootstrap'd Debian + the Node runtime pinned in scripts/plugin-node, `docker import`ed).
# No default: the tag is derived from what the base holds (Node version,
# packages); scripts/plugin-build.sh passes the one base-image.sh prints.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
WORKDIR /opt/tsoverlay
COPY package.json package-lock.json ./
COPY node_modules ./node_modules
COPY dist ./dist
# WireGuard in userspace, for kernels without it (scripts/wireguard-go-build.sh); `wg` comes with the base.
COPY wireguard-go /usr/local/bin/wireguard-go
RUN mkdir -p /run/docker/plugins /run/tsoverlay /run/tsoverlay-docker-plugins /var/lib/tsoverlay /host/proc/sys/net
ENTRYPOINT ["/usr/local/bin/node", "/opt/tsoverlay/dist/plugin/main.js"]
