#!/bin/sh
# PID 1 of the rds-csi e2e guests (busybox initramfs built by scripts/e2e-vm.sh).
#
# Two VMs on a private virtual wire (QEMU -netdev socket), two kernels = two real nodes:
#   e2e.role=a  10.99.0.1: RDS simulator exporting disks through the kernel's nvmet on
#               10.99.0.1:4420, rds-csi controller (unix socket, metrics 127.0.0.1:9809),
#               rds-csi node "node-a" (unix socket) and the test driver rds-csi-e2e.
#   e2e.role=b  10.99.0.2: rds-csi node "node-b" serving CSI on tcp://10.99.0.2:10000 and
#               rds-csi-e2e agent (shell checks for the driver) on 10.99.0.2:7000.
# Each node generates its own /etc/nvme/hostnqn + hostid at first start.
# A prints "E2E-RESULT: PASS|FAIL"; B prints "E2E-B: done PASS|FAIL" when A tells it.
export PATH=/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mkdir -p /run/csi /var/lib /etc/nvme /e2e
up()  { cut -d' ' -f1 /proc/uptime; }
say() { echo "E2E-INIT: [$(up)s] $*"; }
arg() { sed -n "s/.*e2e\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
ROLE=$(arg role); SCEN=$(arg scenarios); N=$(arg stagecount)
# Kernel messages stay in dmesg (dumped on failure) instead of interleaving with the
# driver's result lines on the serial console.
echo 1 > /proc/sys/kernel/printk
say "guest up, kernel $(uname -r), role $ROLE, $(grep -c ^processor /proc/cpuinfo) cpu, $(awk '/MemTotal/{print $2}' /proc/meminfo) KiB"

finish() { # finish RESULT-LINE
  sync
  echo "$1"
  poweroff -f
}
loadmods() { # /lib/modules/$1.order, dependencies first (built by e2e-vm.sh)
  [ -f /lib/modules/$1.order ] || return 0
  for m in $(cat /lib/modules/$1.order); do
    [ -d /sys/module/$(echo $m | tr - _) ] || insmod /lib/modules/$m.ko || say "insmod $m failed"
  done
}
loadmods nvme; loadmods net; loadmods xfs
mount -t configfs none /sys/kernel/config
ip link set lo up
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
dumplogs() { for f in "$@"; do [ -f "$f" ] && { echo "----- $f -----"; sed "s/^/  | /" "$f"; }; done; }

if [ "$ROLE" = a ]; then
  ip addr add 10.99.0.1/24 dev eth0; ip link set eth0 up
  # An SSH client key for the controller, made by our own binary (ed25519, OpenSSH format):
  # --print-host-key generates a key in the given state dir and prints its public line.
  CLIENT_PUB=$(rds-csi simulator --print-host-key --state-dir /e2e/client) || finish "E2E-RESULT: FAIL (client key)"
  mkdir -p /e2e/sim
  echo "$CLIENT_PUB" > /e2e/sim/authorized_keys
  PIN=$(rds-csi simulator --print-host-key --state-dir /e2e/sim/state) || finish "E2E-RESULT: FAIL (host key)"
  say "simulator host key pinned: $PIN"
  rds-csi simulator --listen 127.0.0.1:2222 --state-dir /e2e/sim/state --data-dir /tmp/sim-data \
    --authorized-keys /e2e/sim/authorized_keys --pool-size 100G \
    --export nvmet --nvme-listen 10.99.0.1:4420 >/tmp/simulator.log 2>&1 &
  i=0; until grep -q 'RDS simulator serving' /tmp/simulator.log; do
    i=$((i+1)); [ $i -gt 300 ] && { dumplogs /tmp/simulator.log; finish "E2E-RESULT: FAIL (simulator did not start)"; }; sleep 0.1
  done
  say "simulator serving (nvmet port: $(cat /sys/kernel/config/nvmet/ports/1/addr_traddr):$(cat /sys/kernel/config/nvmet/ports/1/addr_trsvcid))"
  rds-csi controller --endpoint unix:///run/csi/controller.sock --metrics-address 127.0.0.1:9809 \
    --rds-address 127.0.0.1:2222 --rds-user admin --rds-key-file /e2e/client/ssh_host_ed25519_key \
    --rds-host-key "$PIN" --volume-base-path /storage-pool/csi --nvme-address 10.99.0.1 \
    --no-kubernetes --static-nodes node-a,node-b,node-c >/tmp/controller.log 2>&1 &
  rds-csi node --endpoint unix:///run/csi/node-a.sock --metrics-address 127.0.0.1:9810 \
    --node-id node-a --state-dir /var/lib/rds-csi --reconcile-interval 5 >/tmp/node-a.log 2>&1 &
  say "controller and node-a started; running the driver"
  rds-csi-e2e run --controller unix:///run/csi/controller.sock \
    --node node-a=unix:///run/csi/node-a.sock --node node-b=tcp://10.99.0.2:10000 \
    --agent node-b=10.99.0.2:7000 --node-log node-a=/tmp/node-a.log \
    --metrics http://127.0.0.1:9809/metrics ${SCEN:+--scenarios $SCEN} ${N:+--stage-count $N}
  rc=$?
  [ $rc = 0 ] && RES=PASS || RES=FAIL
  say "driver exited $rc; node-a host NQN $(cat /etc/nvme/hostnqn)"
  i=0; until echo "done $RES" | nc 10.99.0.2 5000 2>/dev/null; do i=$((i+1)); [ $i -gt 25 ] && break; sleep 0.2; done
  if [ $RES != PASS ]; then
    dumplogs /tmp/simulator.log /tmp/controller.log /tmp/node-a.log
    echo "----- dmesg (nvme) -----"; dmesg | grep -iE 'nvme|xfs|ext4' | tail -40
  else
    for f in /tmp/simulator.log /tmp/controller.log /tmp/node-a.log; do
      say "$f: $(wc -l < $f) lines, $(grep -c WARN $f) WARN, $(grep -c ERROR $f) ERROR"
    done
  fi
  finish "E2E-RESULT: $RES"
elif [ "$ROLE" = b ]; then
  ip addr add 10.99.0.2/24 dev eth0; ip link set eth0 up
  rds-csi node --endpoint tcp://10.99.0.2:10000 --metrics-address 127.0.0.1:9810 \
    --node-id node-b --state-dir /var/lib/rds-csi --reconcile-interval 5 >/tmp/node-b.log 2>&1 &
  rds-csi-e2e agent --listen 10.99.0.2:7000 >/tmp/agent.log 2>&1 &
  say "node-b and agent started; waiting for node-a's verdict"
  m=$(timeout 3000 nc -l -p 5000)
  say "node-b host NQN $(cat /etc/nvme/hostnqn); left connected: $(ls /sys/class/nvme 2>/dev/null | tr '\n' ' ')"
  case "$m" in
    "done PASS") ;;
    *) dumplogs /tmp/node-b.log /tmp/agent.log; echo "----- dmesg (nvme) -----"; dmesg | grep -iE 'nvme|xfs|ext4' | tail -40;;
  esac
  finish "E2E-B: ${m:-no verdict from node-a}"
fi
finish "E2E-RESULT: FAIL (no e2e.role on the kernel command line)"
