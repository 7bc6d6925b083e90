#!/usr/bin/env bash
# Runs every criterion benchmark and prints ONE table of figures and side-by-side ratios.
#
#   scripts/bench-report.sh            full mode: criterion's own sample sizes and times
#   scripts/bench-report.sh --quick    CI mode: criterion --quick (each bench stops as soon as
#                                      two doublings agree within 5%, at most its measurement
#                                      time); figures are rough; ~30 s after the build. The
#                                      1M-volume attachment config stays in: it costs ~5 s
#
# Benches: root crate  inflight, rds (10k-disk parse; 32 prints over one reused SSH
#          connection vs one connection per command), attachment (sharded vs global lock,
#          10k and 1M volumes, 1 and 2 threads, with p99);
#          node-io     holders (sequential / io_uring / parallel scan vs fuser vs lsof),
#                      parsing (device path, uevent, mountinfo).
# fuser and lsof come from apt (psmisc, lsof: scripts/setup-test-host.sh installs them); the
# holder bench skips them, and so does the table, when they are missing or not root.
#
# Figures are read from criterion's `new/estimates.json` (mean of the time per iteration)
# under a fresh CRITERION_HOME, never scraped from its text. The attachment bench's p99 is
# not a criterion statistic: it is taken from the summary line the bench prints itself.
# The machine's core count and load average are printed first: the figures mean little
# without them. A bench that fails to build or run fails the script (exit 1).
#
# Output: BENCH_TARGET_DIR (default: $CARGO_TARGET_DIR, else target/); the raw logs and
# criterion's files stay in $BENCH_OUT (default: <target dir>/bench-report).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $a (see --help)" >&2; exit 2 ;;
  esac
done

export CARGO_TARGET_DIR=${BENCH_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}}
out=${BENCH_OUT:-$CARGO_TARGET_DIR/bench-report}
rm -rf "$out"
mkdir -p "$out"
export CRITERION_HOME=$out/criterion

cores=$(nproc)
load=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
echo "== bench report: $cores cores, load average $load at start ($started)"

crit=(--noplot)
[ "$quick" -eq 1 ] && crit+=(--quick)

names=(inflight rds attachment holders parsing)
echo "== building benches: ${names[*]}"
t0=$(date +%s)
# Only the bench targets (plus the binaries cargo builds for them): `--benches` would also
# build every library's unit-test harness and every binary in release mode.
# --no-default-features: no bench touches the kube-rs adapters (a large share of the build).
if ! cargo bench --workspace --no-default-features $(printf -- '--bench %s ' "${names[@]}") --no-run >"$out/build.log" 2>&1; then
  tail -40 "$out/build.log"
  echo "bench build FAILED" >&2
  exit 1
fi
echo "   built in $(( $(date +%s) - t0 ))s"

# Each bench run with the same flags: the same feature resolution as the build above, so
# running a bench never rebuilds its dependencies (`-p node-io` would).
failed=()
for name in "${names[@]}"; do
  echo "== $name"
  t0=$(date +%s)
  if cargo bench --workspace --no-default-features --bench "$name" -- "${crit[@]}" >"$out/$name.log" 2>&1; then
    echo "   ran in $(( $(date +%s) - t0 ))s"
  else
    echo "   FAILED after $(( $(date +%s) - t0 ))s; last lines of $out/$name.log:"
    tail -25 "$out/$name.log" | sed 's/^/   | /'
    failed+=("$name")
  fi
done

python3 - "$out" "$cores" "$load" "$quick" "${failed[@]}" <<'PY'
import json, os, re, sys

out, cores, load, quick, failed = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5:]
home = os.path.join(out, "criterion")

means = {}  # full_id -> mean ns per iteration
for d, _, files in os.walk(home):
    if os.path.basename(d) == "new" and "estimates.json" in files and "benchmark.json" in files:
        with open(os.path.join(d, "benchmark.json")) as f:
            full_id = json.load(f)["full_id"]
        with open(os.path.join(d, "estimates.json")) as f:
            means[full_id] = json.load(f)["mean"]["point_estimate"]

