# shellcheck shell=bash
# The test image: busybox-static (ip, ping, nc, wget, httpd, …) plus iperf3
# and socat (busybox's nc has no UDP) with their shared libraries, imported
# into every host (no registry here).

build_test_image_rootfs() {
  local root=$1 a lib
  rm -rf "$root"; mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,var/www,proc,sys,dev,root}
  cp /bin/busybox "$root/bin/busybox"
  for a in $(/bin/busybox --list-full); do
    [ -e "$root/$a" ] || ln -s /bin/busybox "$root/$a"
  done
  local bin
  for bin in iperf3 socat; do
    cp "$(command -v "$bin")" "$root/usr/bin/$bin"
    for lib in $(ldd "$(command -v "$bin")" | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
      mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"
    done
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  echo "tsoverlay test image" >"$root/var/www/index.html"
  chmod 1777 "$root/tmp"
}

images_up() {
  local hosts=$1 i root="$LAB_DATA/test-image"
  build_test_image_rootfs "$root"
  for i in $(seq 1 "$hosts"); do
    tar -C "$root" -c . | dk "$i" import -c 'CMD ["/bin/sh"]' - "$TEST_IMAGE" >/dev/null
  done
}
