#!/usr/bin/env bash
# Runs a command inside the testbed: an emulated host (QEMU TCG) whose kernel
# provides a working, nested /dev/kvm, so that a KVM backend can be tested end
# to end on machines without hardware KVM of its architecture: an arm64 host
# with EL2 (--arch aarch64, the default) or an AMD x86_64 host with SVM and
# nested paging (--arch x86_64). See doc/testbed.md.
#
# On a host of that architecture with usable hardware KVM the command simply
# runs here.
set -euo pipefail

# bash reads a script as it runs it. The whole body is one brace group, so
# it is parsed completely before anything runs, and a running testbed is not
# derailed when this file is edited (or replaced by a checkout) under it.
{
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Exit codes of the harness itself (documented in doc/testbed.md).
readonly EXIT_USAGE=2 EXIT_TIMEOUT=124 EXIT_TESTBED=125

usage() {
  cat <<'EOF'
usage: scripts/testbed.sh [--arch aarch64|x86_64] [--share DIR]... [--mem MiB]
                          [--timeout SECONDS] [--] CMD [ARGS...]

Runs CMD inside the testbed (an emulated arm64 or AMD x86_64 host with a
working /dev/kvm), in the current directory, with the project's binaries for
that architecture first on PATH. CMD's stdout, stderr and exit status become
this script's own.

  --arch ARCH        aarch64 (default, env SPORE_TESTBED_ARCH) or x86_64
  --share DIR        make DIR visible inside at the same path, read-write
                     (repeatable; default: the current directory). The
                     project root is always shared.
  --mem MiB          memory of the emulated host (default 3072,
                     env SPORE_TESTBED_MEM)
  --timeout SECONDS  kill the testbed after this long (default 3600,
                     env SPORE_TESTBED_TIMEOUT)
  -h, --help         show this help

Exit status: CMD's own, or 124 (timeout), 125 (the testbed failed to build,
boot or run, or crashed), 2 (usage error).
Env: SPORE_TESTBED_VERBOSE=1 reports what the harness does and how long it took.
EOF
}

usage_error() {
  printf 'testbed: %s\n' "$*" >&2
  printf "Try 'scripts/testbed.sh --help'.\n" >&2
  exit $EXIT_USAGE
}

verbose=${SPORE_TESTBED_VERBOSE:-0}
say() { printf 'testbed: %s\n' "$*" >&2; }
info() { [ "$verbose" != 1 ] || say "$@"; }

# ---------------------------------------------------------------- arguments

shares=()
arch=${SPORE_TESTBED_ARCH:-aarch64}
mem=${SPORE_TESTBED_MEM:-3072}
timeout=${SPORE_TESTBED_TIMEOUT:-3600}

while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --arch) [ $# -ge 2 ] || usage_error "--arch needs aarch64 or x86_64"; arch=$2; shift 2 ;;
    --arch=*) arch=${1#*=}; shift ;;
    --share) [ $# -ge 2 ] || usage_error "--share needs a directory"; shares+=("$2"); shift 2 ;;
    --share=*) shares+=("${1#*=}"); shift ;;
    --mem) [ $# -ge 2 ] || usage_error "--mem needs a size in MiB"; mem=$2; shift 2 ;;
    --mem=*) mem=${1#*=}; shift ;;
    --timeout) [ $# -ge 2 ] || usage_error "--timeout needs seconds"; timeout=$2; shift 2 ;;
    --timeout=*) timeout=${1#*=}; shift ;;
    --) shift; break ;;
    -*) usage_error "unknown option: $1" ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || usage_error "no command given"
case $arch in
  aarch64) bindir=$SPORE_AARCH64_BIN qemu=qemu-system-aarch64 ;;
  x86_64) bindir=$SPORE_X86_64_BIN qemu=qemu-system-x86_64 ;;
  *) usage_error "--arch must be aarch64 or x86_64 (got '$arch')" ;;
esac
{ [[ $mem =~ ^[1-9][0-9]*$ ]] && [ "$mem" -ge 512 ]; } || usage_error "--mem must be a whole number of MiB, at least 512 (got '$mem')"
[[ $timeout =~ ^[1-9][0-9]*$ ]] || usage_error "--timeout must be a positive whole number of seconds (got '$timeout')"

