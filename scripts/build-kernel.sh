#!/usr/bin/env bash
# Builds spore's minimal guest kernel for one architecture and prints the
# absolute path of the cached kernel on stdout (the only line on stdout;
# progress goes to stderr):
#
#   IMG=$(scripts/build-kernel.sh)                   # aarch64: the raw arm64 Image
#   VMLINUX=$(scripts/build-kernel.sh --arch x86_64) # x86_64: vmlinux (ELF); bzImage beside it
#
# Linux comes from Debian's linux-source-6.1 package, built with
# <arch>-linux-gnu-gcc: `tinyconfig`, plus the fragment
# assets/kernel/<arch>.config, then `olddefconfig`. Every option the fragment
# names is checked in the final .config; the build fails naming each one that
# Kconfig dropped. No modules. See doc/kernel.md.
#
# Cache ($SPORE_DEV_CACHE/kernel):
#   <key>/Image (aarch64) or vmlinux + bzImage (x86_64), config, System.map, build.log, info
#       key = hash of the architecture, the fragment, this script, the
#       linux-source package version and the toolchain (gcc and binutils
#       version lines)
#   src/linux-source-<version>/   unpacked source tree (read only use, O= builds)
#   obj/<srcver>_<toolchain>/     kbuild output tree, reused so that a changed
#                                 fragment rebuilds incrementally
#   logs/<key>.log                make output of the last build of <key>
# Everything there can be deleted at any time when no build is running.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Only the final path goes to stdout: keep it on fd 3, send everything else to stderr.
exec 3>&1 1>&2

SRC_PKG=linux-source-6.1
TARBALL=/usr/src/linux-source-6.1.tar.xz
SELF=$(readlink -f "${BASH_SOURCE[0]}")

usage() {
  cat <<EOF
usage: scripts/build-kernel.sh [--arch aarch64|x86_64] [--force] [--print-key] [--help]

Builds (or finds in the cache) spore's guest kernel and prints its absolute
path on stdout; progress goes to stderr. aarch64 (the default): the raw arm64
Image. x86_64: vmlinux, an uncompressed ELF, with a bzImage beside it.

  --arch ARCH  aarch64 (default) or x86_64
  --force      rebuild from a clean object tree even if the kernel is cached
  --print-key  print the cache key and exit (builds nothing)
  --help       this text

Cache: \$SPORE_DEV_CACHE/kernel/<key>/{Image|vmlinux,bzImage,config,System.map,build.log,info}
(SPORE_DEV_CACHE defaults to ~/.cache/spore-dev). Details: doc/kernel.md.
EOF
}

force=0 print_key=0 arch=aarch64
while [ $# -gt 0 ]; do
  case $1 in
    --arch) [ $# -ge 2 ] || { usage; spore_die "--arch needs aarch64 or x86_64"; }; arch=$2; shift ;;
    --arch=*) arch=${1#*=} ;;
    --force) force=1 ;;
    --print-key) print_key=1 ;;
    -h|--help) usage >&3; exit 0 ;;
    *) usage; spore_die "unknown argument: $1" ;;
  esac
  shift
done

# Per architecture: kbuild's ARCH, the toolchain prefix, the make targets and
# the file this script prints (installed last, so its presence in the cache
# implies everything else is there).
case $arch in
  aarch64) KARCH=arm64 CROSS=aarch64-linux-gnu- TARGETS=(Image) KERNEL=Image ;;
  x86_64) KARCH=x86_64 CROSS=x86_64-linux-gnu- TARGETS=(vmlinux bzImage) KERNEL=vmlinux ;;
  *) usage; spore_die "--arch must be aarch64 or x86_64 (got '$arch')" ;;
esac
FRAGMENT=$SPORE_ROOT/assets/kernel/$arch.config

# ---- inputs and key ----------------------------------------------------------
[ -f "$FRAGMENT" ] || spore_die "missing config fragment $FRAGMENT"
src_ver=$(dpkg-query -W -f='${Version}' "$SRC_PKG" 2>/dev/null) || true
[ -n "$src_ver" ] && [ -f "$TARBALL" ] \
  || spore_die "$SRC_PKG is not installed ($TARBALL missing): run scripts/setup.sh"
command -v "${CROSS}gcc" >/dev/null \
  || spore_die "${CROSS}gcc not found: run scripts/setup.sh (gcc-${CROSS%-})"
for tool in make bc bison flex xz; do
  command -v $tool >/dev/null || spore_die "$tool not found: run scripts/setup.sh"
done
gcc_ver=$("${CROSS}gcc" --version | head -n1)
ld_ver=$("${CROSS}ld" --version | head -n1)

key=$({
  printf 'arch %s\n' "$arch"
  printf 'fragment\n'; cat "$FRAGMENT"
  printf '\nscript\n'; cat "$SELF"
  printf '\nsource %s %s\ngcc %s\nld %s\n' "$SRC_PKG" "$src_ver" "$gcc_ver" "$ld_ver"
} | spore_hash)
if [ $print_key = 1 ]; then echo "$key" >&3; exit 0; fi

