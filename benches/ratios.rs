//! Prints markdown tables of decoding speed relative to a `memchr` newline scan
//! measured in the same run, for every workload x chunk size x implementation.
//!
//! `cargo bench --bench ratios` (about 25 seconds); `cargo bench --bench ratios --
//! small llm` runs only the named workloads; `-- --profile everstream-parser small`
//! runs one implementation in a loop for a profiler (see `docs/performance.md`). Ratios rather than absolute figures
//! are the point: on a shared machine the absolute speed drifts between runs, but
//! an implementation and the baseline measured side by side drift together.
//!
//! Method: each workload is cut into chunks once; every implementation is checked
//! to count the same events; then seven rounds each time every implementation in
//! turn (interleaved, so drift hits all of them alike), repeating a pass until
//! that timing lasts at least `MIN_ROUND`. A ratio is the baseline's time per pass
//! divided by the implementation's in the same round: 0.25x means a quarter of the
//! baseline's throughput.

use std::hint::black_box;
use std::time::{Duration, Instant};

mod common;

use common::{CHUNK_SIZES, Impl, Workload, verify, workloads};

const ROUNDS: usize = 7;
const MIN_ROUND: Duration = Duration::from_millis(50);
const PROFILE_TIME: Duration = Duration::from_secs(2);
const MIB: f64 = (1 << 20) as f64;

/// The measurements of one implementation on one workload and chunk size.
struct Row {
    workload: &'static str,
    chunk: usize,
    imp: Impl,
    bytes: usize,
    events: usize,
    /// Seconds per pass, one per round.
    times: Vec<f64>,
    /// Baseline time / this time, one per round (same round).
    ratios: Vec<f64>,
}

fn main() {
    let mut filters = Vec::new();
    let mut profile = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--profile" => profile = Some(args.next().expect("--profile takes an implementation")),
            // cargo passes `--bench`.
            flag if flag.starts_with("--") => {}
            _ => filters.push(arg),
        }
    }
    let selected = workloads()
        .into_iter()
        .filter(|w| filters.is_empty() || filters.iter().any(|f| f == w.name));
    if let Some(name) = profile {
        let imp = Impl::ALL
            .into_iter()
            .find(|imp| imp.name() == name)
            .unwrap_or_else(|| panic!("--profile takes one of {:?}", Impl::ALL.map(Impl::name)));
        selected.for_each(|workload| run_for_profiler(&workload, imp));
        return;
    }
    let mut rows = Vec::new();
    for workload in selected {
        for chunk in CHUNK_SIZES {
            eprintln!("measuring {} in {} KiB chunks", workload.name, chunk >> 10);
            rows.extend(measure(&workload, chunk));
        }
    }
    print_details(&rows);
    print_summary(&rows);
}

/// `--profile <implementation>`: only that implementation, over 8 KiB chunks, for
/// `PROFILE_TIME` (at least three passes), so that a sampling profiler sees little
/// but the decoder. Under callgrind, collect only the decoder (`--toggle-collect`).
fn run_for_profiler(workload: &Workload, imp: Impl) {
    let chunks = workload.chunks(CHUNK_SIZES[0]);
    let start = Instant::now();
    let mut passes = 0;
    while passes < 3 || start.elapsed() < PROFILE_TIME {
        black_box(imp.run(&chunks));
        passes += 1;
    }
    let per_pass = start.elapsed().as_secs_f64() / f64::from(passes);
    println!(
        "{} on {}: {passes} passes, {:.1} ns per event",
        imp.name(),
        workload.name,
        per_pass * 1e9 / workload.events as f64
    );
}

