#!/usr/bin/env bash
# Builds everything, incrementally:
#   out/bin/                     host tools
#   out/aarch64/bin/             static aarch64 binaries (spore-vm, spore-bench, spore-agent, spore-itests)
#   out/aarch64/share/spore/     guest kernel Image, agent initramfs, demo rootfs image
# SPORE_WERROR=0 turns compiler warnings back into warnings (default: errors).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$SPORE_ROOT"

for tool in cmake ninja aarch64-linux-gnu-g++ cpio mke2fs; do
  command -v "$tool" >/dev/null || spore_die "'$tool' is missing: run scripts/setup.sh first"
done
[ -f "$SPORE_DEV_CACHE/arm64/sysroot/.stamp" ] || spore_die "arm64 libraries are missing: run scripts/setup.sh first"

werror=ON
[ "${SPORE_WERROR:-1}" = 0 ] && werror=OFF
jobs=$(nproc)

configure() {  # dir, extra cmake args...
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    cmake -S . -B "$dir" -G Ninja -DSPORE_WERROR=$werror -DSPORE_DEV_CACHE="$SPORE_DEV_CACHE" \
      -DSPORE_OUT="$SPORE_OUT" "$@" >/dev/null
  fi
}

spore_log "host build"
configure "$SPORE_OUT/build/host"
cmake --build "$SPORE_OUT/build/host" -j "$jobs"

spore_log "aarch64 build"
configure "$SPORE_OUT/build/aarch64" -DCMAKE_TOOLCHAIN_FILE="$SPORE_ROOT/cmake/aarch64-linux-gnu.cmake"
cmake --build "$SPORE_OUT/build/aarch64" -j "$jobs"

mkdir -p "$SPORE_OUT/bin" "$SPORE_AARCH64_BIN" "$SPORE_AARCH64_SHARE"
install -C -m 0755 "$SPORE_OUT/build/host/spore-unit-tests" "$SPORE_OUT/bin/"
for b in spore-vm spore-bench spore-agent spore-itests spore-unit-tests; do
  install -C -m 0755 "$SPORE_OUT/build/aarch64/$b" "$SPORE_AARCH64_BIN/"
done

# Guest kernel (cached outside the tree; built once per config and source version).
kernel=$(scripts/build-kernel.sh)
install -C -m 0644 "$kernel" "$SPORE_AARCH64_SHARE/Image"

# Agent initramfs: the agent is the whole of it (it creates what it needs).
stage=$SPORE_OUT/build/initramfs
rm -rf "$stage" && mkdir -p "$stage"
install -m 0755 "$SPORE_AARCH64_BIN/spore-agent" "$stage/init"
touch -h -d @1700000000 "$stage" "$stage/init"
(cd "$stage" && printf 'init\n' | cpio --quiet -o -H newc -R 0:0 --reproducible > "$SPORE_OUT/build/initramfs.cpio")
install -C -m 0644 "$SPORE_OUT/build/initramfs.cpio" "$SPORE_AARCH64_SHARE/initramfs.cpio"

scripts/build-demo-rootfs.sh
spore_log "done: host tools in out/bin, aarch64 in out/aarch64"
