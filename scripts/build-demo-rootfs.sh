#!/usr/bin/env bash
# Builds the embedded demo image's root tree from Debian's arm64
# busybox-static plus assets/demo/, and a read-only ext4 image of it. The
# tree is deterministic; mke2fs still stamps change times into the image, so
# the image bytes are not (spore-pack's own rootfs writer will be).
#
#   scripts/build-demo-rootfs.sh   -> out/demo/rootfs/ and out/aarch64/share/spore/demo-rootfs.img
set -euo pipefail
. "$(dirname "$0")/lib.sh"

bb_dir=$(spore_arm64_pkg busybox-static)
bb=$bb_dir/bin/busybox
tree=$SPORE_OUT/demo/rootfs
img=$SPORE_AARCH64_SHARE/demo-rootfs.img
stamp_key=$( (sha256sum "$bb" "$0"; find "$SPORE_ROOT/assets/demo" -type f -print0 | sort -z | xargs -0 sha256sum) | spore_hash)
if [ -f "$img" ] && [ "$(cat "$img.key" 2>/dev/null)" = "$stamp_key" ] && [ -d "$tree" ]; then
  exit 0
fi
spore_log "building the demo rootfs"

# The applet list is the NUL-separated name table busybox carries ("[", "[[",
# "acpid", ...); reading it avoids running an arm64 binary on this host.
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

# ext4, read-only use: no journal, no reserved blocks, fixed UUID, hash seed and time.
size_kb=$(( $(du -sk "$tree" | cut -f1) * 13 / 10 + 4096 ))
mkdir -p "$(dirname "$img")"
rm -f "$img.tmp"
E2FSPROGS_FAKE_TIME=1700000000 mke2fs -q -F -t ext4 -b 4096 -m 0 -O ^has_journal,^metadata_csum_seed \
  -U 5a0e5a0e-0000-4000-8000-000000000001 -E hash_seed=5a0e5a0e-0000-4000-8000-000000000002,root_owner=0:0 \
  -L spore-demo -d "$tree" "$img.tmp" "${size_kb}k" >/dev/null
mv "$img.tmp" "$img"
echo "$stamp_key" > "$img.key"
spore_log "demo rootfs: $count busybox applets, $(du -k "$img" | cut -f1) KiB image"