# Physical absolute path of a directory. The guest sees the host's physical
# paths, so symlinked spellings are resolved once, here. (The sentinel keeps
# names that end in a newline intact through $(...).)
physdir() {
  local p
  p=$(cd -P -- "$1" 2>/dev/null && pwd -P && echo x) || return 1
  printf '%s' "${p%$'\nx'}"
}

cwd=$(physdir .) || { say "error: cannot resolve the current directory"; exit $EXIT_TESTBED; }
[ ${#shares[@]} -gt 0 ] || shares=("$cwd")
resolved=()
for d in "${shares[@]}"; do
  [ -d "$d" ] || usage_error "--share: not a directory: $d"
  resolved+=("$(physdir "$d")")
done

# ------------------------------------------------------------------ native

# True if this host runs guests of $arch on hardware KVM. On x86_64 that
# takes kvm_intel or kvm_amd behind /dev/kvm and the CPU's VMX or SVM; a PVM
# /dev/kvm (module kvm_pvm, software nested virtualization without VMX/SVM)
# runs stock guest kernels through the instruction emulator, at a tiny
# fraction of the speed and with gaps (HOST.md), so it never counts.
native_kvm() {
  [ "$(uname -m)" = "$arch" ] && [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
  [ "$arch" = x86_64 ] || return 0
  [ ! -e /sys/module/kvm_pvm ] || return 1
  [ -e /sys/module/kvm_intel ] || [ -e /sys/module/kvm_amd ] || return 1
  grep -qwE 'vmx|svm' /proc/cpuinfo
}

if native_kvm; then
  info "$arch host with hardware KVM: running directly"
  # coreutils timeout exits 124 on expiry, like the emulated path.
  PATH=$bindir:$PATH exec timeout -k 10 "$timeout" "$@" </dev/null
fi

# ------------------------------------------------------------- preparation

for tool in "$qemu" cpio depmod setpriv tail; do
  command -v "$tool" >/dev/null || { say "error: $tool not found (run scripts/setup.sh)"; exit $EXIT_TESTBED; }
done
VIRTIOFSD=/usr/lib/qemu/virtiofsd
[ -x "$VIRTIOFSD" ] || { say "error: $VIRTIOFSD not found (qemu-system-common; run scripts/setup.sh)"; exit $EXIT_TESTBED; }
# virtiofsd (the C one in QEMU 7.2) needs root to serve files as their owners.
[ "$(id -u)" = 0 ] || { say "error: the testbed needs root (virtiofsd)"; exit $EXIT_TESTBED; }

# The project root, and the binaries' directory in case SPORE_OUT points
# elsewhere, are always visible.
resolved+=("$(physdir "$SPORE_ROOT")")
if [ -d "$bindir" ]; then
  bindir=$(physdir "$bindir")
  resolved+=("$bindir")
fi

# A directory inside another shared one needs no share of its own; and a
# share must not hide the guest's own files or its kernel filesystems.
under() { [ "$1" = "$2" ] || [ "$2" = / ] || [[ $1 == "$2"/* ]]; }
mounts=()
for d in "${resolved[@]}"; do
  for r in /bin /sbin /usr/bin /usr/sbin /lib/modules /testbed /init; do
    under "$r" "$d" && usage_error "cannot share $d: it would hide the testbed's $r"
  done
  for r in /proc /sys /dev; do
    under "$d" "$r" && usage_error "cannot share $d: it is under $r"
  done
  covered=0
  for e in "${resolved[@]}"; do
    if [ "$d" != "$e" ] && under "$d" "$e"; then covered=1; fi
  done
  for e in "${mounts[@]}"; do
    [ "$d" != "$e" ] || covered=1
  done
  [ $covered = 1 ] || mounts+=("$d")
done

cwd_shared=0
for d in "${mounts[@]}"; do
  under "$cwd" "$d" && cwd_shared=1
done
[ $cwd_shared = 1 ] || say "note: $cwd is not shared; the command runs in an empty directory of that name (writes there are lost)"

# The outer environment (kernel + base initramfs), built once and cached.
base=$("$SPORE_ROOT/scripts/testbed/base.sh" "$arch") || { say "error: could not build the $arch outer environment"; exit $EXIT_TESTBED; }
info "outer environment: $base"

# Console logs: one per run, named by our pid, the last few kept.
logdir=$SPORE_OUT/testbed
mkdir -p "$logdir"
log=$logdir/console-$$.log
: >"$log"
# A log whose run is still going is kept however old (a long run's log must
# be there when it fails).
find "$logdir" -maxdepth 1 -name 'console-*.log' -printf '%T@ %f\n' | sort -rn | tail -n +11 \
  | while read -r _ f; do
      p=${f#console-} p=${p%.log}
      kill -0 "$p" 2>/dev/null || rm -f -- "$logdir/$f"
    done

# Everything per run (sockets, streams, initramfs) lives in a private
# directory, so concurrent runs cannot collide. Short path: unix sockets.
# Its name carries our pid, so that the directory of a run that was killed
# outright (SIGKILL: no cleanup) can be recognised and removed later.
tmpbase=${TMPDIR:-/tmp}
[ ${#tmpbase} -le 60 ] || tmpbase=/tmp   # sun_path holds only 108 bytes
for d in "$tmpbase"/spore-testbed.*.*; do
  p=${d#"$tmpbase"/spore-testbed.}
  p=${p%%.*}
  [[ $p =~ ^[0-9]+$ ]] && ! kill -0 "$p" 2>/dev/null && rm -rf -- "$d"
done
run=$(mktemp -d "$tmpbase/spore-testbed.$$.XXXXXX")

# --------------------------------------------------- cleanup (no orphans)

qemu_pid='' timer_pid=''
fsd_pids=() follower_pids=()   # virtiofsd per share; tail per stream

# True while PID runs. Not kill -0: an exited child that the shell has not
# reaped yet (a zombie) still answers to that.
running() {
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [ "${st%% *}" != Z ]
}

# Kills what this script started, by pid: QEMU first (then virtiofsd exits
# by itself and the stream followers drain and stop), then whatever is left.
# TERM first, KILL if it lingers. (setpriv --pdeathsig below covers the case
# where we are killed by SIGKILL and this never runs.)
stop_pids() {
  local grace=$1 p pids=() i
  shift
  for p in "$@"; do
    running "$p" && pids+=("$p")
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  [ "$grace" = wait ] || kill -TERM "${pids[@]}" 2>/dev/null || true
  for i in $(seq 50); do
    for p in "${pids[@]}"; do running "$p" && break; p=; done
    [ -n "$p" ] || break
    sleep 0.1
  done
  for p in "${pids[@]}"; do
    ! running "$p" || kill -KILL "$p" 2>/dev/null || true
  done
  wait "${pids[@]}" 2>/dev/null || true
}
stop_children() {
  stop_pids term $timer_pid $qemu_pid
  timer_pid='' qemu_pid=''
  stop_pids wait "${fsd_pids[@]}" "${follower_pids[@]}"
}
# shellcheck disable=SC2317  # called from traps
cleanup() {
  stop_children
  rm -rf -- "$run"
}
trap cleanup EXIT
trap 'cleanup; trap - EXIT; exit 130' INT
trap 'cleanup; trap - EXIT; exit 143' TERM
trap 'cleanup; trap - EXIT; exit 129' HUP

# A harness failure: the reason, where the console log is, and its tail.
fail() {
  local code=$1
  shift
  say "error: $*"
  say "console log: $log (last 30 lines follow)"
  tail -n 30 -- "$log" | sed 's/^/  | /' >&2
  exit "$code"
}

# Starts a helper in the background; the kernel kills it if we die.
spawn() { setpriv --pdeathsig KILL -- "$@" & }

# --------------------------------------------------------- per-run initramfs

# Single-quotes a string for the guest's sh; works for any bytes but NUL.
shq() {
  local LC_ALL=C
  local s=${1//\'/\'\\\'\'}
  printf "'%s'" "$s"
}

mkdir -p "$run/cpio/testbed"
{
  for i in "${!mounts[@]}"; do
    printf 'share spore%d %s\n' "$i" "$(shq "${mounts[$i]}")"
  done
} >"$run/cpio/testbed/mounts"
{
  # The command gets exactly this environment (the init runs it under env -i).
  printf 'export HOME=/root TMPDIR=/tmp PATH=%s\n' "$(shq "$bindir:/bin:/sbin:/usr/bin:/usr/sbin")"
  for v in $(compgen -e); do
    case $v in
      SPORE_*|CATCH_*|TERM) printf 'export %s\n' "$(shq "$v=${!v}")" ;;
    esac
  done
  [ $cwd_shared = 1 ] || printf 'mkdir -p -- %s\n' "$(shq "$cwd")"
  printf 'cd -- %s || exit 125\n' "$(shq "$cwd")"
  printf "unset OLDPWD\n"
  printf 'set --'
  for a in "$@"; do printf ' %s' "$(shq "$a")"; done
  printf '\nexec "$@"\n'
} >"$run/cpio/testbed/cmd.sh"
# The kernel unpacks concatenated cpio archives in order, so the run's files
# simply follow the cached base.
(cd "$run/cpio" && find . -print0 | cpio -o -0 -H newc -R 0:0 --quiet) >"$run/run.cpio"
cat "$base/base.cpio" "$run/run.cpio" >"$run/initrd"

# ------------------------------------------------------------------ launch

# QEMU's option parser takes ",," for a literal comma.
qesc() { printf '%s' "${1//,/,,}"; }

# The kernel's own messages cost boot time (each console byte is emulated);
# in verbose mode the log gets them all.
kernel_quiet=quiet
[ "$verbose" != 1 ] || kernel_quiet=

t0=$(date +%s.%N)
# shellcheck disable=SC2054  # commas are QEMU's, not array separators
case $arch in
  aarch64)
    qemu_args=(
      -M virt,virtualization=on,gic-version=3,memory-backend=ram
      # pauth-impdef: the architected pointer-auth algorithm costs 2.5x (HOST.md).
      -cpu max,pauth-impdef=on
    )
    console=ttyAMA0 kernel_extra=
    # virt's virtio-mmio transports default to legacy mode, which vhost-user
    # (virtiofsd) refuses.
    qemu_args+=(-global virtio-mmio.force-legacy=false)
    virtio=device ;;
  x86_64)
    qemu_args=(
      # TCG's "max" CPU is an AMD-style one with SVM and nested paging (NPT),
      # so kvm_amd loads inside; TCG does not emulate Intel's VMX (HOST.md).
      -M pc,memory-backend=ram -cpu max
    )
    console=ttyS0
    # The kernel checks that the timer interrupt arrives through the IO-APIC
    # within a few emulated ticks; on a loaded host the emulator is too slow
    # for that and the kernel panics ("IO-APIC + timer doesn't work!", seen
    # at a load average of 10). The timer works; skip the check.
    kernel_extra=no_timer_check
    virtio=pci ;;
esac
qemu_args+=(
  -accel tcg,thread=multi -smp 2 -m "${mem}M"
  # vhost-user (virtiofsd) needs guest RAM it can map: a shared memfd.
  -object "memory-backend-memfd,id=ram,size=${mem}M,share=on"
  -nodefaults -no-user-config -display none -no-reboot
  -kernel "$(qesc "$base/kernel")" -initrd "$(qesc "$run/initrd")"
  -append "console=$console rdinit=/init panic=-1 $kernel_extra $kernel_quiet"
  -chardev "file,id=con,path=$(qesc "$log"),append=on" -serial chardev:con
  -device "virtio-serial-$virtio"
)
# The command's streams and its status, one virtio-serial port each. The
# host ends are regular files, not pipes: QEMU then never has to throttle a
# port, the data of a guest write() is in the file by the time the write
# returns (TCG handles the queue notification synchronously), and nothing
# can be left in flight at power-off. tail streams them out as they grow.
for s in stdout stderr status; do
  : >"$run/$s"
  qemu_args+=(-chardev "file,id=$s,path=$(qesc "$run/$s")" -device "virtserialport,chardev=$s,name=spore.$s")
done

# One virtiofsd per share. It creates its socket, serves one connection and
# exits when QEMU goes away. sandbox=chroot needs only CAP_SYS_CHROOT (the
# namespace sandbox needs CAP_SYS_ADMIN, often missing in CI containers).
for i in "${!mounts[@]}"; do
  src=${mounts[$i]//\\/\\\\}
  spawn "$VIRTIOFSD" --socket-path="$run/fs$i.sock" -o source="${src//,/\\,}" \
    -o sandbox=chroot -o cache=auto -o log_level=err </dev/null >>"$log" 2>&1
  fsd_pids+=($!)
  qemu_args+=(-chardev "socket,id=fs$i,path=$(qesc "$run/fs$i.sock")"
              -device "vhost-user-fs-$virtio,chardev=fs$i,tag=spore$i")
done
for i in "${!mounts[@]}"; do
  for _ in $(seq 500); do
    [ -S "$run/fs$i.sock" ] && break
    running "${fsd_pids[$i]}" || fail $EXIT_TESTBED "virtiofsd for ${mounts[$i]} exited"
    sleep 0.01
  done
  [ -S "$run/fs$i.sock" ] || fail $EXIT_TESTBED "virtiofsd for ${mounts[$i]} did not create its socket"
done

info "console log: $log"
spawn "$qemu" "${qemu_args[@]}" </dev/null >>"$log" 2>&1
qemu_pid=$!
# Stream the command's output while it runs. With --pid, tail reads to the
# end once more after QEMU exits, then stops; nothing is lost.
spawn tail -c +1 -s 0.1 -f --pid="$qemu_pid" "$run/stdout"
follower_pids+=($!)
spawn tail -c +1 -s 0.1 -f --pid="$qemu_pid" "$run/stderr" >&2
follower_pids+=($!)
spawn sleep "$timeout"
timer_pid=$!

# ------------------------------------------------------------------- result

# Wait for QEMU, the timer, or a virtiofsd. A virtiofsd that dies under a
# running guest would leave the guest blocked on its share forever (a FUSE
# request is never answered), so that is a failure too; virtiofsd exiting
# because QEMU just did is not.
watch=("$qemu_pid" "$timer_pid" "${fsd_pids[@]}")
while :; do
  finished=
  wait -n -p finished "${watch[@]}" && qemu_rc=0 || qemu_rc=$?
  if [ "$finished" = "$qemu_pid" ]; then
    break
  elif [ "$finished" = "$timer_pid" ]; then
    timer_pid=
    stop_children
    fail $EXIT_TIMEOUT "timed out after ${timeout}s (--timeout / SPORE_TESTBED_TIMEOUT)"
  fi
  for _ in $(seq 30); do running "$qemu_pid" && sleep 0.1; done
  if running "$qemu_pid"; then
    stop_children
    for i in "${!fsd_pids[@]}"; do
      [ "${fsd_pids[$i]}" != "$finished" ] || fail $EXIT_TESTBED "virtiofsd for ${mounts[$i]} exited while the testbed was running"
    done
    fail $EXIT_TESTBED "a helper (pid $finished) exited while the testbed was running"
  fi
  rest=()
  for p in "${watch[@]}"; do [ "$p" = "$finished" ] || rest+=("$p"); done
  watch=("${rest[@]}")
done
qemu_pid=
kill "$timer_pid" 2>/dev/null || true
wait "$timer_pid" 2>/dev/null || true
timer_pid=
# Let the followers drain what is left of the streams, and virtiofsd notice
# that QEMU is gone; then nothing of ours is left running.
wait "${follower_pids[@]}" 2>/dev/null || true
stop_children
fsd_pids=() follower_pids=()
t1=$(date +%s.%N)

status=$(head -c 4096 "$run/status")
case $status in
  "exit "*)
    rc=${status#exit }
    rc=${rc%%$'\n'*}
    [[ $rc =~ ^[0-9]+$ ]] || fail $EXIT_TESTBED "garbled status from the testbed: $status"
    if [ "$verbose" = 1 ]; then
      say "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "run took %.2f s (QEMU start to exit)", b - a }')"
      grep -a 'testbed-init:' "$log" | sed 's/^/  | /' >&2 || true
    fi
    exit "$rc"
    ;;
  "error "*)
    fail $EXIT_TESTBED "${status#error }"
    ;;
  *)
    fail $EXIT_TESTBED "the testbed crashed or stopped before reporting the command's status (QEMU exit status $qemu_rc)"
    ;;
esac
}
