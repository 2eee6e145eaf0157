#!/usr/bin/env bash
# Builds and runs the libFuzzer targets in fuzz/ (doc/security.md, "Fuzzing").
set -euo pipefail
# One brace group, parsed whole before it runs: editing this file (or a
# checkout replacing it) cannot derail a run in progress.
{
. "$(dirname "$0")/lib.sh"
cd "$SPORE_ROOT"

usage() {
  cat <<'EOF'
usage: scripts/fuzz.sh [OPTIONS] [TARGET...]

Builds the checked tree (clang, ASan+UBSan, libFuzzer; out/build/fuzz),
writes each target's seeds, runs its committed regression inputs
(fuzz/regressions/TARGET/) and the seeds, then fuzzes it. Without TARGETs,
every target in fuzz/, one after another. A crash, sanitizer report or
failed check stops that target: the input is saved under
out/fuzz/artifacts/TARGET/ and the script exits 1 after the others ran.

  --seconds N     fuzz each target for N seconds (default 60)
  --runs N        fuzz each target for N executions instead (with
                  --seconds too: whichever comes first)
  --regression    only run the regression inputs and the seeds, no fuzzing
  --build-only    configure and build the checked tree (and the unit
                  tests in it), then exit
  --no-build      use the tree as it is (it must have been built)
  --fast          use a libFuzzer-only build without sanitizers
                  (out/build/fuzz-fast): several times faster, for long
                  runs; findings are then reproduced in the checked tree
  --corpus DIR    keep each target's corpus in DIR/TARGET (default
                  out/fuzz/corpus); it grows across runs
  --list          print the targets and exit
  -h, --help      show this help

Env: SPORE_FUZZ_ARGS adds libFuzzer flags (e.g. "-jobs=2 -workers=2").
Prints one line per target that scripts/test.sh keeps:
  fuzz: TARGET: N runs in S s, cov C, ft F, corpus K inputs: passed|FAILED
EOF
}

seconds="" runs="" regression=0 build=1 build_only=0 fast=0 corpus_root=$SPORE_OUT/fuzz/corpus
targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=${2:?}; shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --regression) regression=1; shift ;;
    --build-only) build_only=1; shift ;;
    --no-build) build=0; shift ;;
    --fast) fast=1; shift ;;
    --corpus) corpus_root=${2:?}; shift 2 ;;
    --list) for f in fuzz/*.cc; do basename "$f" .cc; done; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ -z "$seconds" ] || [[ $seconds =~ ^[0-9]+$ ]] || spore_die "--seconds wants a number"
[ -n "$seconds$runs" ] || seconds=60
[ -z "$runs" ] || [[ $runs =~ ^[0-9]+$ ]] || spore_die "--runs wants a number"
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/*.cc; do targets+=("$(basename "$f" .cc)"); done
fi
for t in "${targets[@]}"; do
  [ -f "fuzz/$t.cc" ] || spore_die "no fuzz target '$t' (scripts/fuzz.sh --list)"
done

if [ $fast = 1 ]; then
  tree=$SPORE_OUT/build/fuzz-fast
  sanitize=OFF
else
  tree=$SPORE_OUT/build/fuzz
  sanitize=ON
fi

if [ $build = 1 ]; then
  for tool in clang clang++ cmake ninja; do
    command -v "$tool" >/dev/null || spore_die "'$tool' is missing: run scripts/setup.sh first"
  done
  werror=ON
  [ "${SPORE_WERROR:-1}" = 0 ] && werror=OFF
  if [ ! -f "$tree/build.ninja" ]; then
    launcher=()
    if command -v ccache >/dev/null; then
      launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    fi
    CC=clang CXX=clang++ cmake -S . -B "$tree" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DSPORE_FUZZ=ON -DSPORE_SANITIZE=$sanitize -DSPORE_WERROR=$werror \
      -DSPORE_DEV_CACHE="$SPORE_DEV_CACHE" -DSPORE_OUT="$SPORE_OUT" "${launcher[@]}" >/dev/null
  fi
  what=(spore-fuzz-targets)
  [ $fast = 1 ] || what+=(spore-unit-tests)
  spore_log "building $tree (${what[*]})"
  cmake --build "$tree" -j "$(nproc)" --target "${what[@]}"
fi
[ $build_only = 1 ] && exit 0

# Parsers that read files get a private scratch directory, removed here
# even when a target crashes.
scratch_base=/dev/shm
[ -d "$scratch_base" ] && [ -w "$scratch_base" ] || scratch_base=${TMPDIR:-/tmp}
scratch=$(mktemp -d "$scratch_base/spore-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export SPORE_FUZZ_SCRATCH=$scratch
# Reports abort (UBSan included); leaks are findings too.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# "#1234 DONE cov: 56 ft: 78 corp: 9/10b ..." -> the figures.
stat_of() {  # log, key
  sed -n "s/.* $2: \([0-9]*\).*/\1/p" "$1" | tail -n 1
}

rc=0
for t in "${targets[@]}"; do
  bin=$tree/fuzz/fuzz_$t
  [ -x "$bin" ] || spore_die "$bin is missing: run scripts/fuzz.sh --build-only$([ $fast = 1 ] && echo ' --fast')"
  seeds=$SPORE_OUT/fuzz/seeds/$t
  artifacts=$SPORE_OUT/fuzz/artifacts/$t
  rm -rf "$seeds"
  mkdir -p "$seeds" "$artifacts"
  "$bin" --write-seeds "$seeds" >/dev/null || { echo "fuzz: $t: writing seeds failed" >&2; rc=1; continue; }
  dirs=("$seeds")
  [ -d "fuzz/regressions/$t" ] && dirs+=("fuzz/regressions/$t")
  log=$scratch/$t.log
  common=(-timeout=25 -rss_limit_mb=3072 -artifact_prefix="$artifacts/" -print_final_stats=1)

  # Every committed input (and seed) first, exactly as stored.
  if ! "$bin" "${common[@]}" -runs=0 "${dirs[@]}" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz: $t: a regression input or seed fails (inputs in ${dirs[*]}; log above)" >&2
    echo "fuzz: $t: 0 runs in 0 s, cov -, ft -, corpus - inputs: FAILED"
    rc=1
    continue
  fi
  if [ $regression = 1 ]; then
    echo "fuzz: $t: $(find "${dirs[@]}" -type f | wc -l) regression inputs and seeds: passed"
    continue
  fi

  corpus=$corpus_root/$t
  mkdir -p "$corpus"
  limit=()
  [ -n "$seconds" ] && limit+=(-max_total_time="$seconds")
  [ -n "$runs" ] && limit+=(-runs="$runs")
  start=$(date +%s)
  # shellcheck disable=SC2086
  if "$bin" "${common[@]}" "${limit[@]}" ${SPORE_FUZZ_ARGS:-} "$corpus" "${dirs[@]}" >"$log" 2>&1; then
    verdict=passed
  else
    verdict=FAILED
    rc=1
    tail -n 60 "$log" >&2
    echo "fuzz: $t: finding saved in $artifacts/ (reproduce: $bin $artifacts/<file>)" >&2
  fi
  secs=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  echo "fuzz: $t: ${execs:-?} runs in $secs s, cov $(stat_of "$log" cov), ft $(stat_of "$log" ft)," \
    "corpus $(find "$corpus" -type f | wc -l) inputs: $verdict"
done
exit $rc
}
