//! Cost of the per-volume in-flight guard on the RPC path: acquire + release, uncontended
//! and with another thread hammering other volumes.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use rds_csi::csi::inflight::InFlight;

fn bench(c: &mut Criterion) {
    let ids: Vec<String> = (0..1024).map(|i| format!("pvc-{i:08}")).collect();
    let f = InFlight::new();
    let mut i = 0usize;
    c.bench_function("inflight/acquire_release_uncontended", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            drop(black_box(f.try_acquire(&ids[i]).unwrap()));
        })
    });

    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let f = f.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("other-{}", n & 1023);
                drop(black_box(f.try_acquire(&id)));
                n += 1;
            }
        })
    };
    c.bench_function("inflight/acquire_release_with_second_thread", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            drop(black_box(f.try_acquire(&ids[i]).unwrap()));
        })
    });
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
