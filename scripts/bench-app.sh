#!/usr/bin/env bash
# Packed-app benchmark (doc/benchmarks.md, "Packed apps"): what an app made
# by spore-pack costs its user, beside the cold boot of the same guest.
#   pack     on this host: spore-pack of the demo image (oci:out/demo/oci)
#            and of a Debian bookworm arm64 minbase root (dir:), wall time,
#            stub and sidecar sizes;
# then in ONE testbed session (spore-bench app):
#   seal     `./app --spore-seal` (what spore-pack runs on an arm64 host):
#            time, the sealed sidecar's size and contents;
#   cold     the same kernel, initramfs, rootfs, vCPUs and RAM cold-booted
#            by spore-vm (`true` to its exit, `echo x` to its first output),
#            and by the stub itself (`./app --mem 255 true`), first rounds;
#   one-shot `./app true` (fork -> exit), `./app echo x` (fork -> first
#            byte), interleaved with `spore-vm resume` of a spore of the same
#            guest (what the stub adds on top of the VMM);
#   daemon   `./app start`, then `./app exec true` / `./app exec echo x`,
#            the same session spoken straight to the monitor's socket,
#            `./app status --json`, `./app --version`; `./app stop`.
#
#   scripts/bench-app.sh [--runs N] [--cold-runs N] [--pack-runs K]
#                        [--no-minbase] [--refresh-minbase] [--testbed-mem MiB]
#
# N >= 1 rounds (default 20) after one warm-up round; the first --cold-runs
# (default 10) of them also cold-boot. The demo is packed --pack-runs times
# (default 3), the minbase root once unless --pack-runs is given. The minbase
# root is made once by `debootstrap --foreign --variant=minbase` (the first
# stage: download and unpack, nothing run) and cached in $SPORE_DEV_CACHE/minbase/
# (--refresh-minbase makes a new one); if the Debian mirror cannot be reached
# that image is skipped, with a warning. Prints the tables, the ratios to the
# cold boot and the goals of the product issue (met or not); raw samples and
# tables go to out/bench/app-<date>.txt. The apps, spore-vm and spore-bench run
# from a copy in the testbed's tmpfs (a shared folder would be re-read at
# every exec). One testbed session; do not run another one beside it: the
# script warns when another emulated host or other busy processes ran beside
# it (while packing or in the testbed), and exits 3 then (after printing
# everything).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
cd "$SPORE_ROOT"


runs=20 cold_runs=10 pack_runs='' testbed_mem=4096 minbase=1 refresh=0
number() {  # option value: a positive number
  [[ $2 =~ ^[1-9][0-9]*$ ]] || spore_die "$1 must be a positive number (got '$2')"
  echo "$2"
}
while [ $# -gt 0 ]; do
  case $1 in
    --runs|--cold-runs|--pack-runs|--testbed-mem)
      [ $# -ge 2 ] || spore_die "$1 needs a number"
      v=$(number "$1" "$2")
      case $1 in
        --runs) runs=$v ;; --cold-runs) cold_runs=$v ;; --pack-runs) pack_runs=$v ;; --testbed-mem) testbed_mem=$v ;;
      esac
      shift 2 ;;
    --runs=*) runs=$(number --runs "${1#*=}"); shift ;;
    --cold-runs=*) cold_runs=$(number --cold-runs "${1#*=}"); shift ;;
    --pack-runs=*) pack_runs=$(number --pack-runs "${1#*=}"); shift ;;
    --testbed-mem=*) testbed_mem=$(number --testbed-mem "${1#*=}"); shift ;;
    --no-minbase) minbase=0; shift ;;
    --refresh-minbase) refresh=1; shift ;;
    -h|--help) bench_usage; exit 0 ;;
    *) spore_die "unknown argument: $1 (try --help)" ;;
  esac
done
# The minbase app's sidecar, its extracted rootfs (twice: before and after
# sealing) and RAM files live in the testbed's tmpfs, which gets half its memory.
[ "$testbed_mem" -ge 2048 ] || spore_die "--testbed-mem must be at least 2048"

