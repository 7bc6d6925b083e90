#!/usr/bin/env bash
# End-to-end test of rds-csi over REAL NVMe/TCP, in two throw-away QEMU VMs (two kernels =
# two nodes) joined by a private virtual wire.
#
#   VM A (10.99.0.1): rds-csi simulator exporting its disks through the kernel's nvmet target,
#                     rds-csi controller, rds-csi node "node-a", and the test driver
#                     (crate e2e/, binary rds-csi-e2e) talking CSI gRPC to all of them.
#   VM B (10.99.0.2): rds-csi node "node-b" (CSI on tcp://10.99.0.2:10000) + a shell agent.
#
# Scenarios (ids): a-ext4/a-xfs filesystem handoff A->B keeps data; b RWX block live
# migration with both nodes attached + migration metric; c third node refused during the
# migration; d device held open -> NodeUnstage refused naming the pid, then disconnects;
# e target port removed: a short outage keeps the device, past ctrl_loss_tmo the node's
# reconciler restores it (NodeGetVolumeStats abnormal meanwhile); f online ext4 expansion;
# g restage never reformats; h NodeStage latency (median/max); i target export removed for good
# while an ext4 volume is published with unwritten data: stats abnormal, NodeUnpublish and
# NodeUnstage OK within the kubelet's deadlines, no mount or controller left.
#
# The machine needs: root, apt-get/apt-cache/dpkg-deb (Debian's registry reachable), gzip,
# timeout, ldd, cargo (xz/zstd only if the kernel's modules are compressed; ss optional).
# Nothing is installed: Debian packages (cloud kernel, busybox-static, QEMU + libraries,
# e2fsprogs, xfsprogs) are downloaded with `apt-get download` and unpacked with
# `dpkg-deb -x` into a cache. (Never `apt-get install
# qemu-system-x86` on an image with qemu-utils from backports: it removes qemu-img.)
# rds-csi and rds-csi-e2e are built as static glibc binaries (+crt-static).
#
# Prints per-scenario PASS/FAIL, the stage latency figures and a summary; exit 0 only when
# every scenario passed; on failure the guests' logs (simulator, controller, nodes, dmesg)
# are printed.
#
# Env knobs:
#   RDS_CSI_E2E_CACHE       cache dir (default ${XDG_CACHE_HOME:-$HOME/.cache}/rds-csi-e2e)
#   RDS_CSI_E2E_TARGET_DIR  cargo target dir (default: $CARGO_TARGET_DIR, else <repo>/target)
#   RDS_CSI_E2E_SCENARIOS   comma list of a,b,c,d,e,f,g,h,i (default all)
#   RDS_CSI_E2E_STAGE_COUNT volumes for the latency scenario h (default 20)
#   RDS_CSI_E2E_KERNEL      6.1 (default, bookworm's linux-image-cloud-amd64) | 6.12
#   RDS_CSI_E2E_ACCEL       auto (default: kvm if usable and not a PVM host, else tcg) | tcg | kvm
#   RDS_CSI_E2E_TIMEOUT     seconds for the VMs (default 900)
#   RDS_CSI_E2E_MEM_A/_B    guest RAM MiB (default 1536 / 768)
#   RDS_CSI_E2E_REFRESH=1   re-resolve package versions against the apt lists
#   RDS_CSI_E2E_NO_BUILD=1  use the binaries already in the target dir
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${RDS_CSI_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rds-csi-e2e}
TARGET_DIR=${RDS_CSI_E2E_TARGET_DIR:-${CARGO_TARGET_DIR:-$REPO/target}}
SCENARIOS=${RDS_CSI_E2E_SCENARIOS:-a,b,c,d,e,f,g,h,i}
STAGE_COUNT=${RDS_CSI_E2E_STAGE_COUNT:-20}
KERNEL=${RDS_CSI_E2E_KERNEL:-6.1}
ACCEL=${RDS_CSI_E2E_ACCEL:-auto}
TMO=${RDS_CSI_E2E_TIMEOUT:-900}
MEM_A=${RDS_CSI_E2E_MEM_A:-1536}
MEM_B=${RDS_CSI_E2E_MEM_B:-768}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
since() { local d=$(( $(now_ms) - $1 )); printf '%d.%02d' $((d / 1000)) $(( (d % 1000) / 10 )); }
T_START=$(now_ms)
log() { printf '[e2e-vm %7ss] %s\n' "$(since $T_START)" "$*" >&2; }
die() { log "ERROR: $*"; echo "E2E-VM: FAIL"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (apt-get download into the cache, QEMU)"
for t in apt-get apt-cache dpkg-deb dpkg-query gzip timeout ldd cargo; do
  command -v $t >/dev/null || die "missing host tool: $t"
done
mkdir -p "$CACHE"/{debs,x,logs}
APT_OPTS=(-o APT::Sandbox::User=root -q)

# ---------------------------------------------------------------- build (static glibc)
build() {
  [ "${RDS_CSI_E2E_NO_BUILD:-0}" = 1 ] && return 0
  local t0; t0=$(now_ms)
  log "cargo build --release (static glibc) -p rds-csi -p rds-csi-e2e into $TARGET_DIR"
  ( cd "$REPO" && RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR="$TARGET_DIR" \
      cargo build -q --release --target x86_64-unknown-linux-gnu -p rds-csi -p rds-csi-e2e ) \
    || return 1
  log "build done in $(since $t0)s"
}
# The build runs while packages download (both are mostly waiting on I/O or CPU).
BUILD_LOG="$CACHE/logs/build.log"
build >"$BUILD_LOG" 2>&1 &
BUILD_PID=$!

# ---------------------------------------------------------------- package resolution
# candidates PKG...: "PKG VERSION" per package: the newest version with pin priority >= 500
# (the distribution's own suites, not backports, not whatever is installed).
candidates() {
  apt-cache policy "$@" 2>/dev/null | awk '
    function flush() { if (pkg != "") { v = (best != "") ? best : c; if (v != "" && v != "(none)") print pkg, v } }
    /^[^ ].*:$/ { flush(); pkg = substr($0, 1, length($0) - 1); sub(/:amd64$/, "", pkg); c = ""; best = ""; t = 0; next }
    /Candidate:/ { c = $2 }
    /Version table:/ { t = 1; next }
    t && best == "" && NF <= 3 && $NF ~ /^[0-9]+$/ && $NF >= 500 { best = $(NF-1) }
    END { flush() }'
}
RES="$CACHE/resolved.txt"
RESKEY="# v1 kernel=$KERNEL"
declare -A VER=(); QPKGS=(); FPKGS=(); WANT=()
if [ "${RDS_CSI_E2E_REFRESH:-0}" != 1 ] && [ -s "$RES" ] && [ "$(head -1 "$RES")" = "$RESKEY" ]; then
  while read -r role p v; do
    case "$role" in \#*) continue;; Q) QPKGS+=("$p");; F) FPKGS+=("$p");; esac
    VER[$p]=$v; WANT+=("$p")
  done < "$RES"
  KPKG=$(awk '$1 == "K" {print $2}' "$RES")
else
  T0=$(now_ms)
  if [ -z "$(candidates busybox-static)" ]; then
    log "apt lists empty: apt-get update"; apt-get update -qq >/dev/null || die "apt-get update failed"
  fi
  case "$KERNEL" in
    6.1) KMETA=linux-image-cloud-amd64;;
    6.12) KMETA=linux-image-6.12-cloud-amd64;;
    *) die "RDS_CSI_E2E_KERNEL must be 6.1 or 6.12";;
  esac
  KPKG=$(apt-cache depends "$KMETA" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$KPKG" ] || die "cannot resolve $KMETA"
  declare -A INST=()
  while read -r p st; do [ "$st" = "install ok installed" ] && INST[${p%%:*}]=1; done \
    < <(dpkg-query -W -f='${Package} ${Status}\n' 2>/dev/null)
  # deps_missing PKG...: the packages plus, recursively, their Depends not installed here.
  SKIP=" qemu-system-common ipxe-qemu libc6 libgcc-s1 debconf "
  deps_missing() {
    local -A seen=(); local level=("$@") next p
    for p in "$@"; do seen[$p]=1; done
    printf '%s\n' "$@"
    while [ ${#level[@]} -gt 0 ]; do
      next=()
      for p in $(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
                   --no-replaces --no-enhances "${level[@]}" 2>/dev/null \
                 | awk '/^ [ |]Depends: [^<]/{sub(/:.*/, "", $2); print $2}' | sort -u); do
        [ -n "${seen[$p]:-}" ] && continue; seen[$p]=1
        case "$SKIP" in *" $p "*) continue;; esac
        [ -n "${INST[$p]:-}" ] && continue
        next+=("$p"); echo "$p"
      done
      level=("${next[@]}")
    done
  }
  mapfile -t QPKGS < <(deps_missing qemu-system-x86)
  # The guest's mkfs/grow tools: their libraries are copied from the extracted packages or,
  # when installed on this machine, from the machine (ldd), so e2fsprogs/xfsprogs are always
  # fetched, their library packages only when missing here.
  mapfile -t FPKGS < <(deps_missing xfsprogs e2fsprogs)
  for p in xfsprogs e2fsprogs; do printf '%s\n' "${FPKGS[@]}" | grep -qx "$p" || FPKGS+=("$p"); done
  mapfile -t WANT < <(printf '%s\n' "$KPKG" busybox-static "${QPKGS[@]}" qemu-system-common \
                        qemu-system-data seabios "${FPKGS[@]}" | awk 'NF && !s[$0]++')
  while read -r p v; do VER[$p]=$v; done < <(candidates "${WANT[@]}")
  {
    echo "$RESKEY"
    for p in "${WANT[@]}"; do
      [ -n "${VER[$p]:-}" ] || die "no installable candidate for $p"
      role=O
      [ "$p" = "$KPKG" ] && role=K
      printf '%s\n' "${QPKGS[@]}" | grep -qx "$p" && role=Q
      printf '%s\n' "${FPKGS[@]}" | grep -qx "$p" && role=F
      echo "$role $p ${VER[$p]}"
    done
  } > "$RES.tmp" && mv "$RES.tmp" "$RES"
  log "resolved ${#WANT[@]} packages against the apt lists ($(since $T0)s)"
fi

# ---------------------------------------------------------------- download + extract
T0=$(now_ms)
cd "$CACHE/debs"
debfile() { # cached .deb of exactly PKG VERSION, or nothing
  local x; for x in "$1"_*.deb; do
    [ -e "$x" ] && [ "$(dpkg-deb -f "$x" Package)" = "$1" ] && [ "$(dpkg-deb -f "$x" Version)" = "$2" ] \
      && { echo "$x"; return 0; }
  done; return 0; }
NEED=()
for p in "${WANT[@]}"; do
  [ -f "$CACHE/x/$p/.v" ] && [ "$(cat "$CACHE/x/$p/.v")" = "${VER[$p]}" ] && continue
  [ -n "$(debfile "$p" "${VER[$p]}")" ] || NEED+=("$p=${VER[$p]}")
done
if [ ${#NEED[@]} -gt 0 ]; then
  log "apt-get download ${#NEED[@]} package(s)"
  if ! apt-get "${APT_OPTS[@]}" download "${NEED[@]}" >/dev/null 2>&1; then
    log "download failed: apt-get update and retry"
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get "${APT_OPTS[@]}" download "${NEED[@]}" || die "apt-get download failed (try RDS_CSI_E2E_REFRESH=1)"
  fi
fi
TOTAL=0
for p in "${WANT[@]}"; do
  v=${VER[$p]}; dst="$CACHE/x/$p"
  if [ ! -f "$dst/.v" ] || [ "$(cat "$dst/.v")" != "$v" ]; then
    f=$(debfile "$p" "$v"); [ -n "$f" ] || die "download of $p=$v missing"
    rm -rf "$dst"; mkdir -p "$dst"; dpkg-deb -x "$f" "$dst"; echo "$v" > "$dst/.v"; stat -c %s "$f" > "$dst/.size"
  fi
  TOTAL=$((TOTAL + $(cat "$dst/.size")))
done
log "packages ready: ${#WANT[@]} .debs, $(( TOTAL / 1024 )) KiB ($(since $T0)s)"

# ---------------------------------------------------------------- QEMU from the extracted debs
QROOT="$CACHE/qemu"
rm -rf "$QROOT"; mkdir -p "$QROOT/lib" "$QROOT/fw"
for p in "${QPKGS[@]}"; do
  for d in "$CACHE/x/$p"/usr/lib/x86_64-linux-gnu "$CACHE/x/$p"/lib/x86_64-linux-gnu; do
    [ -d "$d" ] && cp -a "$d"/. "$QROOT/lib/"
  done
done
QEMU_BIN="$CACHE/x/qemu-system-x86/usr/bin/qemu-system-x86_64"
[ -x "$QEMU_BIN" ] || die "qemu-system-x86_64 missing after extraction"
cp "$CACHE"/x/seabios/usr/share/seabios/bios-256k.bin "$QROOT/fw/"
for f in linuxboot_dma.bin kvmvapic.bin; do cp "$CACHE/x/qemu-system-data/usr/share/qemu/$f" "$QROOT/fw/"; done
export QEMU_MODULE_DIR="$CACHE/x/qemu-system-common/usr/lib/x86_64-linux-gnu/qemu"
if LD_LIBRARY_PATH="$QROOT/lib" ldd "$QEMU_BIN" | grep -q 'not found'; then
  LD_LIBRARY_PATH="$QROOT/lib" ldd "$QEMU_BIN" | grep 'not found' >&2; die "qemu libraries missing"
fi

# ---------------------------------------------------------------- initramfs
KX="$CACHE/x/$KPKG"
KVER=$(ls "$KX/lib/modules" | head -1)
VMLINUZ="$KX/boot/vmlinuz-$KVER"
MODDIR="$KX/lib/modules/$KVER/kernel"
BB="$CACHE/x/busybox-static/bin/busybox"
ROOT="$CACHE/initramfs"
rm -rf "$ROOT"; mkdir -p "$ROOT"/{bin,sbin,etc,lib/modules,lib64,proc,sys,dev,tmp,mnt,run,var}
cp "$BB" "$ROOT/bin/busybox"
for a in $("$BB" --list); do [ "$a" = busybox ] || ln -s busybox "$ROOT/bin/$a"; done
modpath() { find "$MODDIR" \( -name "$1.ko*" -o -name "${1//_/-}.ko*" -o -name "${1//-/_}.ko*" \) | head -1; }
declare -A MSEEN=()
addmod() { # addmod GROUP NAME: the module and its depends=, deps first, into GROUP.order
  local g=$1 m=$2 f d
  [ -n "${MSEEN[$m]:-}" ] && return 0; MSEEN[$m]=1
  f=$(modpath "$m")
  if [ -z "$f" ]; then
    grep -qE "/(${m//[-_]/[-_]})\.ko" "$KX/lib/modules/$KVER/modules.builtin" && return 0
    die "module $m neither in $KPKG nor built in"
  fi
  case "$f" in
    *.ko) cp "$f" "$ROOT/lib/modules/$m.ko";;
    *.ko.xz) xz -dc "$f" > "$ROOT/lib/modules/$m.ko";;
    *.ko.zst) zstd -qdc "$f" > "$ROOT/lib/modules/$m.ko";;
  esac
  for d in $(tr '\0' '\n' < "$ROOT/lib/modules/$m.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do addmod "$g" "$d"; done
  echo "$m" >> "$ROOT/lib/modules/$g.order"
}
for m in configfs nvme-fabrics nvme-tcp nvmet nvmet-tcp; do addmod nvme $m; done
for m in virtio_pci virtio_net; do addmod net $m; done
addmod xfs xfs
copy_with_libs() { # dynamic binaries + their library closure (from the extracted debs first)
  local libpath="" p b l d
  for p in "${FPKGS[@]}"; do
    for d in "$CACHE/x/$p"/usr/lib/x86_64-linux-gnu "$CACHE/x/$p"/lib/x86_64-linux-gnu; do
      [ -d "$d" ] && libpath="$libpath:$d"
    done
  done
  for b in "$@"; do
    cp -L "$b" "$ROOT/sbin/"
    LD_LIBRARY_PATH="${libpath#:}" ldd "$b" | awk '/=> \//{print $3} /^\t\/lib64/{print $1}' | while read -r l; do
      case "$l" in */ld-linux-x86-64.so.2) cp -L "$l" "$ROOT/lib64/";;
        *) mkdir -p "$ROOT/lib/x86_64-linux-gnu"; cp -L "$l" "$ROOT/lib/x86_64-linux-gnu/";; esac
    done
  done
}
E="$CACHE/x/e2fsprogs"; X="$CACHE/x/xfsprogs"
copy_with_libs "$E/sbin/mke2fs" "$E/sbin/resize2fs" "$E/sbin/e2fsck" "$E/sbin/dumpe2fs" "$X/sbin/mkfs.xfs" "$X/usr/sbin/xfs_growfs"
ln -s mke2fs "$ROOT/sbin/mkfs.ext4"
cp "$E/etc/mke2fs.conf" "$ROOT/etc/"
install -m 0755 "$REPO/scripts/e2e/init.sh" "$ROOT/init"

