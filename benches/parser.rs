//! Decoding throughput of everstream's `Parser` and `EventStream` against a
//! `memchr` newline scan and two other SSE crates, on the workloads of
//! `common/mod.rs`, each fed in 8 KiB and 64 KiB chunks.
//!
//! `cargo bench --bench parser` runs it all in about two minutes; pass a filter
//! such as `cargo bench --bench parser -- small/8KiB` to run a part. For one table
//! of ratios to the baseline, run `cargo bench --bench ratios`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

mod common;

use common::{CHUNK_SIZES, Impl, verify, workloads};

fn decode(c: &mut Criterion) {
    for workload in workloads() {
        let mut group = c.benchmark_group(workload.name);
        group.throughput(Throughput::Bytes(workload.body.len() as u64));
        for size in CHUNK_SIZES {
            let chunks = workload.chunks(size);
            verify(&workload, &chunks);
            for imp in Impl::ALL {
                let id = BenchmarkId::new(imp.name(), format!("{}KiB", size >> 10));
                group.bench_with_input(id, &chunks, |b, chunks| b.iter(|| imp.run(chunks)));
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    // A pass over one workload takes 1-500 ms; ten samples in one second each are
    // enough to rank implementations that differ by multiples, and keep the suite
    // short enough to run during development.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    targets = decode
}
criterion_main!(benches);
