//! Parsing throughput: NVMe device names/paths, kernel uevents, mountinfo lines.
//! Run: `cargo bench -p node-io --bench parsing -- --quick`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use node_io::device_path::NvmeDevice;
use node_io::mountinfo::MountTable;
use node_io::uevent::Uevent;

const NAMES: &[&str] = &[
    "nvme0n1",
    "/dev/nvme12n3p4",
    "nvme0c1n1",
    "/dev/nvme3c17n2p1",
    "nvme7",
    "/dev/disk/by-id/nvme-uuid.afc78958-a1ea-4f47-8976-3ed6be4ecb93",
    "sda1",
    "/dev/nvme0n",
];

const UEVENT: &[u8] = b"add@/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1\0ACTION=add\0\
DEVPATH=/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1\0SUBSYSTEM=block\0MAJOR=259\0\
MINOR=1\0DEVNAME=nvme0n1\0DEVTYPE=disk\0DISKSEQ=17\0SEQNUM=4242\0";

fn mountinfo_text(lines: usize) -> String {
    (0..lines)
        .map(|i| {
            format!(
                "{} 29 259:{} / /var/lib/kubelet/pods/{i:08x}/volumes/kubernetes.io~csi/pvc-{i}/mount \
                 rw,relatime shared:{i} - ext4 /dev/nvme{i}n1 rw,errors=remount-ro\n",
                100 + i,
                i % 64
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("parsing");
    g.throughput(Throughput::Elements(NAMES.len() as u64));
    g.bench_function("device_path", |b| {
        b.iter(|| {
            for n in NAMES {
                let _ = black_box(NvmeDevice::parse(black_box(n)));
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("uevent", |b| {
        b.iter(|| {
            let ev = Uevent::parse(black_box(UEVENT)).unwrap();
            black_box(ev.is_nvme_block_event())
        })
    });
    let text = mountinfo_text(200);
    g.throughput(Throughput::Elements(200));
    g.bench_function("mountinfo_200_lines", |b| {
        b.iter(|| black_box(MountTable::parse(black_box(&text))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
