#!/usr/bin/env bash
# The main job on the embedded default: sets everything up, builds, then
# boots a microVM from the project's own kernel, agent and busybox rootfs and
# runs a command in it. No network needed. On x86_64 it runs inside the
# emulated arm64 testbed (say so; it is slower there).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$SPORE_ROOT"

scripts/setup.sh
scripts/build.sh

cmd=(sh -c 'echo "hello from a spore microVM"; uname -sm; echo "$(grep -c ^processor /proc/cpuinfo) vCPUs, $(free -m | awk "/Mem:/ {print \$2}") MiB RAM"; cat /etc/os-release | grep PRETTY')
if [ "$(uname -m)" = aarch64 ] && [ -w /dev/kvm ]; then
  exec "$SPORE_AARCH64_BIN/spore-vm" run --timings -- "${cmd[@]}"
fi
spore_log "this host is $(uname -m): running in the emulated arm64 testbed (nested KVM; expect seconds, not milliseconds)"
exec scripts/testbed.sh -- spore-vm run --timings -- "${cmd[@]}"
