#!/bin/sh
# Runs one group of Catch2 test cases and proves that it ran what it
# declares: the cases the binary lists for SPEC must all have run, at least
# one, or the group fails (a mistyped tag, an empty group or a crash that
# still exits 0 cannot pass). POSIX sh: it also runs inside the testbeds'
# busybox.
#
#   scripts/catch-run.sh NAME BINARY SPEC [CATCH ARGS...]
#
# Prints, last, one line that scripts/test.sh collects:
#   catch-run: NAME: declared D, ran R, passed|FAILED
# Exit status: the binary's own if it failed, else 0, or 1 when the counts
# disagree.
set -u
[ $# -ge 3 ] || { echo "usage: catch-run.sh NAME BINARY SPEC [CATCH ARGS...]" >&2; exit 2; }
name=$1 bin=$2 spec=$3
shift 3

# (Catch2 2.x exits with the number of cases it lists.)
declared=$("$bin" "$spec" --list-test-names-only | grep -c .)
out=${TMPDIR:-/tmp}/catch-run.$$
# -w NoTests: a spec that matches nothing is a failure, not a pass.
"$bin" "$spec" -w NoTests --reporter compact "$@" >"$out" 2>&1
rc=$?
cat "$out"
# The compact reporter's last line: "Passed all 12 test cases with ..." (or
# "both 2", or "1 test case"); on failure "Failed ...".
ran=$(sed -n 's/^Passed \(all \|both \)\{0,1\}\([0-9][0-9]*\) test case.*/\2/p' "$out" | tail -n 1)
rm -f "$out"
[ -n "$ran" ] || ran=0
verdict=passed
if [ $rc -ne 0 ]; then
  verdict=FAILED
elif [ "$declared" -eq 0 ] || [ "$ran" != "$declared" ]; then
  verdict=FAILED
  echo "catch-run: $name: the group declares $declared cases but $ran ran" >&2
  rc=1
fi
echo "catch-run: $name: declared $declared, ran $ran, $verdict"
exit $rc
