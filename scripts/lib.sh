# Shared settings for the scripts in this folder. Source it; do not run it.
# Everything expensive is cached outside the tree, keyed by content.

SPORE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Developer cache (kernels, downloaded .debs, testbed images). Never in git.
SPORE_DEV_CACHE=${SPORE_DEV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spore-dev}
SPORE_OUT=${SPORE_OUT:-$SPORE_ROOT/out}
SPORE_AARCH64_BIN=$SPORE_OUT/aarch64/bin
SPORE_AARCH64_SHARE=$SPORE_OUT/aarch64/share/spore

spore_log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
spore_die() { printf '%s: error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# sha256 of stdin, hex
spore_hash() { sha256sum | cut -c1-16; }

# Downloads (once) an arm64 .deb by package name into the cache and unpacks it
# into $SPORE_DEV_CACHE/arm64/<name>_<version>/. Prints that directory.
spore_arm64_pkg() {
  local name=$1 ver dir deb
  ver=$(apt-cache show --no-all-versions "$name:arm64" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
  [ -n "$ver" ] || spore_die "package $name:arm64 is unknown to apt (run scripts/setup.sh)"
  dir=$SPORE_DEV_CACHE/arm64/${name}_${ver//:/%}
  if [ ! -f "$dir/.complete" ]; then
    mkdir -p "$SPORE_DEV_CACHE/debs"
    (cd "$SPORE_DEV_CACHE/debs" && apt-get -o APT::Sandbox::User=root download -qq "$name:arm64=$ver" >/dev/null) \
      || spore_die "could not download $name:arm64"
    deb=$(ls "$SPORE_DEV_CACHE"/debs/"${name}"_*_arm64.deb | grep -F "_${ver//:/%3a}_" | head -n1)
    [ -n "$deb" ] || deb=$(ls -t "$SPORE_DEV_CACHE"/debs/"${name}"_*_arm64.deb | head -n1)
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    dpkg-deb -x "$deb" "$dir.tmp"
    touch "$dir.tmp/.complete"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

# Name of the current Debian cloud arm64 kernel package (moves with updates).
spore_cloud_kernel_pkg() {
  apt-cache depends linux-image-cloud-arm64:arm64 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-[^:]*\).*/\1/p' | head -n1
}
