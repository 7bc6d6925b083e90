#!/usr/bin/env bash
# Runs every criterion benchmark and prints ONE table of figures and side-by-side ratios.
#
#   scripts/bench-report.sh            full mode: criterion's own sample sizes and times
#   scripts/bench-report.sh --quick    CI mode: criterion --quick (each bench stops as soon as
#                                      two doublings agree within 5%, at most its measurement
#                                      time); figures are rough. Measured 2026-11-30 at load
#                                      15-17: 237 s after the (cached) build, 176 s of it the
#                                      holder scan (lsof, interleaved and busy rounds); rds 16 s,
#                                      attachment 18 s (1M volumes included), device_wait 12 s
#
# Benches: root crate  inflight, rds (10k-disk parse, old parser beside it; a 10k-disk listing
#          in 100-entry pages; 32 prints and 32 creates over one reused SSH connection vs
#          one connection per command), attachment (sharded vs global lock, 10k and 1M
#          volumes, 1 and 2 threads, a mix with conflicts and migrations, with p99);
#          node-io     holders (auto / sequential / io_uring / parallel scan vs fuser vs
#                      lsof), device_wait (100 volumes attaching beside 100 present),
#                      parsing (device path, uevent, mountinfo).
#
# The report opens with issue 19's goals: each figure measured in this run, its baseline
# (the former code measured in the same run where the tree still has it, else the issue's
# figure), the goal, the ratio, and met / NOT met.
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

names=(inflight rds attachment holders device_wait parsing)
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

# ---- issue 19's goals: figure, baseline, goal, ratio, met ----
def mean(k):
    return means.get(k)

att = {}  # (kind, volumes, threads) -> (ops/s wall, ops per CPU-second)
if os.path.exists(att_log):
    pat = re.compile(r"^\s*(sharded|global)\s+(\d+) volumes (\d+)t:\s+(\d+) ops/s.*?(\d+) ops per CPU-second")
    for line in open(att_log, errors="replace"):
        m = pat.match(line)
        if m:
            att[(m[1], int(m[2]), int(m[3]))] = (float(m[4]), float(m[5]))
dw = {}  # mode -> dict of the device_wait summary
dw_log = os.path.join(out, "device_wait.log")
if os.path.exists(dw_log):
    for line in open(dw_log, errors="replace"):
        if line.startswith("device_wait summary:"):
            kv = dict(x.split("=", 1) for x in line.split()[2:] if "=" in x)
            dw[kv.get("mode")] = kv

goals = []  # (goal, baseline, now, target, ratio, met)
def goal(name, baseline, now, target, ratio, met):
    goals.append((name, baseline, now, target, ratio, "-" if met is None else ("met" if met else "NOT met")))

p_new, p_old = mean("parse/10000_disk_listing"), mean("parse/10000_disk_listing_old_parser")
goal("parse 10,000-disk /disk print detail",
     f"{fmt_time(p_old)} (old parser)", fmt_time(p_new), "< 20 ms",
     f"{p_new / 20e6:.2f}x goal; {p_old / p_new:.1f}x faster" if p_new and p_old else "-",
     p_new < 20e6 if p_new else None)
lp = mean("list_pages/10000_disks_in_100_entry_pages")
goal("ListVolumes 10,000 disks, 100-entry pages",
     f"{fmt_time(100 * p_new) if p_new else '-'} (100 parses, computed)", fmt_time(lp),
     "about one parse (<= 1.5x)",
     f"{lp / p_new:.2f}x one parse" if lp and p_new else "-",
     lp <= 1.5 * p_new if lp and p_new else None)
for tool, target in (("fuser", 0.5), ("lsof", 0.15)):
    a, sq, t = mean("holder_scan/auto"), mean("holder_scan/sequential"), mean(f"holder_scan/{tool}")
    goal(f"holder scan (default) vs {tool}",
         f"{sq / t:.3f}x (sequential)" if sq and t else "-",
         f"{a / t:.3f}x" if a and t else "skipped" if not t else "-",
         f"<= {target}x", f"{a / t / target:.2f}x goal" if a and t else "-",
         a / t <= target if a and t else None)
ix, fr = mean("device_wait/attach_100/indexed"), mean("device_wait/attach_100/full_rescan")
p99i = dw.get("indexed", {}).get("p99_us")
goal("device ready, 100 attaching beside 100 (worst of a burst)",
     f"{fmt_time(fr)} (full rescan)", fmt_time(ix) + (f" (p99 {p99i} µs)" if p99i else ""),
     "<= uevent + 5 ms", f"{ix / 5e6:.2f}x goal; {fr / ix:.1f}x faster" if ix and fr else "-",
     ix <= 5e6 if ix else None)