# p99 per (kind, volumes, threads) from the attachment bench's own summary lines:
#   "  sharded   10000 volumes 1t:    1234567 ops/s  p50 450 ns  p99 900 ns  p99.9 2000 ns"
p99 = {}
att_log = os.path.join(out, "attachment.log")
if os.path.exists(att_log):
    pat = re.compile(r"^\s*(sharded|global)\s+(\d+) volumes (\d+)t:.*\bp99 (\d+) ns")
    for line in open(att_log, errors="replace"):
        m = pat.match(line)
        if m:
            p99[(m[1], int(m[2]), int(m[3]))] = int(m[4])

def fmt_time(ns):
    if ns is None:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"

rows = []  # (section, figure, mean, p99, ratio text)
used = set()

def fig(section, full_id, label=None, p=None, note=""):
    used.add(full_id)
    rows.append((section, label or full_id, fmt_time(means.get(full_id)), p or "", note))

def ratio(a, b):
    """How many times longer a takes than b."""
    if a in means and b in means and means[b] > 0:
        return means[a] / means[b]
    return None

# inflight
fig("inflight", "inflight/acquire_release_uncontended")
r = ratio("inflight/acquire_release_with_second_thread", "inflight/acquire_release_uncontended")
fig("inflight", "inflight/acquire_release_with_second_thread",
    note=f"{r:.2f}x the uncontended time" if r else "")

# rds
fig("rds", "parse/10000_disk_listing")
fig("rds", "print_x32/one_reused_connection")
r = ratio("print_x32/new_connection_per_command", "print_x32/one_reused_connection")
fig("rds", "print_x32/new_connection_per_command",
    note=f"per-command SSH is {r:.1f}x slower than one reused connection" if r else "")

# attachment: mean per iteration (= one unpublish + one publish), bench's own p99 per call
for volumes in (10_000, 1_000_000):
    for threads in (1, 2):
        ids = {k: f"attachment/{volumes}_volumes/{k}/{threads}t" for k in ("sharded", "global")}
        for k in ("sharded", "global"):
            note = ""
            if k == "global":
                r = ratio(ids["global"], ids["sharded"])
                note = f"sharded is {r:.2f}x the global lock's throughput" if r else ""
            pv = p99.get((k, volumes, threads))
            fig("attachment", ids[k], p=f"{pv} ns" if pv is not None else "-", note=note)

# holders: every form against the sequential scan and against the fastest node-io form
forms = [f"holder_scan/{f}" for f in ("sequential", "io_uring", "parallel")]
have = [f for f in forms if f in means]
best = min(have, key=lambda f: means[f]) if have else None
for f in forms + ["holder_scan/fuser", "holder_scan/lsof"]:
    if f not in means and f.endswith(("fuser", "lsof")):
        rows.append(("holders", f, "skipped", "", "tool missing or no loop device (not root)"))
        continue
    r = ratio(f, "holder_scan/sequential")
    note = f"{r:.2f}x sequential" if r else ""
    if best and f != best and f in means:
        note += f"; {means[f] / means[best]:.1f}x the fastest form ({best.split('/')[1]})"
    elif f == best:
        note += "; fastest node-io form"
    fig("holders", f, note=note.lstrip("; "))

# node-io parsing
for f in ("parsing/device_path", "parsing/uevent", "parsing/mountinfo_200_lines"):
    fig("parsing", f)

# Anything criterion measured that the layout above does not name still gets a row.
for f in sorted(set(means) - used):
    fig("other", f)

mode = "quick (criterion --quick)" if quick else "full"
print()
print(f"bench report: {mode}; {cores} cores; load average at start {load}")
w = max(len(r[1]) for r in rows)
print(f"{'bench':<11} {'figure':<{w}} {'mean':>10} {'p99/call':>9}  ratio")
for section, label, mean, p, note in rows:
    print(f"{section:<11} {label:<{w}} {mean:>10} {p:>9}  {note}")
print("mean = criterion's mean time per iteration (attachment: one unpublish + one publish;")
print("print_x32: 32 concurrent prints); p99/call = the attachment bench's own per-call p99.")
missing = [r[1] for r in rows if r[2] == "-"]
if failed:
    print(f"FAILED benches: {', '.join(failed)}")
if missing:
    print(f"no figure for: {', '.join(missing)}")
sys.exit(1 if failed or missing else 0)
PY
