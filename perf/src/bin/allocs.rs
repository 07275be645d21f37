//! Where an idle stream's memory goes: the heap blocks that stay allocated after
//! one more idle stream is opened (after warm-up), listed by size. A counting
//! global allocator records them; the RSS figures come from the `memory` bin.
//!
//! `cargo run --release --bin allocs [-- --backtraces]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use everstream::{EventSource, Message};
use everstream_perf::{Server, client_runtime, loopback_client, sse_response};
use futures::StreamExt;

const SLOTS: usize = 16_384;

/// Live blocks allocated while `TRACKING` is set: (address, size), 0 = free slot.
static LIVE: [(AtomicUsize, AtomicUsize); SLOTS] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; SLOTS];
static TRACKING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Only the client's thread is tracked: the server runs on another one.
    static CLIENT_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set while a backtrace is being taken, whose own allocations are not tracked.
    static IN_TRACE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// With `--backtraces`: where each tracked block was allocated, by address.
static TRACES: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
static WANT_TRACES: AtomicBool = AtomicBool::new(false);

/// The frames of the current backtrace that name a crate of interest.
fn trace() -> String {
    let backtrace = std::backtrace::Backtrace::force_capture().to_string();
    let mut frames = Vec::new();
    for line in backtrace.lines() {
        let line = line.trim();
        let Some((_, name)) = line.split_once(": ") else {
            continue;
        };
        if (name.starts_with("everstream::")
            || name.starts_with("reqwest::")
            || name.starts_with("hyper")
            || name.starts_with("tokio::sync")
            || name.starts_with("tokio::task::spawn")
            || name.starts_with("tokio_util"))
            && frames.last() != Some(&name.to_string())
        {
            frames.push(name.to_string());
        }
        if frames.len() == 4 {
            break;
        }
    }
    frames.join(" <- ")
}

struct Counting;

impl Counting {
    fn record(ptr: *mut u8, size: usize) {
        if ptr.is_null()
            || !TRACKING.load(Ordering::Relaxed)
            || !CLIENT_THREAD.with(std::cell::Cell::get)
        {
            return;
        }
        if IN_TRACE.with(std::cell::Cell::get) {
            return;
        }
        let address = ptr as usize;
        for (slot, slot_size) in &LIVE {
            if slot
                .compare_exchange(0, address, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                slot_size.store(size, Ordering::Release);
                break;
            }
        }
        if WANT_TRACES.load(Ordering::Relaxed) {
            IN_TRACE.with(|flag| flag.set(true));
            let frames = trace();
            TRACES
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((address, frames));
            IN_TRACE.with(|flag| flag.set(false));
        }
    }

    fn forget(ptr: *mut u8) {
        let address = ptr as usize;
        for (slot, slot_size) in &LIVE {
            if slot.load(Ordering::Acquire) == address {
                slot_size.store(0, Ordering::Release);
                slot.store(0, Ordering::Release);
                return;
            }
        }
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the bookkeeping only
// touches static atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let ptr = unsafe { System.alloc(layout) };
        Self::record(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        Self::record(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if LIVE_COUNT.load(Ordering::Relaxed) > 0 {
            Self::forget(ptr);
        }
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::forget(ptr);
        // SAFETY: forwarded with the caller's pointer, layout and size.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        Self::record(new, new_size);
        new
    }
}

/// Set while blocks recorded earlier may still be freed.
static LIVE_COUNT: AtomicUsize = AtomicUsize::new(0);

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Opens one more stream of `kind` while tracking, keeps it open in `keep`, and
/// prints the blocks it left allocated (sizes, largest first).
async fn track(kind: &str, client: &reqwest::Client, url: &str, keep: &mut Vec<Box<dyn Send>>) {
    for slot in &LIVE {
        slot.0.store(0, Ordering::Relaxed);
        slot.1.store(0, Ordering::Relaxed);
    }
    TRACES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    LIVE_COUNT.store(1, Ordering::Relaxed);
    TRACKING.store(true, Ordering::Release);
    match kind {
        "reqwest-reading" => {
            let response = client.get(url).send().await.expect("a response");
            keep.push(Box::new(tokio::spawn(async move {
                let _ = response.bytes_stream().next().await;
            })));
        }
        _ => {
            let source = EventSource::builder(url)
                .client(client.clone())
                .read_timeout(None)
                .build()
                .expect("a valid source");
            let mut subscription = source.subscribe();
            source.start();
            while !matches!(subscription.recv().await, Some(Message::Open { .. })) {}
            keep.push(Box::new((source, subscription)));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    TRACKING.store(false, Ordering::Release);
    let mut live: Vec<(usize, usize)> = LIVE
        .iter()
        .filter(|slot| slot.0.load(Ordering::Acquire) != 0)
        .map(|slot| {
            (
                slot.1.load(Ordering::Acquire),
                slot.0.load(Ordering::Acquire),
            )
        })
        .collect();
    live.sort_unstable_by(|a, b| b.cmp(a));
    let sizes: Vec<usize> = live.iter().map(|(size, _)| *size).collect();
    let total: usize = sizes.iter().sum();
    println!(
        "\n{kind}: {} live blocks, {total} bytes requested (malloc adds ~8-16 bytes each)",
        sizes.len()
    );
    println!("sizes, largest first: {sizes:?}");
    if WANT_TRACES.load(Ordering::Relaxed) {
        let traces = TRACES.lock().unwrap_or_else(PoisonError::into_inner);
        for (size, address) in &live {
            // The last trace for an address is the live block's (addresses are reused).
            let frames = traces
                .iter()
                .rev()
                .find(|(traced, _)| traced == address)
                .map_or("?", |(_, frames)| frames.as_str());
            println!("  {size:>6}  {frames}");
        }
    }
}

fn main() {
    let router = Router::new().route(
        "/idle",
        get(|| async {
            let body = Body::from_stream(futures::stream::pending::<Result<Bytes, Infallible>>());
            sse_response(body, false)
        }),
    );
    let server = Server::start(router);
    let url = server.url("/idle");
    let runtime = client_runtime(0);
    let client = loopback_client();
    println!(
        "size_of: Message {} B, Event {} B, reqwest::Response {} B",
        size_of::<Message>(),
        size_of::<everstream::Event>(),
        size_of::<reqwest::Response>()
    );
    CLIENT_THREAD.with(|flag| flag.set(true));
    let backtraces = std::env::args().any(|arg| arg == "--backtraces");
    runtime.block_on(async {
        let mut keep: Vec<Box<dyn Send>> = Vec::with_capacity(64);
        // Warm-up: lazy statics, the pool, the timer wheel.
        for kind in ["reqwest-reading", "source", "reqwest-reading", "source"] {
            track(kind, &client, &url, &mut keep).await;
        }
        println!("\n--- after warm-up ---");
        WANT_TRACES.store(backtraces, Ordering::Relaxed);
        track("reqwest-reading", &client, &url, &mut keep).await;
        track("source", &client, &url, &mut keep).await;
        std::process::exit(0);
    });
}