mkdir -p "$SPORE_DEV_CACHE/kernel"
KDIR=$(cd "$SPORE_DEV_CACHE/kernel" && pwd)
OUT=$KDIR/$key
IMAGE=$OUT/$KERNEL

# An arm64 Image has the magic "ARM\x64" at byte 56 of its header.
is_arm64_image() {
  [ -s "$1" ] && [ "$(od -An -tx1 -j56 -N4 "$1" | tr -d ' \n')" = 41524d64 ]
}
# An x86_64 vmlinux: ELF magic, 64-bit, little-endian, e_machine 0x3e.
is_x86_64_elf() {
  [ -s "$1" ] && [ "$(od -An -tx1 -N6 "$1" | tr -d ' \n')" = 7f454c460201 ] \
    && [ "$(od -An -tx1 -j18 -N2 "$1" | tr -d ' \n')" = 3e00 ]
}
# A bzImage: "HdrS" at 0x202 (the boot protocol's setup header).
is_bzimage() {
  [ -s "$1" ] && [ "$(od -An -tx1 -j514 -N4 "$1" | tr -d ' \n')" = 48647253 ]
}
is_kernel() {
  case $arch in
    aarch64) is_arm64_image "$1" ;;
    x86_64) is_x86_64_elf "$1" ;;
  esac
}

if [ $force = 0 ] && is_kernel "$IMAGE"; then
  echo "$IMAGE" >&3
  exit 0
fi

