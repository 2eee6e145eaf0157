#!/usr/bin/env bash
# Builds the embedded demo image's root tree from Debian's busybox-static
# (arm64, or amd64 with --arch x86_64) plus assets/demo/, and a read-only
# EROFS image of it with the project's own writer (spore-mkrootfs,
# doc/rootfs-format.md). Tree and image are deterministic: the same inputs
# give the same image bytes.
#
#   scripts/build-demo-rootfs.sh   -> out/demo/rootfs/ and out/aarch64/share/spore/demo-rootfs.img
#   scripts/build-demo-rootfs.sh --arch x86_64
#                                  -> out/demo/rootfs-x86_64/ and out/x86_64/share/spore/demo-rootfs.img
# Needs the host build (scripts/build.sh runs this after it).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

arch=aarch64
if [ "${1:-}" = --arch ]; then arch=${2:-}; fi
case $arch in
  aarch64) bb_dir=$(spore_deb_pkg arm64 busybox-static) tree=$SPORE_OUT/demo/rootfs img=$SPORE_AARCH64_SHARE/demo-rootfs.img ;;
  x86_64) bb_dir=$(spore_deb_pkg amd64 busybox-static) tree=$SPORE_OUT/demo/rootfs-x86_64 img=$SPORE_X86_64_SHARE/demo-rootfs.img ;;
  *) spore_die "usage: build-demo-rootfs.sh [--arch aarch64|x86_64]" ;;
esac
mkrootfs=$SPORE_OUT/bin/spore-mkrootfs
[ -x "$mkrootfs" ] || spore_die "$mkrootfs is missing: run scripts/build.sh"
bb=$bb_dir/bin/busybox
stamp_key=$( (sha256sum "$bb" "$0" "$mkrootfs"; find "$SPORE_ROOT/assets/demo" -type f -print0 | sort -z | xargs -0 sha256sum) | spore_hash)
if [ -f "$img" ] && [ "$(cat "$img.key" 2>/dev/null)" = "$stamp_key" ] && [ -d "$tree" ]; then
  exit 0
fi
spore_log "building the demo rootfs ($arch)"

# The applet list is the NUL-separated name table busybox carries ("[", "[[",
# "acpid", ...); reading it avoids running a binary of another architecture.
# (awk stops early, so tr may die of SIGPIPE: that is expected, hence || true.)
applets=$(tr '\0' '\n' < "$bb" | awk 'prev == "[" && $0 == "[[" { on = 1; print "[" } on { if ($0 == "") exit; print } { prev = $0 }' || true)
count=$(wc -l <<<"$applets")
for must in sh ls cat echo grep head sha256sum sleep id; do
  grep -qx "$must" <<<"$applets" || spore_die "busybox applet table not found or lacks '$must'"
done

rm -rf "$tree.tmp" && mkdir -p "$tree.tmp"
( cd "$tree.tmp"
  mkdir -p bin sbin usr/bin usr/sbin etc root tmp proc sys dev run var/tmp home
  chmod 1777 tmp var/tmp
  chmod 0700 root
  install -m 0755 "$bb" bin/busybox
  while read -r a; do [ "$a" = busybox ] || ln -s busybox "bin/$a"; done <<<"$applets"
  ln -s ../../bin/busybox usr/bin/env
  cp -r "$SPORE_ROOT"/assets/demo/etc/. etc/
  chmod 0644 etc/*
)
# Fixed timestamps so the image bytes do not depend on when it was built.
find "$tree.tmp" -exec touch -h -d @1700000000 {} +
rm -rf "$tree" && mv "$tree.tmp" "$tree"

# root:root whoever builds it; spore-mkrootfs replaces the image atomically.
mkdir -p "$(dirname "$img")"
"$mkrootfs" --root-owned --volume spore-demo "$tree" "$img"
echo "$stamp_key" > "$img.key"
spore_log "demo rootfs ($arch): $count busybox applets, $(du -k "$img" | cut -f1) KiB image"
