#!/usr/bin/env bash
# Builds (once) and caches the outer environment of one testbed
# architecture: Debian's cloud kernel of that architecture plus a base
# initramfs (static busybox, the virtio and KVM modules,
# scripts/testbed/init). Prints the cache directory, which holds `kernel`
# and `base.cpio`.
#
#   scripts/testbed/base.sh aarch64|x86_64
#
# The directory is $SPORE_DEV_CACHE/testbed/<key>, where <key> hashes every
# input: the architecture, both package versions, the module list and the
# harness scripts themselves. A finished directory is never modified, and it
# appears with a single rename, so concurrent first runs at worst build twice.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ARCH=${1:-}
# What the guest init needs from the module tree; dependencies are added from
# modules.dep. Modules that a future kernel builds in are skipped.
case $ARCH in
  aarch64)
    DEB_ARCH=arm64
    # KVM is built into the arm64 cloud kernel; QEMU's virt board has virtio-mmio.
    MODULES=(virtio_mmio virtio_console virtiofs) ;;
  x86_64)
    DEB_ARCH=amd64
    # QEMU's pc board has PCI; KVM and its AMD part are modules here.
    MODULES=(virtio_pci virtio_console virtiofs kvm_amd) ;;
  *) printf 'usage: %s aarch64|x86_64\n' "${0##*/}" >&2; exit 2 ;;
esac

TB_CACHE=$SPORE_DEV_CACHE/testbed

say() { printf 'testbed: %s\n' "$*" >&2; }
die() { printf 'testbed: error: %s\n' "$*" >&2; exit 1; }