fn measure(workload: &Workload, chunk: usize) -> Vec<Row> {
    let chunks = workload.chunks(chunk);
    verify(workload, &chunks);
    // Passes per round, from one timed pass each (which doubles as a warm-up).
    let passes: Vec<u32> = Impl::ALL
        .iter()
        .map(|imp| {
            let start = Instant::now();
            black_box(imp.run(&chunks));
            let once = start.elapsed().max(Duration::from_nanos(1));
            (MIN_ROUND.as_secs_f64() / once.as_secs_f64())
                .ceil()
                .max(1.0) as u32
        })
        .collect();
    let mut times = vec![Vec::with_capacity(ROUNDS); Impl::ALL.len()];
    for _ in 0..ROUNDS {
        for (index, imp) in Impl::ALL.iter().enumerate() {
            let start = Instant::now();
            for _ in 0..passes[index] {
                black_box(imp.run(&chunks));
            }
            times[index].push(start.elapsed().as_secs_f64() / f64::from(passes[index]));
        }
    }
    let baseline = times[0].clone();
    Impl::ALL
        .iter()
        .zip(times)
        .map(|(&imp, times)| Row {
            workload: workload.name,
            chunk,
            imp,
            bytes: workload.body.len(),
            events: workload.events,
            ratios: baseline.iter().zip(&times).map(|(b, t)| b / t).collect(),
            times,
        })
        .collect()
}

/// A rate with an SI prefix and three significant digits, such as `9.81 M`.
fn rate(per_second: f64) -> String {
    let (value, prefix) = match per_second {
        r if r >= 1e6 => (r / 1e6, "M"),
        r if r >= 1e3 => (r / 1e3, "k"),
        r => (r, ""),
    };
    let decimals = match value {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    format!("{value:.decimals$} {prefix}")
}

/// (min, median, max) of a non-empty sample.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    (
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
    )
}

fn median(values: &[f64]) -> f64 {
    spread(values).1
}

fn print_details(rows: &[Row]) {
    println!(
        "| workload | chunk | implementation | ms/pass min / med / max | MiB/s | events/s | x memchr med [min-max] |"
    );
    println!("|---|---|---|---|---:|---:|---|");
    for row in rows {
        let (min, med, max) = spread(&row.times);
        let (rmin, rmed, rmax) = spread(&row.ratios);
        let events = if row.imp.counts_newlines() {
            "-".to_owned()
        } else {
            rate(row.events as f64 / med)
        };
        println!(
            "| {} | {} KiB | {} | {:.2} / {:.2} / {:.2} | {:.0} | {} | {:.3} [{:.3}-{:.3}] |",
            row.workload,
            row.chunk >> 10,
            row.imp.name(),
            min * 1e3,
            med * 1e3,
            max * 1e3,
            row.bytes as f64 / MIB / med,
            events,
            rmed,
            rmin,
            rmax,
        );
    }
}

/// One line per workload and chunk size, with the figures the targets are set in.
fn print_summary(rows: &[Row]) {
    println!();
    println!(
        "| workload | chunk | parser x memchr | stream x memchr | fastest peer | peer x memchr | parser / peer | stream / peer | memchr+copy x memchr |"
    );
    println!("|---|---|---:|---:|---|---:|---:|---:|---:|");
    for group in rows.chunks(Impl::ALL.len()) {
        let ratio = |imp: Impl| {
            median(
                &group
                    .iter()
                    .find(|row| row.imp == imp)
                    .expect("every implementation is measured")
                    .ratios,
            )
        };
        let peer = group
            .iter()
            .filter(|row| row.imp.is_peer())
            .max_by(|a, b| median(&a.ratios).total_cmp(&median(&b.ratios)))
            .expect("there are peers");
        let (parser, stream, best) = (
            ratio(Impl::Parser),
            ratio(Impl::EventStream),
            median(&peer.ratios),
        );
        println!(
            "| {} | {} KiB | {:.3} | {:.3} | {} | {:.3} | {:.2} | {:.2} | {:.3} |",
            group[0].workload,
            group[0].chunk >> 10,
            parser,
            stream,
            peer.imp.name(),
            best,
            parser / best,
            stream / best,
            ratio(Impl::MemchrCopy),
        );
    }
}