# ---- locking -------------------------------------------------------------------
# One lock per object tree: builds sharing it run one after the other; the
# second one usually finds the Image cached once it gets the lock.
tc_hash=$(printf '%s\n%s\n' "$gcc_ver" "$ld_ver" | spore_hash)
src_tag=${src_ver//[^A-Za-z0-9.+-]/_}
OBJ=$KDIR/obj/${src_tag}_$tc_hash
SRC=$KDIR/src/$SRC_PKG-$src_tag
mkdir -p "$KDIR/obj" "$KDIR/src" "$KDIR/logs"
exec 9>"$OBJ.lock"
if ! flock -n 9; then
  spore_log "another kernel build is using $OBJ; waiting for it"
  flock 9
fi
if [ $force = 0 ] && is_kernel "$IMAGE"; then
  spore_log "cached by the build we waited for"
  echo "$IMAGE" >&3
  exit 0
fi

# ---- source tree (shared by every key of this source version) -----------------
if [ ! -f "$SRC/Makefile" ]; then
  exec 8>"$SRC.lock"
  flock 8
  if [ ! -f "$SRC/Makefile" ]; then
    spore_log "unpacking $TARBALL ($SRC_PKG $src_ver) into the cache"
    tmp=$(mktemp -d "$KDIR/src/.unpack.XXXXXX")
    tar -xJf "$TARBALL" -C "$tmp" || { rm -rf "$tmp"; spore_die "could not unpack $TARBALL"; }
    [ -f "$tmp/$SRC_PKG/Makefile" ] || { rm -rf "$tmp"; spore_die "$TARBALL has no $SRC_PKG/Makefile"; }
    rm -rf "$SRC"
    mv -T "$tmp/$SRC_PKG" "$SRC"
    rm -rf "$tmp"
  fi
  exec 8>&-
fi
kver=$(sed -n 's/^VERSION = //p; s/^PATCHLEVEL = //p; s/^SUBLEVEL = //p' "$SRC/Makefile" | paste -sd.)

# ---- build -----------------------------------------------------------------------
LOG=$KDIR/logs/$key.log
: >"$LOG"
ticker=
cleanup() { [ -z "$ticker" ] || kill "$ticker" 2>/dev/null || true; }
trap cleanup EXIT

fail() {
  local errs
  printf '%s: error: %s; full log: %s\n' "${0##*/}" "$1" "$LOG" >&2
  # With -j the first error is often far above the tail: show both.
  errs=$(grep -nE 'error:|Error [0-9]|\*\*\*' "$LOG" | head -n 15 || true)
  [ -z "$errs" ] || printf -- '--- first error lines:\n%s\n' "$errs" >&2
  printf -- '--- last lines:\n' >&2
  tail -n 30 "$LOG" >&2
  exit 1
}

# Fixed build metadata (user, host, build number, timestamp = the source
# tarball's mtime): rebuilding the same inputs gives a byte-identical Image,
# whether incremental or clean.
export KBUILD_BUILD_USER=spore KBUILD_BUILD_HOST=spore KBUILD_BUILD_VERSION=1
KBUILD_BUILD_TIMESTAMP=$(date -u -d "@$(stat -c %Y "$TARBALL")" '+%Y-%m-%d %H:%M:%S UTC')
export KBUILD_BUILD_TIMESTAMP
kmake() {
  # LOCALVERSION= (set but empty) stops setlocalversion from appending "+".
  make -C "$SRC" O="$OBJ" ARCH="$KARCH" CROSS_COMPILE="$CROSS" LOCALVERSION= "$@" >>"$LOG" 2>&1
}

if [ $force = 1 ] && [ -d "$OBJ" ]; then
  spore_log "--force: removing the object tree $OBJ"
  rm -rf "$OBJ"
fi
clean=no; [ -f "$OBJ/vmlinux" ] || clean=yes
mkdir -p "$OBJ"

spore_log "configuring linux $kver $arch: tinyconfig + ${FRAGMENT#"$SPORE_ROOT"/}"
kmake tinyconfig || fail "make tinyconfig failed"
(cd "$OBJ" && ARCH="$KARCH" "$SRC/scripts/kconfig/merge_config.sh" -m -O "$OBJ" "$OBJ/.config" "$FRAGMENT") \
  >>"$LOG" 2>&1 || fail "merge_config.sh failed"
kmake olddefconfig || fail "make olddefconfig failed"

# Every option the fragment sets must have survived olddefconfig unchanged.
dropped=()
while IFS= read -r line; do
  if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
    opt=${BASH_REMATCH[1]}
    if ! grep -qxF -- "$line" "$OBJ/.config"; then
      got=$(grep -E "^$opt=|^# $opt is not set" "$OBJ/.config" || true)
      dropped+=("$opt (wanted '$line', final .config: '${got:-absent, dependencies not met}')")
    fi
  elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
    opt=${BASH_REMATCH[1]}
    if got=$(grep -E "^$opt=" "$OBJ/.config"); then
      dropped+=("$opt (wanted it off, final .config: '$got', something selects it)")
    fi
  fi
done <"$FRAGMENT"
if grep -q '=m$' "$OBJ/.config"; then
  dropped+=("modules: $(grep '=m$' "$OBJ/.config" | paste -sd' ')")
fi
if [ ${#dropped[@]} -gt 0 ]; then
  printf '%s: error: the final .config does not match %s:\n' "${0##*/}" "${FRAGMENT#"$SPORE_ROOT"/}" >&2
  printf '  %s\n' "${dropped[@]}" >&2
  spore_die "${#dropped[@]} option(s) dropped or changed by olddefconfig (add the missing dependencies to the fragment, or drop the line); .config: $OBJ/.config"
fi

jobs=$(nproc)
spore_log "building linux $kver $arch ${TARGETS[*]} with -j$jobs (about 3-5 min on 2 cores from scratch, seconds to minutes when incremental); log: $LOG"
start=$(date +%s)
( exec 3>&- 9>&-   # must not hold the caller's stdout pipe or the lock
  i=0
  while sleep 1; do
    i=$((i + 1)); [ $((i % 30)) = 0 ] || continue
    n=$(grep -cE '^ +(CC|AS|LD|AR) ' "$LOG" || true)
    spore_log "... ${i}s, $n build steps so far"
  done ) &
ticker=$!
kmake -j"$jobs" "${TARGETS[@]}" || { cleanup; ticker=; fail "make ${TARGETS[*]} failed"; }
cleanup; ticker=

extra=()
case $arch in
  aarch64)
    built=$OBJ/arch/arm64/boot/Image
    is_arm64_image "$built" || fail "$built is not an arm64 Image (no ARM\\x64 magic at offset 56)"
    ;;
  x86_64)
    # vmlinux without its symbol table (System.map has the symbols); the
    # loadable segments and the PVH note stay.
    built=$OBJ/vmlinux.stripped
    "${CROSS}strip" --strip-all -o "$built" "$OBJ/vmlinux" >>"$LOG" 2>&1 || fail "strip vmlinux failed"
    is_x86_64_elf "$built" || fail "$built is not an x86_64 ELF"
    is_bzimage "$OBJ/arch/x86/boot/bzImage" || fail "$OBJ/arch/x86/boot/bzImage has no HdrS setup header"
    extra=("$OBJ/arch/x86/boot/bzImage" bzImage)
    ;;
esac
secs=$(( $(date +%s) - start ))

# ---- install: each file written to a temporary name, then renamed into place;
# the kernel last, so a kernel in the cache implies its companions are there.
mkdir -p "$OUT"
install_file() { install -m 0644 "$1" "$OUT/.$2.tmp.$$" && mv -f "$OUT/.$2.tmp.$$" "$OUT/$2"; }
size=$(stat -c %s "$built")
{
  echo "key=$key"
  echo "arch=$arch"
  echo "linux=$kver"
  echo "source=$SRC_PKG $src_ver"
  echo "gcc=$gcc_ver"
  echo "ld=$ld_ver"
  echo "image_bytes=$size"
  echo "build_seconds=$secs"
  echo "jobs=$jobs"
  echo "clean_build=$clean"
  echo "built_at=$(date -u '+%Y-%m-%dT%H:%M:%SZ')"
} >"$OBJ/info"
install_file "$OBJ/.config" config
install_file "$OBJ/System.map" System.map
install_file "$LOG" build.log
install_file "$OBJ/info" info
[ ${#extra[@]} = 0 ] || install_file "${extra[@]}"
install_file "$built" "$KERNEL"
spore_log "built linux $kver $arch $KERNEL ($size bytes) in ${secs}s: $IMAGE"
echo "$IMAGE" >&3