log "waiting for the cargo build (log: $BUILD_LOG)"
if ! wait $BUILD_PID; then cat "$BUILD_LOG" >&2; die "cargo build failed"; fi
cat "$BUILD_LOG" >&2
BIN="$TARGET_DIR/x86_64-unknown-linux-gnu/release"
for b in rds-csi rds-csi-e2e; do
  [ -x "$BIN/$b" ] || die "$BIN/$b missing"
  file_out=$(ldd "$BIN/$b" 2>&1 || true)
  case "$file_out" in *"not a dynamic"*|*"statically linked"*) ;; *) die "$b is not static: $file_out";; esac
  cp "$BIN/$b" "$ROOT/bin/"
done
( cd "$ROOT" && find . | "$BB" cpio -o -H newc 2>/dev/null | gzip -1 > "$CACHE/initrd.gz" )
log "initramfs: $(( $(stat -c %s "$CACHE/initrd.gz") / 1024 )) KiB; kernel $KVER; qemu $(LD_LIBRARY_PATH="$QROOT/lib" "$QEMU_BIN" --version | head -1)"

# ---------------------------------------------------------------- boot the two VMs
kvm_usable() {
  [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
  [ ! -d /sys/module/kvm_pvm ] || return 1   # PVM host: a stock guest kernel hangs
  grep -qE 'vmx|svm' /proc/cpuinfo
}
case "$ACCEL" in
  auto) if kvm_usable; then ACCEL=kvm; else ACCEL=tcg; fi;;
  tcg|kvm) ;;
  *) die "RDS_CSI_E2E_ACCEL must be auto, tcg or kvm";;
