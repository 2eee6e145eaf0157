#!/usr/bin/env bash
# Self-test of scripts/testbed.sh for one architecture: what doc/testbed.md
# promises a command, checked from the host side the way a caller sees it.
#
#   tests/testbed/selftest.sh aarch64|x86_64
#
# Boots the testbed six times: a command that checks arguments, environment,
# working directory, PATH (spore-testbed-probe from out/<arch>/bin), shared
# files in both directories and binary stdout/stderr, and exits 7; a command
# killed by SIGKILL (137); a command that does not exist (127); a --timeout
# (124); a guest that powers off under the command (125, reported as a
# harness error); a harness stopped with SIGTERM mid-run (143, nothing left
# behind). Usage errors (2) need no boot. Prints one "ok" or "not ok" line
# per check; exits 0 only if all passed. Its own temporary files go at exit,
# also on SIGINT, SIGTERM or SIGHUP (a harness it started is stopped first).
set -uo pipefail

arch=${1:-}
case $arch in
  aarch64|x86_64) ;;
  *) echo "usage: tests/testbed/selftest.sh aarch64|x86_64" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
. "$root/scripts/lib.sh"
testbed=$root/scripts/testbed.sh
case $arch in
  aarch64) bindir=$SPORE_AARCH64_BIN ;;
  x86_64) bindir=$SPORE_X86_64_BIN ;;
esac
[ -x "$bindir/spore-testbed-probe" ] || { echo "selftest: $bindir/spore-testbed-probe is missing (run scripts/build.sh)" >&2; exit 1; }

# ------------------------------------------------------------------ cleanup

tmp=$(mktemp -d "${TMPDIR:-/tmp}/spore-selftest.XXXXXX")
tmp=$(cd "$tmp" && pwd -P)
bg_pid=
cleanup() {
  if [ -n "$bg_pid" ]; then
    kill -TERM "$bg_pid" 2>/dev/null && wait "$bg_pid" 2>/dev/null
    bg_pid=
  fi
  rm -rf -- "$tmp"
}
trap cleanup EXIT
trap 'cleanup; trap - EXIT; exit 130' INT
trap 'cleanup; trap - EXIT; exit 143' TERM
trap 'cleanup; trap - EXIT; exit 129' HUP

# The harness's own temporary directories go here, so that leftovers show.
export TMPDIR=$tmp/harness-tmp
mkdir -p "$TMPDIR"
# Every run uses the small memory the checks need.
export SPORE_TESTBED_MEM=1024

failed=0 checks=0
ok() { checks=$((checks + 1)); echo "ok - $*"; }
not_ok() { checks=$((checks + 1)); failed=$((failed + 1)); echo "not ok - $*"; }
expect() {  # description, command...
  local what=$1
  shift
  if "$@"; then ok "$what"; else not_ok "$what"; fi
}
same_file() { cmp -s -- "$1" "$2"; }
no_leftovers() { [ -z "$(ls -A "$TMPDIR")" ]; }

# Runs the testbed; stdout, stderr and status land in $tmp/NAME.{out,err,rc}.
# In the background, so that a signal to this script is handled at once
# (bash runs traps only between foreground commands; `wait` is interrupted).
tb() {
  local name=$1 rc=0
  shift
  "$testbed" --arch "$arch" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  bg_pid=$!
  wait "$bg_pid" || rc=$?
  bg_pid=
  echo "$rc" >"$tmp/$name.rc"
  echo "# $name: exit status $rc"
}
rc_is() { [ "$(cat "$tmp/$1.rc")" = "$2" ]; }
err_has() { grep -qF -- "$2" "$tmp/$1.err"; }
show_err() { sed 's/^/#   | /' "$tmp/$1.err" | head -n 40; }

# ------------------------------------------------------------ usage errors

tb usage-arch --arch=sparc -- true
expect "--arch sparc is a usage error (2)" rc_is usage-arch 2
expect "--arch sparc says what --arch takes" err_has usage-arch "--arch must be aarch64 or x86_64"
tb usage-mem --mem 100 -- true
expect "--mem 100 is a usage error (2)" rc_is usage-mem 2
tb usage-nocmd
expect "no command is a usage error (2)" rc_is usage-nocmd 2
tb usage-share --share "$tmp/no-such-dir" -- true
expect "--share of a missing directory is a usage error (2)" rc_is usage-share 2

# ------------------------------------------------------- the main command

# Input files in the current directory (shared by default), and a second
# shared directory given with --share.
work=$tmp/work other=$tmp/other
mkdir -p "$work" "$other"
{ for i in $(seq 0 255); do printf "\\$(printf '%03o' "$i")"; done
  head -c 300000 /dev/urandom; } >"$work/blob.out"
