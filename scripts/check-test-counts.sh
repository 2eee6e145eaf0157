#!/usr/bin/env bash
# After ctest: proves from ctest's own log that every entry that passed ran
# Catch2 cases, and that the cases that ran are the cases that exist.
#   - a unit entry ("unit:NAME", one per case) must report exactly 1 case;
#   - a group run through scripts/catch-run.sh must report "declared D, ran D";
#   - with --complete, the unit entries must cover every case the binary lists;
#   - a fuzz entry ("fuzz: TARGET", scripts/fuzz.sh) must report a run of
#     more than 0 executions that passed.
# Prints one table and the totals; exits 1 on any mismatch.
#
#   scripts/check-test-counts.sh [--complete] BUILD_DIR
set -euo pipefail
complete=0
if [ "${1:-}" = --complete ]; then complete=1; shift; fi
build=${1:?usage: check-test-counts.sh [--complete] BUILD_DIR}
log=$build/Testing/Temporary/LastTest.log
[ -f "$log" ] || { echo "check-test-counts: no ctest log at $log" >&2; exit 1; }

# One record per ctest entry: name <TAB> passed(0/1) <TAB> cases reported
# by Catch2 (-1: none) <TAB> catch-run verdict or fuzz.sh's summary line
# ("" if neither).
records=$(awk '
  function flush() {
    if (name != "") printf "%s\t%d\t%d\t%s\n", name, passed, cases, group
    name = ""; passed = 0; cases = -1; group = ""
  }
  /^[0-9]+\/[0-9]+ Test: / { flush(); name = $0; sub(/^[0-9]+\/[0-9]+ Test: /, "", name); next }
  name == "" { next }
  /^Passed (all |both )?[0-9]+ test cases?/ { n = $0; sub(/^Passed (all |both )?/, "", n); sub(/ .*/, "", n); cases = n + 0 }
  /^catch-run: / { group = $0 }
  /^fuzz: [a-z0-9_]+: [0-9?]+ runs in / { group = $0 }
  /^Test Passed\./ { passed = 1 }
  END { flush() }
' "$log")

bad=0 unit_entries=0 unit_cases=0 group_cases=0 entries=0
printf '%-48s %8s %8s\n' "ctest entry (groups)" declared ran
while IFS=$'\t' read -r name passed cases group; do
  [ -n "$name" ] || continue
  [ "$passed" = 1 ] || continue  # ctest already reported the failure
  entries=$((entries + 1))
  if [[ $name == unit:* ]]; then
    unit_entries=$((unit_entries + 1))
    if [ "$cases" != 1 ]; then
      echo "check-test-counts: '$name' passed but ran $cases cases (expected exactly 1)" >&2
      bad=1
    fi
    unit_cases=$((unit_cases + 1))
  elif [[ $name == fuzz:* ]]; then
    if [[ $group =~ ^fuzz:\ [a-z0-9_]+:\ ([0-9]+)\ runs\ in.*:\ passed$ ]] && [ "${BASH_REMATCH[1]}" -gt 0 ]; then
      printf '%-48s %8s %8s\n' "$name" - "${BASH_REMATCH[1]} runs"
    else
      echo "check-test-counts: '$name' passed but did not report a fuzz run: ${group:-nothing}" >&2
      bad=1
    fi
  elif [ -n "$group" ]; then
    if [[ $group =~ declared\ ([0-9]+),\ ran\ ([0-9]+),\ passed$ ]] && [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]; then
      printf '%-48s %8s %8s\n' "$name" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
      group_cases=$((group_cases + BASH_REMATCH[2]))
    else
      echo "check-test-counts: '$name' passed but its group line is: $group" >&2
      bad=1
    fi
  elif [ "$cases" -ge 0 ]; then
    echo "check-test-counts: '$name' ran Catch2 cases outside scripts/catch-run.sh" >&2
    bad=1
  else
    # Not a Catch2 run: a fixture (packing the test apps) or a script check.
    printf '%-48s %8s %8s\n' "$name" - "(no cases)"
  fi
done <<<"$records"

if [ $complete = 1 ]; then
  # (Catch2 2.x exits with the number of cases it lists.)
  listed=$({ "$build/spore-unit-tests" --list-test-names-only || true; } | grep -c .)
  printf '%-48s %8s %8s\n' "unit (one ctest entry per case)" "$listed" "$unit_entries"
  if [ "$listed" != "$unit_entries" ]; then
    echo "check-test-counts: spore-unit-tests lists $listed cases but $unit_entries unit entries passed" >&2
    bad=1
  fi
fi
echo "check-test-counts: $entries ctest entries passed; Catch2 cases that ran: $((unit_cases + group_cases)) ($unit_cases unit entries, $group_cases in groups)"
[ $bad = 0 ] || { echo "check-test-counts: FAILED: a passed entry did not run what it declares" >&2; exit 1; }
