#!/usr/bin/env bash
# Builds the root filesystem the [attack] integration tests boot: the demo
# tree plus spore-attack (tests/guest/attack.cc), a hostile guest program.
# Test-only: the product's demo image never contains it.
#
#   scripts/build-test-rootfs.sh   -> out/test/attack-rootfs/ (tree, also packed by
#                                     tests/integration/pack-apps.sh),
#                                     out/aarch64/share/spore-test/attack-rootfs.img and
#                                     .../impostor-initramfs.cpio (spore-attack as /init)
# Needs the host and aarch64 builds and the demo tree (scripts/build.sh runs
# this after build-demo-rootfs.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

mkrootfs=$SPORE_OUT/bin/spore-mkrootfs
attack=$SPORE_OUT/build/aarch64/spore-attack
demo=$SPORE_OUT/demo/rootfs
tree=$SPORE_OUT/test/attack-rootfs
img=$SPORE_OUT/aarch64/share/spore-test/attack-rootfs.img
for f in "$mkrootfs" "$attack"; do
  [ -x "$f" ] || spore_die "$f is missing: run scripts/build.sh"
done
[ -d "$demo" ] && [ -f "$SPORE_AARCH64_SHARE/demo-rootfs.img.key" ] \
  || spore_die "the demo tree is missing: run scripts/build-demo-rootfs.sh"
key=$( (sha256sum "$0" "$mkrootfs" "$attack"; cat "$SPORE_AARCH64_SHARE/demo-rootfs.img.key") | spore_hash)
if [ -f "$img" ] && [ "$(cat "$img.key" 2>/dev/null)" = "$key" ] && [ -d "$tree" ]; then
  exit 0
fi
spore_log "building the attack test rootfs"

rm -rf "$tree.tmp" && mkdir -p "$(dirname "$tree")"
cp -a "$demo" "$tree.tmp"
aarch64-linux-gnu-strip --strip-all -o "$tree.tmp/usr/bin/spore-attack" "$attack"
chmod 0755 "$tree.tmp/usr/bin/spore-attack"
find "$tree.tmp" -exec touch -h -d @1700000000 {} +
rm -rf "$tree" && mv "$tree.tmp" "$tree"

mkdir -p "$(dirname "$img")"
"$mkrootfs" --root-owned --volume spore-attack "$tree" "$img"

# An initramfs whose /init is spore-attack as an impostor agent (a HELLO of
# a protocol this host does not speak): spore-vm run --initrd with it.
stage=$SPORE_OUT/build/impostor-initramfs
rm -rf "$stage" && mkdir -p "$stage"
install -m 0755 "$tree/usr/bin/spore-attack" "$stage/init"
touch -h -d @1700000000 "$stage" "$stage/init"
(cd "$stage" && printf 'init\n' | cpio --quiet -o -H newc -R 0:0 --reproducible) > "$(dirname "$img")/impostor-initramfs.cpio"
echo "$key" > "$img.key"
