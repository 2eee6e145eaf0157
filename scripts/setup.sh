#!/usr/bin/env bash
# Installs every Debian package that building, testing and the testbed need.
# Idempotent and non-interactive: safe to rerun; does nothing when all is present.
set -euo pipefail
cd "$(dirname "$0")/.."

HOST_PKGS=(
  # build
  build-essential cmake ninja-build pkg-config git
  # cross toolchain for the aarch64 backend (static binaries)
  gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross
  # libraries (host side)
  libzstd-dev libssl-dev libfdt-dev libarchive-dev libcurl4-openssl-dev
  nlohmann-json3-dev libcli11-dev catch2
  # guest kernel
  linux-source-6.1 bc bison flex xz-utils kmod
  # testbeds (aarch64, x86_64) and images
  qemu-system-arm qemu-system-x86 qemu-utils device-tree-compiler cpio e2fsprogs zstd
  # checks our EROFS writer's images (fsck.erofs --extract in the unit tests)
  erofs-utils
  # the checked build (scripts/fuzz.sh): clang with ASan, UBSan and libFuzzer,
  # llvm-profdata/llvm-cov for fuzz coverage figures
  clang libclang-rt-14-dev llvm
  # registry tests (spore-pack)
  docker-registry skopeo
  # bench-app.sh: a Debian arm64 minbase root to pack (first stage only)
  debootstrap debian-archive-keyring
)
ARM64_PKGS=(libzstd-dev:arm64 libssl-dev:arm64)

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

missing=()
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
  need_update=1
fi
for p in "${HOST_PKGS[@]}" "${ARM64_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${#missing[@]} packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
elif [ -n "${need_update:-}" ]; then
  $SUDO apt-get update -qq
fi

# Packages that are downloaded (not installed): libfdt's amd64 and arm64 -dev
# packages conflict, and busybox and the testbeds' kernels are guest payload.
exec scripts/fetch-debs.sh
