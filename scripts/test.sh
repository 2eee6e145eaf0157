#!/usr/bin/env bash
# Runs every test: installs what is missing, builds, then ctest runs the unit
# tests natively and the integration tests on real KVM (inside the arm64
# testbed on x86_64 hosts). Extra arguments go to ctest, e.g. -R unit or -L integration.
# Afterwards scripts/check-test-counts.sh proves from ctest's log that every
# entry that passed ran the Catch2 cases it declares.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$SPORE_ROOT"

scripts/setup.sh
scripts/build.sh
spore_log "running tests (unit tests natively, integration tests in the testbed)"
rc=0
ctest --test-dir "$SPORE_OUT/build/host" --output-on-failure -j "$(nproc)" "$@" || rc=$?
# Every entry that passed must have run the cases it declares; with no
# filter, the unit entries must also cover every unit case.
complete=()
[ $# -gt 0 ] || complete=(--complete)
scripts/check-test-counts.sh "${complete[@]}" "$SPORE_OUT/build/host" || rc=1
exit $rc