# Sets KDIR and BBDIR to the unpacked kernel and busybox packages of DEB_ARCH.
# Asking apt costs about a second per query here (no pkgcache), which would
# be most of a short run's overhead, so the answer is remembered per state of
# apt's package lists: it can only change when those do.
resolve_packages() {
  local stamp memo kpkg
  stamp=$({ dpkg --print-foreign-architectures
            stat -c '%n %s %Y' /var/lib/apt/lists/*_Packages* 2>/dev/null || true
          } | spore_hash)
  memo=$TB_CACHE/apt-$DEB_ARCH-$stamp
  if [ -f "$memo" ]; then
    { read -r KDIR; read -r BBDIR; } <"$memo"
    [ -f "$KDIR/.complete" ] && [ -f "$BBDIR/.complete" ] && return 0
  fi
  kpkg=$(spore_cloud_kernel_pkg "$DEB_ARCH")
  [ -n "$kpkg" ] || die "cannot resolve the linux-image-*-cloud-$DEB_ARCH package (run scripts/setup.sh)"
  KDIR=$(spore_deb_pkg "$DEB_ARCH" "$kpkg")
  BBDIR=$(spore_deb_pkg "$DEB_ARCH" busybox-static)
  rm -f "$TB_CACHE"/apt-"$DEB_ARCH"-*
  printf '%s\n%s\n' "$KDIR" "$BBDIR" >"$memo.$$"
  mv -f "$memo.$$" "$memo"
}

# Prints the module files to load, relative to lib/modules/<kver>, each
# after everything it depends on. The .deb ships no modules.dep (depmod runs
# at install time), so generate one in a scratch tree; depmod reads foreign
# (arm64 on x86_64) modules fine.
module_order() {
  local kmods=$1 scratch=$2 kver line mod rest name path
  local -A deps=() bypath=() seen=()
  kver=${kmods##*/}
  mkdir -p "$scratch/lib/modules/$kver"
  ln -s "$kmods/kernel" "$scratch/lib/modules/$kver/kernel"
  cp "$kmods"/modules.order "$kmods"/modules.builtin* "$scratch/lib/modules/$kver/"
  depmod -b "$scratch" "$kver"
  while IFS= read -r line; do
    mod=${line%%:*} rest=${line#*:}
    deps[$mod]=$rest
    name=${mod##*/} name=${name%.ko}
    bypath[${name//-/_}]=$mod
  done <"$scratch/lib/modules/$kver/modules.dep"

  visit() {
    local m=$1 dep
    [ -z "${seen[$m]:-}" ] || return 0
    seen[$m]=1
    # modules.dep lists the whole closure; recursing still puts each module
    # after its own dependencies.
    for dep in ${deps[$m]}; do visit "$dep"; done
    printf '%s\n' "$m"
  }
  for name in "${MODULES[@]}"; do
    path=${bypath[${name//-/_}]:-}
    if [ -z "$path" ]; then
      grep -q "/${name}\.ko\$" "$kmods/modules.builtin" && continue
      die "module $name is neither in modules.dep nor built in"
    fi
    visit "$path"
  done
}

BUILD_TMP=
build() {
  local out=$1 tmp kmods kimg root m
  mkdir -p "$TB_CACHE"
  tmp=$(mktemp -d "$TB_CACHE/.build.XXXXXX")
  BUILD_TMP=$tmp
  trap 'rm -rf "$BUILD_TMP"' EXIT

  kmods=$(echo "$KDIR"/lib/modules/*)
  [ -d "$kmods/kernel" ] || die "no module tree in $KDIR"
  kimg=$(echo "$KDIR"/boot/vmlinuz-*)
  [ -f "$kimg" ] || die "no kernel image in $KDIR/boot"

  root=$tmp/root
  mkdir -p "$root"/{bin,dev,proc,sys,tmp,root,testbed,lib/modules}
  cp "$BBDIR/bin/busybox" "$root/bin/busybox"
  install -m 755 "$SPORE_ROOT/scripts/testbed/init" "$root/init"
  # The kernel opens /dev/console for init before anything is mounted.
  mknod -m 600 "$root/dev/console" c 5 1
  module_order "$kmods" "$tmp/scratch" >"$tmp/order"
  while IFS= read -r m; do
    cp "$kmods/$m" "$root/lib/modules/"
    printf '%s\n' "${m##*/}" >>"$root/lib/modules/load-order"
  done <"$tmp/order"

  # Uncompressed: under the emulator, copying is cheaper than inflating, and
  # the per-run cpio is simply appended to this one.
  (cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio -o -0 -H newc -R 0:0 --quiet) >"$tmp/base.cpio"
  # The .deb's vmlinuz is what QEMU's -kernel takes: a raw Image on arm64, a
  # bzImage on x86_64. Same filesystem as the package cache, so a hard link
  # costs no space.
  ln "$kimg" "$tmp/kernel" 2>/dev/null || cp "$kimg" "$tmp/kernel"
  printf 'arch %s\nkernel %s\nbusybox %s\nmodules %s\n' "$ARCH" "${KDIR##*/}" "${BBDIR##*/}" \
    "$(tr '\n' ' ' <"$tmp/order")" >"$tmp/inputs"
  rm -rf "$root" "$tmp/scratch" "$tmp/order"
  chmod 755 "$tmp"
  touch "$tmp/.complete"

  # rename(2) onto an existing non-empty directory fails: then another run
  # won the race and its result is just as good.
  if ! mv -T "$tmp" "$out" 2>/dev/null; then
    [ -f "$out/.complete" ] || die "could not create $out"
  fi
  # Drop environments nobody has used for a week (old harness versions).
  find "$TB_CACHE" -mindepth 1 -maxdepth 1 -type d -mtime +7 ! -name "${out##*/}" -exec rm -rf {} + 2>/dev/null || true
}

main() {
  local key out f
  mkdir -p "$TB_CACHE"
  resolve_packages
  key=$({
    printf 'arch %s\nkernel %s\nbusybox %s\nmodules %s\n' "$ARCH" "${KDIR##*/}" "${BBDIR##*/}" "${MODULES[*]}"
    for f in "$SPORE_ROOT"/scripts/lib.sh "$SPORE_ROOT"/scripts/testbed.sh "$SPORE_ROOT"/scripts/testbed/*; do
      printf '== %s\n' "${f##*/}"
      cat "$f"
    done
  } | spore_hash)
  out=$TB_CACHE/$key
  if [ -f "$out/.complete" ]; then
    touch "$out"   # marks it used, for the pruning above
  else
    say "building outer environment (once) in $out"
    build "$out"
  fi
  printf '%s\n' "$out"
}

main "$@"
