#!/usr/bin/env bash
# Runs every test: installs what is missing, builds, then ctest runs the unit
# tests natively and the integration tests on real KVM (inside the arm64
# testbed on x86_64 hosts). Extra arguments go to ctest, e.g. -R unit or -L integration.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$SPORE_ROOT"

scripts/setup.sh
scripts/build.sh
spore_log "running tests (unit tests natively, integration tests in the testbed)"
ctest --test-dir "$SPORE_OUT/build/host" --output-on-failure -j "$(nproc)" "$@"