for volumes, target in ((10_000, 5e6), (1_000_000, 3e6)):
    s_, g_ = att.get(("sharded", volumes, 2)), att.get(("global", volumes, 2))
    if s_:
        wall, cpu = s_
        met = wall >= target
        two_cores = 2 * cpu  # both threads with a core each: ops per CPU-second x 2
        att_ratio = f"{wall / target:.2f}x goal (wall); {two_cores / target:.2f}x on 2 idle cores (CPU time)"
    else:
        met, att_ratio, wall = None, "-", None
    goal(f"attachment table, {volumes:,} volumes, 2 threads, mixed",
         f"{g_[0] / 1e6:.2f} M/s (global lock)" if g_ else "-",
         f"{wall / 1e6:.2f} M/s" if wall else "-", f">= {target / 1e6:.0f} M ops/s", att_ratio, met)
cr, cn = mean("create_x32/one_reused_connection"), mean("create_x32/new_connection_per_command")
goal("CreateVolume throughput, reused SSH vs connection per command",
     "1.55-2.2x (issue; two look-ups)", f"{cn / cr:.1f}x" if cr and cn else "-", ">= 5x",
     f"{cn / cr / 5:.2f}x goal" if cr and cn else "-", cn / cr >= 5 if cr and cn else None)

# inflight
fig("inflight", "inflight/acquire_release_uncontended")
r = ratio("inflight/acquire_release_with_second_thread", "inflight/acquire_release_uncontended")
fig("inflight", "inflight/acquire_release_with_second_thread",
    note=f"{r:.2f}x the uncontended time" if r else "")

# rds
fig("rds", "parse/10000_disk_listing")
r = ratio("parse/10000_disk_listing_old_parser", "parse/10000_disk_listing")
fig("rds", "parse/10000_disk_listing_owned_items")
fig("rds", "parse/10000_disk_listing_old_parser", note=f"{r:.1f}x today's parser" if r else "")
r = ratio("list_pages/10000_disks_in_100_entry_pages", "parse/10000_disk_listing")
fig("rds", "list_pages/10000_disks_in_100_entry_pages", note=f"{r:.2f}x one parse" if r else "")
for group in ("print_x32", "create_x32"):
    fig("rds", f"{group}/one_reused_connection")
    r = ratio(f"{group}/new_connection_per_command", f"{group}/one_reused_connection")
    fig("rds", f"{group}/new_connection_per_command",
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
forms = [f"holder_scan/{f}" for f in ("auto", "sequential", "io_uring", "parallel")]
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

# node-io device wait
for f in ("device_wait/attach_100/indexed", "device_wait/attach_100/full_rescan",
          "device_wait/check/full_scan", "device_wait/check/hinted"):
    kv = dw.get(f.rsplit("/", 1)[1], {})
    note = f"p50 {kv['p50_us']} µs, p99 {kv['p99_us']} µs, max {kv['max_us']} µs over {kv.get('volumes')} volumes" if kv else ""
    if "burst_cpu_us" in kv:
        note += f"; {kv['burst_cpu_us']} µs of CPU per burst (median, every core)"
    fig("device_wait", f, note=note)

# node-io parsing
for f in ("parsing/device_path", "parsing/uevent", "parsing/mountinfo_200_lines"):
    fig("parsing", f)

# Anything criterion measured that the layout above does not name still gets a row.
for f in sorted(set(means) - used):
    fig("other", f)

mode = "quick (criterion --quick)" if quick else "full"
print()
print(f"bench report: {mode}; {cores} cores; load average at start {load}, at end {open('/proc/loadavg').read().split()[0]}")
print()
print("issue 19 goals (baseline: the former code in this run, or the issue's figure):")
cols = list(zip(*goals)) if goals else []
hdr = ("goal", "baseline", "now", "target", "ratio", "met?")
ws = [max(len(hdr[i]), *(len(str(x)) for x in cols[i])) for i in range(5)] if goals else []
if goals:
    print("  ".join(h.ljust(w) for h, w in zip(hdr[:5], ws)) + "  " + hdr[5])
    for g in goals:
        print("  ".join(str(x).ljust(w) for x, w in zip(g[:5], ws)) + "  " + g[5])
print()
w = max(len(r[1]) for r in rows)
print(f"{'bench':<11} {'figure':<{w}} {'mean':>10} {'p99/call':>9}  ratio")
for section, label, mean, p, note in rows:
    print(f"{section:<11} {label:<{w}} {mean:>10} {p:>9}  {note}")
print("mean = criterion's mean time per iteration (attachment: one unpublish + one publish;")
print("print_x32/create_x32: 32 concurrent prints/creates; device_wait/attach_100: the worst")
print("latency of a burst of 100); p99/call = the attachment bench's own per-call p99.")
missing = [r[1] for r in rows if r[2] == "-"]
if failed:
    print(f"FAILED benches: {', '.join(failed)}")
if missing:
    print(f"no figure for: {', '.join(missing)}")
sys.exit(1 if failed or missing else 0)
PY
