# shellcheck shell=bash
# Shared by the benchmark scripts (bench-*.sh). Source it after lib.sh; do
# not run it.

# The QEMU peer's host side is vhost-vsock in the testbed's kernel, which
# Debian builds as modules; busybox insmod loads them from the very package
# the testbed boots (resolved the way scripts/testbed/base.sh resolves it),
# each after its dependencies. Sets bench_kpkg (the package), bench_kmods
# (its lib/modules/VERSION folder, to share into the testbed) and
# bench_modules (the .ko paths, dependencies first).
# The calling script's help: its header comment, from line 2 to `set -euo`.
bench_usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

bench_vsock_modules() {
  bench_kpkg=$(spore_cloud_kernel_pkg)
  [ -n "$bench_kpkg" ] || spore_die "cannot resolve the linux-image-*-cloud-arm64 package (run scripts/setup.sh)"
  bench_kmods=$(echo "$(spore_arm64_pkg "$bench_kpkg")"/lib/modules/*)
  [ -d "$bench_kmods/kernel" ] || spore_die "no module tree in $bench_kmods"
  declare -gA bench_loaded=()
  bench_modules=()
  _bench_add_module vhost_vsock
}

_bench_add_module() {  # name: its dependencies first, then itself
  local name=${1//-/_} path dep
  [ -z "${bench_loaded[$name]:-}" ] || return 0
  bench_loaded[$name]=1
  path=$(find "$bench_kmods/kernel" -name "$name.ko" -o -name "${name//_/-}.ko" | head -n1)
  if [ -z "$path" ]; then
    grep -q "/$name\.ko\$" "$bench_kmods/modules.builtin" && return 0
    spore_die "module $name is neither in $bench_kmods nor built in"
  fi
  for dep in $(modinfo -F depends "$path" | tr ',' ' '); do _bench_add_module "$dep"; done
  bench_modules+=("$path")
}

# The start of a script that runs inside the testbed (busybox sh) as
#   sh -c "$BENCH_INNER_MODULES..." NAME MODULE.ko... -- ARGS...
# It loads the modules the peer needs, unless the kernel has them already,
# leaves "$@" = ARGS, and appends a line about the testbed to $RAW.
# shellcheck disable=SC2016,SC2034  # expanded by the inner shell; used by the sourcing script
BENCH_INNER_MODULES='
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
'

# "qemu-system-arm 1:7.2+dfsg-..." of a staged peer (scripts/fetch-qemu-peer.sh).
bench_qemu_version() {
  grep -o '^qemu-system-arm_[^_]*' "$1/packages" | head -n1 | sed 's/^qemu-system-arm_//; s/%3a/:/'
}

# How many emulated hosts (qemu-system-aarch64) run that are not this
# script's own (descendants of it): another testbed on these 2 cores would
# halve the speed of ours.
bench_other_hosts() {
  local n=0 pid p
  for pid in $(pgrep -x qemu-system-aar 2>/dev/null); do
    p=$pid
    while [ "${p:-1}" -gt 1 ] && [ "$p" != $$ ]; do
      p=$(awk '/^PPid:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
    done
    [ "${p:-1}" = $$ ] || n=$((n + 1))
  done
  echo "$n"
}

# Busy CPU time of the whole machine so far (user, nice, system, irq,
# softirq; not idle, iowait or steal), in hundredths of a core-second.
_bench_busy_ticks() {
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat
}

# CPU time of this shell's finished children, in hundredths of a second,
# into bench_ticks. bash's `times` (second line: "XmY.YYYs XmY.YYYs") must
# run in this shell itself: a subshell has children of its own.
_bench_children_ticks() {
  local f
  f=$(mktemp)
  times >"$f"
  bench_ticks=$(sed -n 2p "$f" | awk '{
    t = 0
    for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
    printf "%d\n", t * 100 }')
  rm -f "$f"
}

# Watches for disturbance while a benchmark runs: samples bench_other_hosts
# every 2 s in the background (so that a short testbed started and finished
# in the middle of the run is seen too), and measures the CPU time used by
# anything but this script and its children. Call bench_watch_start RAW
# before the testbed and bench_watch_stop after it: it appends the findings
# to RAW, warns on stderr, and returns 1 if the run was disturbed.
bench_watch_start() {
  bench_watch_raw=$1
  bench_watch_file=$(mktemp)
  bench_watch_t0=$(date +%s.%N)
  bench_watch_busy0=$(_bench_busy_ticks)
  _bench_children_ticks
  bench_watch_children0=$bench_ticks
  bench_watch_others0=$(bench_other_hosts)
  printf '# build host: %s cores, load %s\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$bench_watch_raw"
  if [ "$bench_watch_others0" -gt 0 ]; then
    spore_log "warning: $bench_watch_others0 other qemu-system-aarch64 process(es) running: expect noisy figures"
    printf '# warning: %s other qemu-system-aarch64 running at the start\n' "$bench_watch_others0" >>"$bench_watch_raw"
  fi
  echo "$bench_watch_others0" >"$bench_watch_file"
  (
    max=$bench_watch_others0
    while sleep 2; do
      n=$(bench_other_hosts)
      if [ "$n" -gt "$max" ]; then max=$n; echo "$max" >"$bench_watch_file"; fi
    done
  ) &
  bench_watch_pid=$!
}

bench_watch_stop() {
  kill "$bench_watch_pid" 2>/dev/null || true
  wait "$bench_watch_pid" 2>/dev/null || true
  local others_end max wall busy ours other_pct disturbed=0
  others_end=$(bench_other_hosts)
  max=$(cat "$bench_watch_file")
  rm -f "$bench_watch_file"
  [ "$others_end" -le "$max" ] || max=$others_end
  wall=$(echo "$(date +%s.%N) $bench_watch_t0" | awk '{ printf "%.0f", $1 - $2 }')
  busy=$(( $(_bench_busy_ticks) - bench_watch_busy0 ))
  _bench_children_ticks
  ours=$(( bench_ticks - bench_watch_children0 ))
  # The rest of the machine's busy time, as a share of one core over the run.
  other_pct=$(echo "$busy $ours $wall" | awk '{ o = ($1 - $2) / 100; if (o < 0) o = 0; printf "%.0f", ($3 > 0 ? 100 * o / $3 : 0) }')
  {
    printf '# build host load at the end: %s; wall time %s s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" "$wall"
    printf '# other emulated hosts: %s at the start, at most %s during the run, %s at the end\n' \
      "$bench_watch_others0" "$max" "$others_end"
    printf '# CPU used by everything else on the build host: %s%% of one core over the run\n' "$other_pct"
  } >>"$bench_watch_raw"
  if [ "$max" -gt 0 ]; then
    spore_log "warning: other emulated hosts ran beside this benchmark ($bench_watch_others0 at the start, up to $max during it, $others_end at the end): rerun it"
    printf '# warning: %s other qemu-system-aarch64 running at the end\n' "$others_end" >>"$bench_watch_raw"
    disturbed=1
  fi
  if [ "$other_pct" -gt 15 ]; then
    spore_log "warning: other processes used ${other_pct}% of a core during this benchmark: rerun it"
    printf '# warning: other processes used %s%% of a core\n' "$other_pct" >>"$bench_watch_raw"
    disturbed=1
  fi
  return "$disturbed"
}
