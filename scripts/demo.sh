#!/usr/bin/env bash
# The main job on the embedded default: sets everything up, builds, packs the
# project's own demo image (busybox, no network) into an app with
# spore-pack, and runs it: a one-shot run (the first one boots and seals a
# warm spore, the next ones resume it), then daemon mode. On x86_64 the app
# runs inside the emulated arm64 testbed (it says so; expect seconds there,
# milliseconds on real arm64 hardware).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$SPORE_ROOT"

scripts/setup.sh
scripts/build.sh

app=$SPORE_OUT/demo/app
rm -f "$app" "$app.spore"
"$SPORE_OUT/bin/spore-pack" oci:"$SPORE_OUT/demo/oci" -o "$app"

script=$(cat <<SCRIPT
set -e
cd "$SPORE_OUT/demo"
export SPORE_CACHE_DIR="$SPORE_OUT/demo/cache"
echo "\$ ./app                      # first run: boots, seals a warm spore"
./app
echo "\$ ./app echo resumed         # later runs resume the spore"
./app echo resumed
echo "\$ ./app sh -c 'exit 3'; echo \\\$?"
./app sh -c 'exit 3' || echo \$?
echo "\$ ./app start && ./app exec uname -a && ./app status && ./app stop"
./app start
./app exec uname -a
./app status
./app stop
SCRIPT
)
rm -rf "$SPORE_OUT/demo/cache"
if [ "$(uname -m)" = aarch64 ] && [ -w /dev/kvm ]; then
  exec sh -c "$script"
fi
spore_log "this host is $(uname -m): running the app in the emulated arm64 testbed (nested KVM; seconds, not milliseconds)"
exec scripts/testbed.sh -- sh -c "$script"
