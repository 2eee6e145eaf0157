#!/usr/bin/env bash
# Spore benchmark (doc/benchmarks.md, "Resume" and "Fork"), all in one
# testbed session beside its baselines:
#   capture  an idle 256 MiB and 2 GiB guest: time, chunks, bytes on disk
#   resume   each size to the first output of `echo x`, from the fork of
#            spore-vm (and its own --timings breakdown), interleaved with
#   cold     spore-vm cold-booting to the same point (the first rounds),
#   floor    bare KVM: open /dev/kvm, VM + 256 MiB memslot + vCPU -> first exit,
#   qemu     Debian's arm64 QEMU with KVM saving the same idle guest (stop +
#            migrate to a file) and a new QEMU restoring it (-incoming) to
#            the first output of the same command through the agent;
#   fork     `spore-vm fork --count 100` wall time;
#   memory   resident memory of 10 forks resumed at once.
#
#   scripts/bench-spore.sh [--runs N] [--cold-runs N] [--captures N]
#                          [--concurrent K] [--testbed-mem MiB] [--from-shares]
#
# N >= 1 resume rounds (default 20) after one warm-up round; the first
# --cold-runs (default 5) of them also cold-boot. Prints the table: medians,
# p90, p95, minima, ratios, and the goals of the spore issue (met or not);
# the raw samples and the table also go to out/bench/spore-<date>.txt.
# Builds and stages what is missing first. The binaries, guest files and
# QEMU run from a copy in the testbed's tmpfs (--from-shares: from the
# shared folders, as bench-boot.sh does; see doc/benchmarks.md for why that
# matters). One testbed session; do not run another one beside it: the
# script warns when another emulated host or other busy processes ran
# beside it, and exits 3 then (after printing everything).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
cd "$SPORE_ROOT"


runs=20 cold_runs=5 captures=3 concurrent=10 testbed_mem=6144 stage=1
number() {  # option value: a positive number
  [[ $2 =~ ^[1-9][0-9]*$ ]] || spore_die "$1 must be a positive number (got '$2')"
  echo "$2"
}
while [ $# -gt 0 ]; do
  case $1 in
    --runs|--cold-runs|--captures|--concurrent|--testbed-mem)
      [ $# -ge 2 ] || spore_die "$1 needs a number"
      v=$(number "$1" "$2")
      case $1 in
        --runs) runs=$v ;; --cold-runs) cold_runs=$v ;; --captures) captures=$v ;;
        --concurrent) concurrent=$v ;; --testbed-mem) testbed_mem=$v ;;
      esac
      shift 2 ;;
    --runs=*) runs=$(number --runs "${1#*=}"); shift ;;
    --cold-runs=*) cold_runs=$(number --cold-runs "${1#*=}"); shift ;;
    --captures=*) captures=$(number --captures "${1#*=}"); shift ;;
    --concurrent=*) concurrent=$(number --concurrent "${1#*=}"); shift ;;
    --testbed-mem=*) testbed_mem=$(number --testbed-mem "${1#*=}"); shift ;;
    --from-shares) stage=0; shift ;;
    -h|--help) bench_usage; exit 0 ;;
    *) spore_die "unknown argument: $1 (try --help)" ;;
  esac
done
[ "$concurrent" -ge 2 ] || spore_die "--concurrent must be at least 2"
# The 2 GiB guest, its RAM cache and the copies live in the testbed's memory.
[ "$testbed_mem" -ge 4096 ] || spore_die "--testbed-mem must be at least 4096 for the 2 GiB guest"

scripts/build.sh >&2
peer=$(scripts/fetch-qemu-peer.sh)
bench_vsock_modules

mkdir -p "$SPORE_OUT/bench"
raw=$SPORE_OUT/bench/spore-$(date +%Y%m%d-%H%M%S).txt
{
  printf '# scripts/bench-spore.sh --runs %s --cold-runs %s --captures %s --concurrent %s --testbed-mem %s%s, %s\n' \
    "$runs" "$cold_runs" "$captures" "$concurrent" "$testbed_mem" "$([ "$stage" = 1 ] || echo ' --from-shares')" \
    "$(date -Is)"
  printf '# spore %s; peer qemu-system-arm %s; outer kernel %s\n' \
    "$(git describe --always --dirty 2>/dev/null || echo '?')" "$(bench_qemu_version "$peer")" "$bench_kpkg"
} >"$raw"

# Runs inside the testbed (busybox sh): load the modules the peer needs,
# mount debugfs, copy what the benchmark executes into the testbed's tmpfs (a file on a
# shared folder loses its page cache at every open, so each exec would read
# the binary again through virtio-fs), then run the benchmark.
# shellcheck disable=SC2016  # expanded by the inner shell
inner="$BENCH_INNER_MODULES"'
# KVM counts exits per VM in debugfs; the benchmark reads them if it can.
[ -d /sys/kernel/debug/kvm ] || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
if [ "$STAGE" = 1 ]; then
  stage=${TMPDIR:-/tmp}/bench-spore-stage
  rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/share/spore"
  cp "$BIN/spore-vm" "$BIN/spore-bench" "$stage/bin/"
  cp "$SHARE/Image" "$SHARE/initramfs.cpio" "$SHARE/demo-rootfs.img" "$stage/share/spore/"
  cp -R "$PEER" "$stage/qemu-peer"
  echo "# staged into the testbed tmpfs: $(du -sm "$stage" | cut -f1) MiB" >>"$RAW"
  exec "$stage/bin/spore-bench" spore --qemu-peer "$stage/qemu-peer" "$@"
fi
exec "$BIN/spore-bench" spore --qemu-peer "$PEER" "$@"
'
spore_log "benchmark: $runs rounds (+1 warm-up) of resume x2 and qemu restore, $cold_runs cold boots," \
  "$captures captures per size; raw samples in ${raw#"$SPORE_ROOT"/}"
bench_watch_start "$raw"
status=0
scripts/testbed.sh --mem "$testbed_mem" --share "$peer" --share "$bench_kmods" --share "$SPORE_OUT/bench" \
  --timeout 3600 -- \
  env RAW="$raw" STAGE="$stage" BIN="$SPORE_AARCH64_BIN" SHARE="$SPORE_AARCH64_SHARE" PEER="$peer" \
  sh -c "$inner" bench-inner "${bench_modules[@]}" -- \
  --runs "$runs" --cold-runs "$cold_runs" --captures "$captures" --concurrent "$concurrent" --raw "$raw" \
  || status=$?
disturbed=0
bench_watch_stop || disturbed=1
spore_log "raw samples and table: ${raw#"$SPORE_ROOT"/}"
[ "$status" -ne 0 ] || [ "$disturbed" = 0 ] || status=3
exit "$status"
