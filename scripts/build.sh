#!/usr/bin/env bash
# Builds everything, incrementally:
#   out/bin/                     host tools (spore-pack, spore-mkrootfs, unit tests)
#   out/aarch64/bin/             static aarch64 binaries (spore-stub, spore-vm, spore-bench, spore-agent,
#                                spore-itests, spore-unit-tests, spore-testbed-probe)
#   out/x86_64/bin/              static x86_64 binaries (spore-stub, spore-vm, spore-agent, spore-itests,
#                                spore-testbed-probe, spore-kvm-smoke); built on x86_64 hosts
#   out/aarch64/share/spore/     guest kernel Image, agent initramfs, demo rootfs image
#   out/x86_64/share/spore/      guest kernel vmlinux, agent initramfs, demo rootfs image (x86_64 hosts)
#   out/demo/                    the demo image: root tree and OCI layout (spore-pack oci:out/demo/oci)
#   out/aarch64/share/spore-test/ test-only guest images (the [attack] tests' rootfs, with tests/guest/)
# SPORE_WERROR=0 turns compiler warnings back into warnings (default: errors).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$SPORE_ROOT"

for tool in cmake ninja aarch64-linux-gnu-g++ cpio; do
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

# The x86_64 target build: static binaries that run in the x86_64 testbed (or
# on an x86_64 KVM host). Only the targets listed here are built: the rest of
# the tree (unit tests, libraries) is the host build's already.
X86_64_TARGETS=(spore-vm spore-stub spore-agent spore-itests spore-testbed-probe spore-kvm-smoke)
x86_64=0
if [ "$(uname -m)" = x86_64 ]; then
  x86_64=1
  spore_log "x86_64 build"
  configure "$SPORE_OUT/build/x86_64" -DSPORE_TARGET_BUILD=ON
  cmake --build "$SPORE_OUT/build/x86_64" -j "$jobs" --target "${X86_64_TARGETS[@]}"
  mkdir -p "$SPORE_X86_64_BIN" "$SPORE_X86_64_SHARE"
  for b in spore-vm spore-itests spore-testbed-probe spore-kvm-smoke; do
    install -C -m 0755 "$SPORE_OUT/build/x86_64/$b" "$SPORE_X86_64_BIN/"
  done
  for b in spore-stub spore-agent; do
    strip --strip-all -o "$SPORE_OUT/build/$b.x86_64.stripped" "$SPORE_OUT/build/x86_64/$b"
    install -C -m 0755 "$SPORE_OUT/build/$b.x86_64.stripped" "$SPORE_X86_64_BIN/$b"
  done
  # The x86_64 guest kernel (cached like the arm64 one; doc/kernel.md).
  kernel=$(scripts/build-kernel.sh --arch x86_64)
  install -C -m 0644 "$kernel" "$SPORE_X86_64_SHARE/vmlinux"
else
  spore_log "x86_64 build skipped: this $(uname -m) host has no x86_64 toolchain set up"
fi

mkdir -p "$SPORE_OUT/bin" "$SPORE_AARCH64_BIN" "$SPORE_AARCH64_SHARE"
for b in spore-unit-tests spore-pack spore-mkrootfs; do
  [ -f "$SPORE_OUT/build/host/$b" ] && install -C -m 0755 "$SPORE_OUT/build/host/$b" "$SPORE_OUT/bin/"
done
for b in spore-vm spore-bench spore-itests spore-unit-tests spore-testbed-probe; do
  install -C -m 0755 "$SPORE_OUT/build/aarch64/$b" "$SPORE_AARCH64_BIN/"
done
# What ships inside apps is stripped: the stub is copied into every app,
# the agent into every initramfs.
for b in spore-stub spore-agent; do
  aarch64-linux-gnu-strip --strip-all -o "$SPORE_OUT/build/$b.stripped" "$SPORE_OUT/build/aarch64/$b"
  install -C -m 0755 "$SPORE_OUT/build/$b.stripped" "$SPORE_AARCH64_BIN/$b"
done

# Guest kernel (cached outside the tree; built once per config and source version).
kernel=$(scripts/build-kernel.sh)
install -C -m 0644 "$kernel" "$SPORE_AARCH64_SHARE/Image"

# Agent initramfs: the agent is the whole of it (it creates what it needs).
make_initramfs() {  # agent binary, output, staging name
  local stage=$SPORE_OUT/build/$3
  rm -rf "$stage" && mkdir -p "$stage"
  install -m 0755 "$1" "$stage/init"
  touch -h -d @1700000000 "$stage" "$stage/init"
  (cd "$stage" && printf 'init\n' | cpio --quiet -o -H newc -R 0:0 --reproducible > "$SPORE_OUT/build/$3.cpio")
  install -C -m 0644 "$SPORE_OUT/build/$3.cpio" "$2"
}
make_initramfs "$SPORE_AARCH64_BIN/spore-agent" "$SPORE_AARCH64_SHARE/initramfs.cpio" initramfs

scripts/build-demo-rootfs.sh
if [ $x86_64 = 1 ]; then
  make_initramfs "$SPORE_X86_64_BIN/spore-agent" "$SPORE_X86_64_SHARE/initramfs.cpio" initramfs-x86_64
  scripts/build-demo-rootfs.sh --arch x86_64
fi
scripts/build-demo-image.sh
scripts/build-test-rootfs.sh
spore_log "done: host tools in out/bin, aarch64 in out/aarch64, x86_64 in out/x86_64"