# A Debian bookworm arm64 minbase root: debootstrap's first stage only
# (--foreign downloads and unpacks the packages and runs nothing, which is
# enough for a rootfs that runs `true` and `sh`). Made once, then reused:
# $SPORE_DEV_CACHE/minbase/bookworm-arm64-<recipe>/<date>-<package list hash>/
# {root,packages,created}, where the recipe hashes the suite, mirror,
# debootstrap's version and this function; the newest entry of the recipe is
# used. Then tidied the way a finished install is: the downloaded .debs and
# debootstrap's own folder removed, and /proc a directory (debootstrap makes
# it a symlink to /proc when it runs in a container). Prints the entry, or
# fails with a warning when the mirror cannot be reached.
minbase_suite=bookworm
minbase_mirror=http://deb.debian.org/debian
minbase_root() {
  local recipe base entry tmp
  recipe=$(printf '%s\n' "$minbase_suite" arm64 minbase "$minbase_mirror" \
    "$(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null)" "$(declare -f minbase_root)" | spore_hash)
  base=$SPORE_DEV_CACHE/minbase/$minbase_suite-arm64-$recipe
  if [ "$refresh" = 0 ]; then
    entry=$(find "$base" -mindepth 2 -maxdepth 2 -name .complete 2>/dev/null | sort | tail -n1)
    if [ -n "$entry" ]; then
      dirname "$entry"
      return 0
    fi
  fi
  command -v debootstrap >/dev/null || { spore_log "warning: debootstrap is missing (run scripts/setup.sh)"; return 1; }
  if ! wget -q --spider --timeout=15 --tries=2 "$minbase_mirror/dists/$minbase_suite/Release"; then
    spore_log "warning: $minbase_mirror cannot be reached"
    return 1
  fi
  tmp=$base/tmp.$$
  rm -rf "$tmp" && mkdir -p "$tmp"
  spore_log "creating a Debian $minbase_suite arm64 minbase root (debootstrap --foreign, once; about 20 s)"
  if ! timeout 1800 debootstrap --foreign --variant=minbase --arch=arm64 "$minbase_suite" "$tmp/root" \
      "$minbase_mirror" >"$tmp/debootstrap.log" 2>&1; then
    spore_log "warning: debootstrap failed (mirror unreachable?); its log ends:"
    tail -n 5 "$tmp/debootstrap.log" >&2
    rm -rf "$tmp"
    return 1
  fi
  sed 's|.*/||' "$tmp/root/debootstrap/debpaths" | sort >"$tmp/packages"
  rm -rf "$tmp/root/debootstrap"
  find "$tmp/root/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -delete
  if [ -L "$tmp/root/proc" ]; then
    rm "$tmp/root/proc" && mkdir -m 0555 "$tmp/root/proc"
  fi
  date -u +%Y-%m-%dT%H:%M:%SZ >"$tmp/created"
  touch "$tmp/.complete"
  entry=$base/$(date -u +%Y%m%d)-$(spore_hash <"$tmp/packages")
  if [ -d "$entry" ]; then rm -rf "$tmp"; else mv "$tmp" "$entry"; fi
  echo "$entry"
}

scripts/build.sh >&2
pack=$SPORE_OUT/bin/spore-pack
apps_dir=$SPORE_OUT/bench-apps
mkdir -p "$SPORE_OUT/bench"
raw=$SPORE_OUT/bench/app-$(date +%Y%m%d-%H%M%S).txt
{
  printf '# scripts/bench-app.sh --runs %s --cold-runs %s --pack-runs %s --testbed-mem %s%s, %s\n' \
    "$runs" "$cold_runs" "${pack_runs:-default}" "$testbed_mem" "$([ "$minbase" = 1 ] || echo ' --no-minbase')" \
    "$(date -Is)"
  printf '# spore %s; outer kernel %s\n' "$(git describe --always --dirty 2>/dev/null || echo '?')" \
    "$(spore_cloud_kernel_pkg)"
} >"$raw"

# The images: name, spore-pack source, pack runs.
images=("demo oci:$SPORE_OUT/demo/oci ${pack_runs:-3}")
if [ "$minbase" = 1 ]; then
  if mb=$(minbase_root); then
    images+=("minbase dir:$mb/root ${pack_runs:-1}")
    {
      printf '# minbase: %s (created %s), %s packages, list %s; debootstrap %s\n' "$mb" "$(cat "$mb/created")" \
        "$(wc -l <"$mb/packages")" "$(spore_hash <"$mb/packages")" "$(dpkg-query -W -f='${Version}' debootstrap)"
      printf '# minbase packages: %s\n' "$(tr '\n' ' ' <"$mb/packages")"
      printf '# minbase root: %s files, %s MiB\n' "$(find "$mb/root" | wc -l)" "$(du -sm "$mb/root" | cut -f1)"
    } >>"$raw"
  else
    spore_log "warning: skipping the Debian minbase image"
    echo "# minbase: skipped (the Debian mirror could not be reached or debootstrap failed)" >>"$raw"
  fi
fi

