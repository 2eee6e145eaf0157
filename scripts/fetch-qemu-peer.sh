#!/usr/bin/env bash
# Stages the benchmark peer: Debian's arm64 qemu-system-aarch64 plus exactly
# the shared libraries it loads, so that it runs inside the testbed (which has
# no libc of its own) through its own dynamic loader:
#
#   DIR/lib/ld-linux-aarch64.so.1 --library-path DIR/lib DIR/bin/qemu-system-aarch64 ...
#
# Prints DIR, which is $SPORE_DEV_CACHE/qemu-peer/<key>/ with
#   bin/qemu-system-aarch64   lib/*.so*   packages (the .debs it came from)
# <key> hashes the exact .deb files (names carry versions, plus their sha256),
# as apt resolves them today: an apt update that moves any package in the
# closure stages a new directory; nothing is ever hard-coded. A finished
# directory is never modified and appears with a single rename.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

PEER_CACHE=$SPORE_DEV_CACHE/qemu-peer
DEBS=$SPORE_DEV_CACHE/debs
BIN=usr/bin/qemu-system-aarch64

command -v readelf >/dev/null || spore_die "readelf is missing (binutils)"
{ [ "$(dpkg --print-architecture)" = arm64 ] || dpkg --print-foreign-architectures | grep -qx arm64; } \
  || spore_die "arm64 is not a dpkg architecture here (run scripts/setup.sh)"
mkdir -p "$PEER_CACHE" "$DEBS"

# The package closure and the .debs apt would fetch for it, one line each:
# "'URI' FILE SIZE SHA256:HEX". Asking apt costs about a second per query on
# these machines, so the answer is remembered per state of apt's lists (as
# scripts/testbed/base.sh does).
resolve_uris() {
  local stamp memo pkgs
  stamp=$({ dpkg --print-foreign-architectures
            stat -c '%n %s %Y' /var/lib/apt/lists/*_Packages* 2>/dev/null || true
          } | spore_hash)
  memo=$PEER_CACHE/apt-$stamp
  if [ ! -s "$memo" ]; then
    # Only arm64 packages: lines without an architecture are native ones
    # that Multi-Arch: foreign dependencies resolve to; "<name>" lines are
    # virtual packages. Libraries the binary does not load are downloaded
    # but never staged (the NEEDED walk below decides).
    pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
             --no-replaces --no-enhances qemu-system-arm:arm64 | grep -E '^[^ <].*:arm64$' | sort -u)
    [ -n "$pkgs" ] || spore_die "apt knows no qemu-system-arm:arm64 (run scripts/setup.sh, or apt-get update)"
    # shellcheck disable=SC2086  # one word per package
    apt-get -o APT::Sandbox::User=root download --print-uris $pkgs | sort >"$memo.$$"
    find "$PEER_CACHE" -maxdepth 1 -name 'apt-*' ! -name "apt-$stamp*" -delete
    mv -f "$memo.$$" "$memo"
  fi
  cat "$memo"
}

# Prints the stage-relative paths of every shared library FILE needs, its own
# dependencies included (a breadth-first walk over DT_NEEDED), the way the
# arm64 loader would find them in Debian's multiarch folders.
lib_closure() {
  local stage=$1 f n d found
  local -A seen=()
  local queue=("$2")
  while [ ${#queue[@]} -gt 0 ]; do
    f=${queue[0]} queue=("${queue[@]:1}")
    for n in $(readelf -dW "$stage/$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
      [ -z "${seen[$n]:-}" ] || continue
      seen[$n]=1
      found=
      for d in lib/aarch64-linux-gnu usr/lib/aarch64-linux-gnu lib usr/lib; do
        if [ -e "$stage/$d/$n" ]; then found=$d/$n; break; fi
      done
      [ -n "$found" ] || spore_die "$f needs $n, which no package of the closure ships"
      printf '%s\n' "$found"
      queue+=("$found")
    done
  done
}

uris=$(resolve_uris)
key=$(printf '%s\n' "$uris" | awk '{ print $2, $4 }' | cat - "$0" | spore_hash)
out=$PEER_CACHE/$key
if [ -f "$out/.complete" ]; then
  touch "$out"  # in use: see the clean-up below
  echo "$out"
  exit 0
fi
# Staged peers nobody used for a week are stale (an apt update moved on).
find "$PEER_CACHE" -mindepth 1 -maxdepth 1 -type d -name '[0-9a-f]*' -mtime +7 -exec rm -rf {} +

spore_log "staging the QEMU peer (once): $(wc -l <<<"$uris") arm64 packages"
# Download what the debs folder lacks (apt names each file as the second
# field says, and checks the hash it prints as the fourth).
specs=()
while read -r _ file _ sum; do
  if [ -f "$DEBS/$file" ] && [ "$(sha256sum <"$DEBS/$file" | cut -d' ' -f1)" = "${sum#SHA256:}" ]; then
    continue
  fi
  name=${file%%_*} ver=${file#*_} ver=${ver%_arm64.deb}
  specs+=("$name:arm64=${ver//%3a/:}")
done <<<"$uris"
if [ ${#specs[@]} -gt 0 ]; then
  (cd "$DEBS" && apt-get -o APT::Sandbox::User=root download -qq "${specs[@]}" >/dev/null) \
    || spore_die "apt-get download failed"
fi

tmp=$(mktemp -d "$PEER_CACHE/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/stage" "$tmp/bin" "$tmp/lib"
while read -r _ file _ _; do
  [ -f "$DEBS/$file" ] || spore_die "$file was not downloaded"
  dpkg-deb -x "$DEBS/$file" "$tmp/stage"
  printf '%s\n' "$file" >>"$tmp/packages"
done <<<"$uris"
[ -x "$tmp/stage/$BIN" ] || spore_die "qemu-system-arm:arm64 ships no $BIN"

cp "$tmp/stage/$BIN" "$tmp/bin/"
libs=$(lib_closure "$tmp/stage" "$BIN")
while read -r l; do
  cp -L "$tmp/stage/$l" "$tmp/lib/"
done <<<"$libs"
# The loader is the binary's PT_INTERP (libc also lists it as NEEDED).
[ -f "$tmp/lib/ld-linux-aarch64.so.1" ] || cp -L "$tmp/stage/lib/ld-linux-aarch64.so.1" "$tmp/lib/"
rm -rf "$tmp/stage"
chmod 755 "$tmp"
touch "$tmp/.complete"
if ! mv -T "$tmp" "$out" 2>/dev/null; then
  # Someone else staged the same key meanwhile: theirs is as good.
  [ -f "$out/.complete" ] || spore_die "could not move the staged peer into $out"
fi
trap - EXIT
rm -rf "$tmp"
spore_log "QEMU peer: $(wc -l <<<"$libs") libraries, $(du -sh "$out" | cut -f1) in $out"
echo "$out"
