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
# figures would be noise): the script warns when another emulated host or
# other busy processes ran beside it.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
cd "$SPORE_ROOT"


runs=10 floor_reps=3
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=${2:-}; shift 2 || spore_die "--runs needs a number" ;;
    --runs=*) runs=${1#*=}; shift ;;
    --floor-reps) floor_reps=${2:-}; shift 2 || spore_die "--floor-reps needs a number" ;;
    --floor-reps=*) floor_reps=${1#*=}; shift ;;
    -h|--help) bench_usage; exit 0 ;;
    *) spore_die "unknown argument: $1 (try --help)" ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || spore_die "--runs must be a positive number (got '$runs')"
[[ $floor_reps =~ ^[1-9][0-9]*$ ]] || spore_die "--floor-reps must be a positive number (got '$floor_reps')"

scripts/build.sh >&2
peer=$(scripts/fetch-qemu-peer.sh)
bench_vsock_modules

mkdir -p "$SPORE_OUT/bench"
raw=$SPORE_OUT/bench/boot-$(date +%Y%m%d-%H%M%S).txt
{
  printf '# scripts/bench-boot.sh --runs %s --floor-reps %s, %s\n' "$runs" "$floor_reps" "$(date -Is)"
  printf '# spore %s; peer qemu-system-arm %s; outer kernel %s\n' \
    "$(git describe --always --dirty 2>/dev/null || echo '?')" "$(bench_qemu_version "$peer")" "$bench_kpkg"
} >"$raw"

# Runs inside the testbed (busybox sh): load the modules the peer needs,
# then the interleaved benchmark.
inner="$BENCH_INNER_MODULES"'
exec spore-bench "$@"
'
spore_log "benchmark: $runs rounds (+1 warm-up) of floor x$floor_reps, spore and qemu; raw samples in ${raw#"$SPORE_ROOT"/}"
bench_watch_start "$raw"
status=0
scripts/testbed.sh --share "$peer" --share "$bench_kmods" --share "$SPORE_OUT/bench" --timeout 3600 -- \
  env RAW="$raw" sh -c "$inner" bench-inner "${bench_modules[@]}" -- \
  boot --runs "$runs" --floor-reps "$floor_reps" --qemu-peer "$peer" --raw "$raw" || status=$?
bench_watch_stop || true
spore_log "raw samples and table: ${raw#"$SPORE_ROOT"/}"
exit "$status"