esac
qemu_run() { # qemu_run LOG MEM APPEND [qemu args...]
  local logf=$1 mem=$2 append=$3; shift 3
  timeout "$TMO" env LD_LIBRARY_PATH="$QROOT/lib" "$QEMU_BIN" \
    -nodefaults -no-user-config -machine pc -accel "$ACCEL" -cpu max -m "$mem" -smp 1 \
    -L "$QROOT/fw" -display none -vga none -serial stdio -monitor none -no-reboot \
    -kernel "$VMLINUZ" -initrd "$CACHE/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet no_timer_check $append" "$@" </dev/null >"$logf" 2>&1
}
# port_busy PORT: something listens on 127.0.0.1:PORT (ss when present, else /proc/net/tcp)
port_busy() {
  if command -v ss >/dev/null; then ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
  else awk -v p="$(printf ':%04X' "$1")" '$4 == "0A" && index($2, p) { f = 1 } END { exit !f }' /proc/net/tcp
  fi
}
for i in 1 2 3 4 5 6 7 8; do
  PORT=$((20000 + RANDOM % 20000))
  port_busy $PORT || break
done
# boot_pair ATTEMPT: boots VM A and VM B on a fresh wire; sets LA LB RA RB.
boot_pair() {
  STAMP=$(date +%Y%m%d-%H%M%S)-$1
  LA="$CACHE/logs/$STAMP-A.log"; LB="$CACHE/logs/$STAMP-B.log"
  log "booting VM A (simulator+nvmet, controller, node-a, driver) and VM B (node-b), accel=$ACCEL, wire 127.0.0.1:$PORT (attempt $1)"
  set +e
  qemu_run "$LA" "$MEM_A" "e2e.role=a e2e.scenarios=$SCENARIOS e2e.stagecount=$STAGE_COUNT" \
    -netdev socket,id=n0,listen=127.0.0.1:$PORT -device virtio-net-pci,netdev=n0,mac=52:54:00:00:99:01,romfile= &
  PA=$!
  for i in $(seq 50); do port_busy $PORT && break; sleep 0.1; done
  qemu_run "$LB" "$MEM_B" "e2e.role=b" \
    -netdev socket,id=n0,connect=127.0.0.1:$PORT -device virtio-net-pci,netdev=n0,mac=52:54:00:00:99:02,romfile= &
  PB=$!
  wait $PA; RA=$?
  # VM B waits for VM A's verdict; when A ended without one (it crashed, or its kernel never
  # booted), waiting for B's own timeout would only add minutes.
  if ! tr -d '\r' < "$LA" | grep -q '^E2E-RESULT:'; then kill $PB 2>/dev/null; fi
  wait $PB; RB=$?
  set -e
}
T0=$(now_ms)
boot_pair 1
# A guest kernel that panics before its init ran (TCG on a loaded host can fail the kernel's
# IO-APIC timer check) is the machine's fault, not the driver's: boot once more.
if ! tr -d '\r' < "$LA" | grep -q '^E2E-INIT:'; then
  log "VM A never reached its init (qemu rc $RA; log $LA): booting both VMs once more"
  boot_pair 2
fi
VM_SECS=$(since $T0)
clean() { tr -d '\r' < "$1"; }
if clean "$LA" | grep -q '^E2E-RESULT: PASS' && clean "$LB" | grep -q '^E2E-B: done PASS'; then
  OK=1
else
  OK=0
  echo "================ VM A serial log ($LA, qemu rc $RA) ================"
  clean "$LA"
  echo "================ VM B serial log ($LB, qemu rc $RB) ================"
  clean "$LB"
fi
echo "================ results ================"
clean "$LA" | grep -E '^(E2E-SCENARIO|E2E-SUMMARY|E2E-ERROR|E2E-RESULT)' || true
clean "$LB" | grep -E '^E2E-B:' || true
log "VMs: ${VM_SECS}s wall (launch to power-off); total ${T_START:+$(since $T_START)}s; logs $LA $LB"
if [ $OK = 1 ]; then echo "E2E-VM: PASS"; else echo "E2E-VM: FAIL"; exit 1; fi
