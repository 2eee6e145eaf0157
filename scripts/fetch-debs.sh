#!/usr/bin/env bash
# Fetches the packages that are unpacked rather than installed, into
# $SPORE_DEV_CACHE/<arm64|amd64>/: for arm64, libfdt (its amd64 and arm64
# -dev packages conflict), busybox-static (guest payload) and Debian's cloud
# kernel (the aarch64 testbed's outer kernel); for amd64, busybox-static and
# the cloud kernel of the x86_64 testbed. Creates the cross sysroot overlay
# $SPORE_DEV_CACHE/arm64/sysroot.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

fdt=$(spore_arm64_pkg libfdt-dev)
fdt1=$(spore_arm64_pkg libfdt1)
spore_arm64_pkg busybox-static >/dev/null
kpkg=$(spore_cloud_kernel_pkg)
[ -n "$kpkg" ] || spore_die "cannot resolve the linux-image-*-cloud-arm64 package"
spore_arm64_pkg "$kpkg" >/dev/null
spore_deb_pkg amd64 busybox-static >/dev/null
kpkg=$(spore_cloud_kernel_pkg amd64)
[ -n "$kpkg" ] || spore_die "cannot resolve the linux-image-*-cloud-amd64 package"
spore_deb_pkg amd64 "$kpkg" >/dev/null

sys=$SPORE_DEV_CACHE/arm64/sysroot
stamp="$fdt $fdt1"
if [ "$(cat "$sys/.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$sys" && mkdir -p "$sys"
  cp -a "$fdt"/usr "$sys"/ && cp -an "$fdt1"/usr "$sys"/ 2>/dev/null || true
  echo "$stamp" > "$sys/.stamp"
fi
spore_log "unpacked packages ready in $SPORE_DEV_CACHE/arm64 and $SPORE_DEV_CACHE/amd64"
