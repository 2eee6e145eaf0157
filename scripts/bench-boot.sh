#!/usr/bin/env bash
# Cold-boot benchmark (doc/benchmarks.md): spore-vm from process start to the
# agent's HELLO and to the first command's output, against two baselines
# measured in the same testbed run, interleaved round by round:
#   floor  bare KVM: open /dev/kvm, VM + 256 MiB memslot + vCPU -> first exit
#   qemu   Debian's arm64 QEMU with KVM booting the same kernel, agent
#          initramfs and rootfs to the same two points
#
#   scripts/bench-boot.sh [--runs N] [--floor-reps K]
#
# Prints a table of medians, p90, minima and ratios; the raw samples and the
# table also go to out/bench/boot-<date>.txt. Builds and stages what is
# missing first. One testbed session; do not run another one beside it (the
# figures would be noise).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
cd "$SPORE_ROOT"

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

runs=10 floor_reps=3
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=${2:-}; shift 2 || spore_die "--runs needs a number" ;;
    --runs=*) runs=${1#*=}; shift ;;
    --floor-reps) floor_reps=${2:-}; shift 2 || spore_die "--floor-reps needs a number" ;;
    --floor-reps=*) floor_reps=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) spore_die "unknown argument: $1 (try --help)" ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || spore_die "--runs must be a positive number (got '$runs')"
[[ $floor_reps =~ ^[1-9][0-9]*$ ]] || spore_die "--floor-reps must be a positive number (got '$floor_reps')"

scripts/build.sh >&2
peer=$(scripts/fetch-qemu-peer.sh)

# The peer's host side is vhost-vsock in the testbed's kernel, which Debian
# builds as modules; busybox insmod loads them from the very package the
# testbed boots (resolved the way scripts/testbed/base.sh resolves it), each
# after its dependencies.
kpkg=$(spore_cloud_kernel_pkg)
[ -n "$kpkg" ] || spore_die "cannot resolve the linux-image-*-cloud-arm64 package (run scripts/setup.sh)"
kmods=$(echo "$(spore_arm64_pkg "$kpkg")"/lib/modules/*)
[ -d "$kmods/kernel" ] || spore_die "no module tree in $kmods"
declare -A loaded=()
modules=()
add_module() {  # name: its dependencies first, then itself
  local name=${1//-/_} path dep
  [ -z "${loaded[$name]:-}" ] || return 0
  loaded[$name]=1
  path=$(find "$kmods/kernel" -name "$name.ko" -o -name "${name//_/-}.ko" | head -n1)
  if [ -z "$path" ]; then
    grep -q "/$name\.ko\$" "$kmods/modules.builtin" && return 0
    spore_die "module $name is neither in $kmods nor built in"
  fi
  for dep in $(modinfo -F depends "$path" | tr ',' ' '); do add_module "$dep"; done
  modules+=("$path")
}
add_module vhost_vsock

mkdir -p "$SPORE_OUT/bench"
raw=$SPORE_OUT/bench/boot-$(date +%Y%m%d-%H%M%S).txt
qemu_version=$(grep -o '^qemu-system-arm_[^_]*' "$peer/packages" | head -n1 | sed 's/^qemu-system-arm_//; s/%3a/:/')
{
  printf '# scripts/bench-boot.sh --runs %s --floor-reps %s, %s\n' "$runs" "$floor_reps" "$(date -Is)"
  printf '# spore %s; peer qemu-system-arm %s; outer kernel %s\n' \
    "$(git describe --always --dirty 2>/dev/null || echo '?')" "$qemu_version" "$kpkg"
  printf '# build host: %s cores, load %s\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$raw"
# Another emulated host on these 2 cores would halve the speed of ours.
others=$(pgrep -c -x qemu-system-aar 2>/dev/null) || others=0
if [ "$others" -gt 0 ]; then
  spore_log "warning: $others other qemu-system-aarch64 process(es) running: expect noisy figures"
  printf '# warning: %s other qemu-system-aarch64 running at the start\n' "$others" >>"$raw"
fi

# Runs inside the testbed (busybox sh): load the modules the peer needs,
# unless the kernel has them already, then the interleaved benchmark.
# shellcheck disable=SC2016  # expanded by the inner shell
inner='
set -e
kver=$(uname -r)
while [ "$1" != -- ]; do
  name=$(basename "$1" .ko | tr - _)
  if [ -d "/sys/module/$name" ]; then :
  elif case $1 in */lib/modules/"$kver"/*) true ;; *) false ;; esac; then insmod "$1"
  else modprobe "$name"  # not the testbed (a native arm64 host): its own modules
  fi
  shift
done
shift
echo "# testbed: kernel $kver, $(grep -c ^processor /proc/cpuinfo) vCPUs, $(free -m | awk "/^Mem:/ { print \$2 }") MiB" >>"$RAW"
exec spore-bench "$@"
'
spore_log "benchmark: $runs rounds (+1 warm-up) of floor x$floor_reps, spore and qemu; raw samples in ${raw#"$SPORE_ROOT"/}"
start=$(date +%s)
status=0
scripts/testbed.sh --share "$peer" --share "$kmods" --share "$SPORE_OUT/bench" --timeout 3600 -- \
  env RAW="$raw" sh -c "$inner" bench-inner "${modules[@]}" -- \
  boot --runs "$runs" --floor-reps "$floor_reps" --qemu-peer "$peer" --raw "$raw" || status=$?
printf '# build host load at the end: %s; wall time %s s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" \
  "$(( $(date +%s) - start ))" >>"$raw"
others_at_start=${others:-0}
others=$(pgrep -c -x qemu-system-aar 2>/dev/null) || others=0
if [ "$others" -gt 0 ] || [ "$others_at_start" -gt 0 ]; then
  spore_log "warning: other emulated hosts ran beside this benchmark ($others_at_start at the start, $others at the end)"
  printf '# warning: %s other qemu-system-aarch64 running at the end\n' "$others" >>"$raw"
fi
spore_log "raw samples and table: ${raw#"$SPORE_ROOT"/}"
exit "$status"
