#!/usr/bin/env bash
# Builds and runs every cargo-fuzz target in fuzz/ for a bounded time, and prints one table:
# target, executions, exec/s, time, new coverage units, result.
#
#   scripts/fuzz.sh                    short mode (CI): FUZZ_SECONDS (default 15) s per target
#   scripts/fuzz.sh --seconds 60       short mode, 60 s per target
#   scripts/fuzz.sh --long             long mode (local): until 10 000 000 executions per target
#                                      (FUZZ_RUNS overrides the count)
#   scripts/fuzz.sh [--long] T1 T2 ... only the named targets (see `cargo fuzz list` in fuzz/)
#
# A crash, a timeout (one input running > 10 s), or running out of memory (> 2048 MB RSS)
# fails the script (exit 1) after every target has run: the offending input is COPIED into
# fuzz/regressions/<target>/ (commit it: tests/fuzz_regressions.rs then replays it under
# `cargo test` until the bug is fixed, and forever after) and printed in hex. A target that
# fails to build also fails the script.
#
# How it runs:
# - cargo-fuzz is installed from crates.io when missing (`cargo install cargo-fuzz --version
#   0.13.2 --locked`, ~2 min). It runs on the STABLE toolchain with `-s none` (no sanitizer:
#   the sanitizers need nightly's -Zsanitizer); cargo-fuzz passes only stable -C flags then
#   (sancov passes, -Cllvm-args), so no RUSTC_BOOTSTRAP is needed. Rust code is memory-safe
#   without ASan; what the targets hunt for is panics, failed property assertions, overflow
#   (built with `-a`: debug assertions and overflow checks on), hangs and memory blow-ups.
# - Each target reads its seed corpus fuzz/corpus/<target>/ (real samples, committed) and
#   fuzz/regressions/<target>/ (past crashers) read-only; the inputs libFuzzer finds go to a
#   scratch corpus under the target dir, so the committed corpus never grows by itself.
# - Build output goes to FUZZ_TARGET_DIR (default: fuzz/target, cargo-fuzz's own), under
#   <dir>/x86_64-unknown-linux-gnu/release; the scratch corpora and logs under <dir>/fuzz-work.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

mode=short
seconds=${FUZZ_SECONDS:-15}
runs=${FUZZ_RUNS:-10000000}
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --long) mode=long ;;
    --short) mode=short ;;
    --seconds) seconds=$2; shift ;;
    --seconds=*) seconds=${1#*=} ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) only+=("$1") ;;
  esac
  shift
done
case "$seconds$runs" in *[!0-9]*) echo "--seconds and FUZZ_RUNS take whole numbers" >&2; exit 2 ;; esac

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
echo "== $(cargo fuzz --version), $(rustc --version)"

target_dir=${FUZZ_TARGET_DIR:-$root/fuzz/target}
# -s none: runs on stable; -a: debug assertions + overflow checks. Same flags for build and
# run, so `cargo fuzz run` finds the build up to date.
flags=(-s none -a --target-dir "$target_dir")

mapfile -t all < <(cd fuzz && cargo fuzz list)
if [ ${#only[@]} -gt 0 ]; then
  for t in "${only[@]}"; do
    printf '%s\n' "${all[@]}" | grep -qx -- "$t" || { echo "no fuzz target $t (have: ${all[*]})" >&2; exit 2; }
  done
  targets=("${only[@]}")
else
  targets=("${all[@]}")
fi

echo "== building the fuzz targets into $target_dir"
build_start=$(date +%s)
(cd fuzz && cargo fuzz build "${flags[@]}")
echo "built in $(( $(date +%s) - build_start ))s"

if [ "$mode" = long ]; then
  limit=(-runs="$runs")
  echo "== long mode: $runs executions per target"
else
  limit=(-max_total_time="$seconds")
  echo "== short mode: ${seconds}s per target"
fi

work=$target_dir/fuzz-work
rows=()
failed=0
for t in "${targets[@]}"; do
  scratch=$work/corpus/$t
  artifacts=$work/artifacts/$t
  log=$work/logs/$t.log
  rm -rf "$artifacts"
  mkdir -p "$scratch" "$artifacts" "$(dirname "$log")" "fuzz/regressions/$t"
  [ -d "fuzz/corpus/$t" ] || { echo "fuzz/corpus/$t is missing" >&2; exit 1; }
  echo "== $t"
  start=$(date +%s.%N)
  set +e
  (cd fuzz && cargo fuzz run "${flags[@]}" "$t" "$scratch" "corpus/$t" "regressions/$t" -- \
    "${limit[@]}" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts/") >"$log" 2>&1
  rc=$?
  set -e
  wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  execs=$({ grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" || true; } | tail -1 | awk '{print $2}')
  speed=$({ grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" || true; } | tail -1 | awk '{print $2}')
  new=$({ grep -oE 'stat::new_units_added: *[0-9]+' "$log" || true; } | tail -1 | awk '{print $2}')
  if [ "$rc" -eq 0 ]; then
    result=ok
  else
    failed=1
    found=0
    for a in "$artifacts"/crash-* "$artifacts"/timeout-* "$artifacts"/oom-* "$artifacts"/leak-*; do
      [ -f "$a" ] || continue
      found=1
      cp "$a" "fuzz/regressions/$t/"
      echo "!! $t: $(basename "$a") saved as fuzz/regressions/$t/$(basename "$a") ($(wc -c <"$a") bytes):"
      { od -An -v -tx1 "$a" || true; } | head -c 4096 || true
      echo
    done
    grep -A1 -E 'panicked at|^==[0-9]+== ERROR|^SUMMARY|ERROR: libFuzzer' "$log" | head -5 || true
    if [ "$found" -eq 1 ]; then
      result="FAIL: $(basename "$(ls "$artifacts" | head -1)") -> fuzz/regressions/$t/"
    else
      result="FAIL (exit $rc, no input saved; log: $log)"
      tail -20 "$log"
    fi
  fi
  rows+=("$(printf '%-20s %12s %9s %8s %6s  %s' "$t" "${execs:--}" "${speed:--}" "${wall}s" "${new:--}" "$result")")
done

echo
echo "fuzz summary ($mode mode$([ "$mode" = short ] && echo ", ${seconds}s per target"); $(nproc) cores):"
printf '%-20s %12s %9s %8s %6s  %s\n' target executions exec/s time new result
for r in "${rows[@]}"; do echo "$r"; done
if [ "$failed" -ne 0 ]; then
  echo "fuzzing FAILED: commit the new files under fuzz/regressions/ with the fix" >&2
  exit 1
fi