# ---- packing, on this host
rm -rf "$apps_dir" && mkdir -p "$apps_dir"
echo "# pack phase (build host)" >>"$raw"
bench_watch_start "$raw"
pack_disturbed=0
names=()
for image in "${images[@]}"; do
  read -r name src n <<<"$image"
  log=$apps_dir/$name.pack.log
  for round in $(seq 1 "$n"); do
    spore_log "packing $name ($round/$n): spore-pack $src"
    tf=$(mktemp)
    TIMEFORMAT='%3R %3U %3S'
    status=0
    { time "$pack" -q "$src" -o "$apps_dir/$name" >"$log" 2>&1 || status=$?; } 2>"$tf"
    read -r wall user sys <"$tf"
    rm -f "$tf"
    if [ "$status" != 0 ]; then
      cat "$log" >&2
      spore_die "spore-pack $src failed (status $status)"
    fi
    awk -v name="$name" -v round="$round" -v w="$wall" -v u="$user" -v s="$sys" \
      -v stub="$(stat -c %s "$apps_dir/$name")" -v sidecar="$(stat -c %s "$apps_dir/$name.spore")" 'BEGIN {
        printf "pack:%s round=%s wall_ms=%.0f user_ms=%.0f sys_ms=%.0f stub_bytes=%s sidecar_bytes=%s\n",
          name, round, w * 1000, u * 1000, s * 1000, stub, sidecar }' >>"$raw"
  done
  sed 's/^/# spore-pack said: /' "$log" >>"$raw"
  names+=("$name")
done
bench_watch_stop || pack_disturbed=1

# The pack table, from the raw lines: median and range of each figure.
pack_table() {
  local name
  printf '%-34s %4s %10s %10s %10s\n' "packing (build host, x86_64)" n median min max
  for name in "${names[@]}"; do
    grep "^pack:$name " "$raw" | awk -v name="$name" '
      function field(k,   i) { for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) return substr($i, length(k) + 2) }
      { n++; w[n] = field("wall_ms"); u[n] = field("user_ms") + field("sys_ms"); s = field("stub_bytes"); b = field("sidecar_bytes") }
      function med(a, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      }
      END {
        mw = med(w, n); mu = med(u, n)
        printf "%-34s %4d %10.0f %10.0f %10.0f\n", name ": spore-pack wall (ms)", n, mw, w[1], w[n]
        printf "%-34s %4d %10.0f %10.0f %10.0f\n", name ": spore-pack CPU (ms)", n, mu, u[1], u[n]
        printf "%-34s %4d %10.2f\n", name ": stub (MiB)", 1, s / 1048576
        printf "%-34s %4d %10.2f\n", name ": sidecar, unsealed (MiB)", 1, b / 1048576
      }'
  done
  local stub=$apps_dir/${names[0]}
  if readelf -lW "$stub" | grep -q 'program interpreter'; then
    echo "stub: DYNAMIC ($(file -b "$stub" | cut -d, -f1-2))"
  else
    echo "stub: static, $(stat -c %s "$stub") bytes ($(file -b "$stub" | cut -d, -f1-2))"
  fi
}
{ echo; pack_table; echo; } | tee -a "$raw"

# ---- ONE testbed session: seal, cold boots, one-shot runs, daemon mode.
# Runs inside the testbed (busybox sh): mount debugfs (KVM's exit counters),
# copy the benchmark, spore-vm and the apps into the testbed's tmpfs, run.
# shellcheck disable=SC2016  # expanded by the inner shell
inner="$BENCH_INNER_MODULES"'
[ -d /sys/kernel/debug/kvm ] || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
stage=${TMPDIR:-/tmp}/bench-app-stage
rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/apps"
cp "$BIN/spore-vm" "$BIN/spore-bench" "$stage/bin/"
for name in $NAMES; do
  cp "$APPS/$name" "$APPS/$name.spore" "$stage/apps/"
  set -- "$@" --app "$name=$stage/apps/$name"
done
echo "# staged into the testbed tmpfs: $(du -sm "$stage" | cut -f1) MiB" >>"$RAW"
exec "$stage/bin/spore-bench" app "$@"
'
spore_log "benchmark: seal ${names[*]}, $runs rounds (+1 warm-up) of one-shot and daemon runs, $cold_runs cold boots;" \
  "raw samples in ${raw#"$SPORE_ROOT"/}"
echo "# testbed phase" >>"$raw"
bench_watch_start "$raw"
status=0
scripts/testbed.sh --mem "$testbed_mem" --share "$apps_dir" --share "$SPORE_OUT/bench" --timeout 3600 -- \
  env RAW="$raw" BIN="$SPORE_AARCH64_BIN" APPS="$apps_dir" NAMES="${names[*]}" \
  sh -c "$inner" bench-inner -- \
  --runs "$runs" --cold-runs "$cold_runs" --raw "$raw" \
  || status=$?
disturbed=$pack_disturbed
bench_watch_stop || disturbed=1
spore_log "raw samples and tables: ${raw#"$SPORE_ROOT"/}"
[ "$status" -ne 0 ] || [ "$disturbed" = 0 ] || status=3
exit "$status"
