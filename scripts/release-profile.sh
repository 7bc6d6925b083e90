#!/usr/bin/env bash
# Measures release-profile settings side by side (issue 19.7): for each variant, the time to
# build the `rds-csi` binary, its size (as built, and stripped as the image ships it), and the
# CPU-bound benches a profile can change: the 10,000-disk RouterOS parse, the attachment table
# at 10,000 volumes on 1 and 2 threads, and node-io's parsers. The syscall-bound benches
# (holder scan, device wait) and the SSH ones (create, print) measure the kernel and the
# network, not code generation, and are left out.
#
#   scripts/release-profile.sh                 every variant below
#   scripts/release-profile.sh base fat-cgu1   only those
#
# Variants (Cargo.toml's [profile.release] overridden through CARGO_PROFILE_* variables):
#   base        the manifest's profile
#   thin-cgu1   lto = "thin", codegen-units = 1
#   fat-cgu1    lto = "fat",  codegen-units = 1
#   fat-abort   lto = "fat",  codegen-units = 1, panic = "abort" (binary size only: cargo
#               ignores `panic` for benches)
#
# Each variant builds into its own target dir under $PROFILE_TARGET_ROOT (default
# target/release-profile), so a run costs one full release build per variant (~5-10 min
# each on 2 cores). Figures: criterion's mean per iteration (estimates.json), --quick.
set -euo pipefail
cd "$(dirname "$0")/.."

root=${PROFILE_TARGET_ROOT:-$PWD/target/release-profile}
variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=(base thin-cgu1 fat-cgu1 fat-abort)
mkdir -p "$root"
echo "== release profile: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start ($(date -u +%FT%TZ))"

settings() {
  case "$1" in
    base) ;;
    thin-cgu1) echo "LTO=thin CODEGEN_UNITS=1" ;;
    fat-cgu1) echo "LTO=fat CODEGEN_UNITS=1" ;;
    fat-abort) echo "LTO=fat CODEGEN_UNITS=1 PANIC=abort" ;;
    *) echo "unknown variant $1" >&2; exit 2 ;;
  esac
}

mean_ns() { # criterion dir of one bench -> mean ns
  python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["mean"]["point_estimate"])' "$1/new/estimates.json" 2>/dev/null || echo "-"
}

rows=()
for v in "${variants[@]}"; do
  env_vars=()
  for kv in $(settings "$v"); do
    env_vars+=("CARGO_PROFILE_RELEASE_$kv" "CARGO_PROFILE_BENCH_$kv")
  done
  dir=$root/$v
  echo "== $v: ${env_vars[*]:-manifest profile}"
  t0=$(date +%s)
  env "${env_vars[@]}" CARGO_TARGET_DIR="$dir" cargo build -q --release --bin rds-csi
  build_s=$(( $(date +%s) - t0 ))
  bin=$dir/release/rds-csi
  size=$(stat -c %s "$bin")
  strip -o "$dir/rds-csi.stripped" "$bin"
  stripped=$(stat -c %s "$dir/rds-csi.stripped")
  parse=- att1=- att2=- dpath=- mi=-
  if [ "$v" != fat-abort ]; then
    crit=$dir/criterion
    rm -rf "$crit"
    run() { env "${env_vars[@]}" CARGO_TARGET_DIR="$dir" CRITERION_HOME="$crit" \
      cargo bench -q --workspace --no-default-features "$@" >>"$dir/bench.log" 2>&1; }
    run --bench rds -- --noplot --quick '^parse/10000_disk_listing$'
    run --bench attachment -- --noplot --quick 'attachment/10000_volumes/sharded'
    run --bench parsing -- --noplot --quick
    parse=$(mean_ns "$crit/parse/10000_disk_listing")
    att1=$(mean_ns "$crit/attachment_10000_volumes/sharded/1t")
    att2=$(mean_ns "$crit/attachment_10000_volumes/sharded/2t")
    dpath=$(mean_ns "$crit/parsing/device_path")
    mi=$(mean_ns "$crit/parsing/mountinfo_200_lines")
  fi
  rows+=("$v $build_s $size $stripped $parse $att1 $att2 $dpath $mi")
  echo "   $v: built in ${build_s}s, ${size} bytes (${stripped} stripped); parse $parse ns," \
    "attachment $att1 / $att2 ns, device path $dpath ns, mountinfo $mi ns"
done

echo
printf '%-10s %8s %12s %12s %14s %14s %14s %12s %14s\n' variant build_s size_B stripped_B \
  parse10k_ns att10k_1t_ns att10k_2t_ns devpath_ns mountinfo_ns
for r in "${rows[@]}"; do
  # shellcheck disable=SC2086
  printf '%-10s %8s %12s %12s %14s %14s %14s %12s %14s\n' $r
done
echo "(attachment figures: ns per iteration of two calls; lower is better everywhere)"