head -c 200000 /dev/urandom >"$work/blob.err"
printf 'from the host\n' >"$other/hello"
args=(plain 'two words' "it's" 'dq"x' $'new\nline' $'\xff\xfe not utf-8' -n -- '' '*' '$HOME' 'back\slash' ' lead')
value=$'spaces and\nnewline \'quote\''
# The command checks what only the guest can see and writes its findings
# into the shares; stdout and stderr carry the blobs.
script='
  spore-testbed-probe "$@" >probe.out 2>probe.err
  printf "%s" "$SPORE_SELFTEST_VALUE" >value.out
  [ -z "${OTHER_SELFTEST_VALUE+set}" ] || echo leaked >leaked.out
  printf "%s\n" "$PATH" >path.out
  pwd -P >pwd.out
  command -v spore-testbed-probe >which.out
  cat "$SELFTEST_OTHER/hello" >"$SELFTEST_OTHER/reply" 2>&1
  [ -f "$SPORE_SELFTEST_ROOT/scripts/testbed.sh" ] && echo yes >root-shared.out
  cat blob.out
  cat blob.err >&2
  exit 7'
cd "$work" || exit 1
export SPORE_SELFTEST_VALUE=$value OTHER_SELFTEST_VALUE=x SPORE_SELFTEST_ROOT=$root
tb main --share "$work" --share "$other" -- env SELFTEST_OTHER="$other" sh -c "$script" sh "${args[@]}"
unset SPORE_SELFTEST_VALUE OTHER_SELFTEST_VALUE SPORE_SELFTEST_ROOT
expect "the command's exit status comes back (7)" rc_is main 7
rc_is main 7 || show_err main
expect "stdout is the command's, byte for byte" same_file "$work/blob.out" "$tmp/main.out"
expect "stderr is the command's, byte for byte" same_file "$work/blob.err" "$tmp/main.err"
{ printf 'spore-testbed-probe %s\n' "$arch"; printf '%s\0' "${args[@]}"; } >"$tmp/probe.expected"
expect "spore-testbed-probe ran as a $arch binary and got every argument exactly" \
  same_file "$tmp/probe.expected" "$work/probe.out"
expect "spore-testbed-probe came from $bindir" \
  [ "$(cat "$work/which.out" 2>/dev/null)" = "$(cd "$bindir" && pwd -P)/spore-testbed-probe" ]
expect "PATH starts with the binaries' directory" \
  [ "$(cut -d: -f1 "$work/path.out" 2>/dev/null)" = "$(cd "$bindir" && pwd -P)" ]
printf '%s' "$value" >"$tmp/value.expected"
expect "SPORE_* variables arrive with their exact values" same_file "$tmp/value.expected" "$work/value.out"
expect "other variables do not arrive" [ ! -e "$work/leaked.out" ]
expect "the working directory is the caller's" [ "$(cat "$work/pwd.out" 2>/dev/null)" = "$work" ]
expect "a second --share is readable and writable" same_file "$other/hello" "$other/reply"
expect "the project root is always shared" [ "$(cat "$work/root-shared.out" 2>/dev/null)" = yes ]
expect "no temporary files are left behind" no_leftovers

# ------------------------------------------------------- statuses and errors

tb signal -- sh -c 'kill -KILL $$'
expect "a command killed by SIGKILL reports 137" rc_is signal 137
tb notfound -- no-such-command-in-the-testbed
expect "a command that does not exist reports 127" rc_is notfound 127
expect "the shell says it was not found" err_has notfound "not found"

tb timeout --timeout 3 -- sleep 600
expect "--timeout 3 on sleep 600 reports 124" rc_is timeout 124
expect "a timeout is reported as a harness error" err_has timeout "testbed: error: timed out after 3s"
expect "no temporary files are left behind after a timeout" no_leftovers

tb crash -- sh -c 'echo before; poweroff -f; sleep 600'
expect "a guest that stops without a status reports 125" rc_is crash 125
expect "it is reported as a harness error" err_has crash "testbed: error: the testbed crashed or stopped"
expect "with the console log's path" err_has crash "testbed: console log:"
expect "the command's output before that still arrives" [ "$(cat "$tmp/crash.out")" = before ]

# SIGTERM to the harness while the command runs: it stops what it started,
# removes its directory and exits 143.
rm -f "$work/started"
"$testbed" --arch "$arch" -- sh -c 'touch started; sleep 600' >"$tmp/term.out" 2>"$tmp/term.err" &
bg_pid=$!
# The command announces itself through the share; the deadline only bounds
# a broken testbed (the boot takes seconds).
for _ in $(seq 6000); do
  [ -e "$work/started" ] && break
  kill -0 "$bg_pid" 2>/dev/null || break
  sleep 0.1
done
expect "the command started (before SIGTERM)" [ -e "$work/started" ]
kill -TERM "$bg_pid" 2>/dev/null
rc=0
wait "$bg_pid" || rc=$?
term_pid=$bg_pid bg_pid=
echo "# term: exit status $rc"
expect "SIGTERM to the harness: exit status 143" [ "$rc" = 143 ]
expect "SIGTERM to the harness: its temporary directory is gone" no_leftovers
# QEMU and virtiofsd name files in the run's directory on their command lines.
survivors=$(grep -l -a -F "spore-testbed.$term_pid." /proc/[0-9]*/cmdline 2>/dev/null || true)
expect "SIGTERM to the harness: none of its helpers survive" [ -z "$survivors" ]

echo "# $arch testbed self-test: $((checks - failed)) of $checks checks passed"
[ "$failed" = 0 ]
