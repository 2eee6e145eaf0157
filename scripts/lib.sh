# Shared settings for the scripts in this folder. Source it; do not run it.
# Everything expensive is cached outside the tree, keyed by content.

SPORE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Developer cache (kernels, downloaded .debs, testbed images). Never in git.
SPORE_DEV_CACHE=${SPORE_DEV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spore-dev}
SPORE_OUT=${SPORE_OUT:-$SPORE_ROOT/out}
SPORE_AARCH64_BIN=$SPORE_OUT/aarch64/bin
SPORE_AARCH64_SHARE=$SPORE_OUT/aarch64/share/spore
SPORE_X86_64_BIN=$SPORE_OUT/x86_64/bin
SPORE_X86_64_SHARE=$SPORE_OUT/x86_64/share/spore

spore_log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
spore_die() { printf '%s: error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# sha256 of stdin, hex
spore_hash() { sha256sum | cut -c1-16; }

# Downloads (once) a .deb of Debian architecture ARCH (arm64, amd64) by
# package name into the cache and unpacks it into
# $SPORE_DEV_CACHE/<ARCH>/<name>_<version>/. Prints that directory.
spore_deb_pkg() {
  local arch=$1 name=$2 ver dir deb
  ver=$(apt-cache show --no-all-versions "$name:$arch" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
  [ -n "$ver" ] || spore_die "package $name:$arch is unknown to apt (run scripts/setup.sh)"
  dir=$SPORE_DEV_CACHE/$arch/${name}_${ver//:/%}
  if [ ! -f "$dir/.complete" ]; then
    mkdir -p "$SPORE_DEV_CACHE/debs"
    (cd "$SPORE_DEV_CACHE/debs" && apt-get -o APT::Sandbox::User=root download -qq "$name:$arch=$ver" >/dev/null) \
      || spore_die "could not download $name:$arch"
    deb=$(ls "$SPORE_DEV_CACHE"/debs/"${name}"_*_"$arch".deb | grep -F "_${ver//:/%3a}_" | head -n1)
    [ -n "$deb" ] || deb=$(ls -t "$SPORE_DEV_CACHE"/debs/"${name}"_*_"$arch".deb | head -n1)
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    dpkg-deb -x "$deb" "$dir.tmp"
    touch "$dir.tmp/.complete"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}
spore_arm64_pkg() { spore_deb_pkg arm64 "$1"; }

# Name of the current Debian cloud kernel package of ARCH (arm64 by default,
# or amd64); it moves with security updates, so it is never hard-coded.
spore_cloud_kernel_pkg() {
  local arch=${1:-arm64}
  apt-cache depends "linux-image-cloud-$arch:$arch" 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-[^:]*\).*/\1/p' | head -n1
}
