//! The loopback side of the end-to-end benchmarks, shared by `benches/e2e.rs`
//! and the `perf/` crate: the workloads as HTTP bodies, a server on its own
//! thread, summary statistics and the small helpers of a benchmark binary.
//!
//! Every server binds 127.0.0.1 on a port the OS picks; nothing here reaches
//! another host.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::header::{CONNECTION, CONTENT_TYPE};
use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use bytes::Bytes;
use futures::stream;

/// The server writes the body in pieces of this size (each a zero-copy slice).
pub const SERVER_CHUNK: usize = 16 << 10;

/// One generated event stream.
#[derive(Clone)]
pub struct Workload {
    /// Short name used in tables and URLs.
    pub name: &'static str,
    /// The whole body.
    pub body: Bytes,
    /// How many events a spec-following parser dispatches from `body`.
    pub events: usize,
}

impl Workload {
    /// Average bytes per event.
    pub fn bytes_per_event(&self) -> f64 {
        self.body.len() as f64 / self.events as f64
    }
}

/// The generators of `benches/common`, included by path so both crates measure
/// the same bytes; this crate uses only some of them.
#[allow(dead_code)]
#[path = "../common/workloads.rs"]
mod generated;

impl From<generated::Workload> for Workload {
    fn from(workload: generated::Workload) -> Self {
        Self {
            name: workload.name,
            body: Bytes::from(workload.body),
            events: workload.events,
        }
    }
}

/// ~53-byte JSON events, the `small` workload of `benches/common` (a 52-byte data
/// line; every eighth event adds an `id:` line).
pub fn small() -> Workload {
    generated::small().into()
}

/// OpenAI-style chat-completion chunks ending with `data: [DONE]`, the `llm`
/// workload of `benches/common` (~267 bytes per event).
pub fn llm() -> Workload {
    generated::llm().into()
}

/// A `text/event-stream` response with `body`; with `close`, also
/// `Connection: close`, so the server closes the connection after it.
pub fn sse_response(body: Body, close: bool) -> Response {
    let mut builder = Response::builder().header(CONTENT_TYPE, "text/event-stream");
    if close {
        builder = builder.header(CONNECTION, "close");
    }
    builder.body(body).expect("a valid response")
}

/// A body of `chunks`, sent as fast as the connection takes them (chunked
/// transfer encoding, like a real SSE server).
pub fn chunks_body(chunks: Vec<Bytes>) -> Body {
    Body::from_stream(stream::iter(chunks.into_iter().map(Ok::<_, Infallible>)))
}

/// `body` as zero-copy slices of `size` bytes.
pub fn slices(body: &Bytes, size: usize) -> Vec<Bytes> {
    (0..body.len())
        .step_by(size)
        .map(|start| body.slice(start..(start + size).min(body.len())))
        .collect()
}

/// A loopback HTTP server on its own thread and its own single-threaded runtime,
/// so it competes with the client for a core the way a separate process would.
/// It stops when dropped.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// Serves `router` on 127.0.0.1 (port chosen by the OS).
    pub fn start(router: Router) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("server".into())
            .spawn(move || {
                pin_current_thread(1);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind 127.0.0.1");
                    addr_tx
                        .send(listener.local_addr().expect("an address"))
                        .expect("the caller waits for the address");
                    // Without TCP_NODELAY, Nagle holds the end of each response
                    // until the client's delayed ACK: a stall of up to tens of ms
                    // per request that would swamp the client's own cost.
                    let listener = listener.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    axum::serve(listener, router)
                        .with_graceful_shutdown(async move {
                            let _ = shutdown_rx.await;
                        })
                        .await
                        .expect("the server runs");
                });
                // Connections still streaming are dropped with the runtime.
                runtime.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("a server thread");
        let addr = addr_rx.recv().expect("the server started");
        Self {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:port/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The CPU time the server thread has used so far (user and system).
    pub fn cpu_time(&self) -> Duration {
        use std::os::unix::thread::JoinHandleExt;
        let thread = self.thread.as_ref().expect("the server runs until dropped");
        let mut clock: libc::clockid_t = 0;
        // SAFETY: the thread is alive (joined only on drop) and `clock` is ours.
        let found = unsafe { libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) };
        assert_eq!(found, 0, "the server thread has a CPU clock");
        read_clock(clock)
    }
}

/// The CPU time this whole process has used so far (user and system).
pub fn process_cpu_time() -> Duration {
    read_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn read_clock(clock: libc::clockid_t) -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid, writable timespec owned by this frame.
    let read = unsafe { libc::clock_gettime(clock, &mut time) };
    assert_eq!(read, 0, "the CPU clock can be read");
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A router serving every workload at `/<name>` from pre-built slices.
pub fn workload_router(workloads: &[Workload]) -> Router {
    let mut router = Router::new();
    for workload in workloads {
        let chunks = Arc::new(slices(&workload.body, SERVER_CHUNK));
        router = router.route(
            &format!("/{}", workload.name),
            get(move || {
                let chunks = Arc::clone(&chunks);
                async move { sse_response(chunks_body(chunks.to_vec()), false) }
            }),
        );
    }
    router
}

/// Min, median and max.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Smallest value.
    pub min: f64,
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Largest value.
    pub max: f64,
}

impl Summary {
    /// Summarises `values` (which must not be empty or contain NaN).
    pub fn of(values: &[f64]) -> Self {
        assert!(!values.is_empty(), "no values to summarise");
        let mut sorted = values.to_vec();
        sorted.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Self {
            min: sorted[0],
            median,
            max: sorted[n - 1],
        }
    }

    /// The value at quantile `q` in `[0, 1]` (nearest rank).
    pub fn quantile(values: &[f64], q: f64) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    /// `min / median / max` with `decimals` digits.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.d$} / {:.d$} / {:.d$}",
            self.min,
            self.median,
            self.max,
            d = decimals
        )
    }
}

/// Pins the calling thread to `cpu` when the `EVERSTREAM_PERF_PIN` environment
/// variable is set (server on CPU 1, client on CPU 0), so the two sides do not
/// trade cores mid-run. Returns whether it pinned.
pub fn pin_current_thread(cpu: usize) -> bool {
    if std::env::var_os("EVERSTREAM_PERF_PIN").is_none() {
        return false;
    }
    // SAFETY: `set` is a plain bit mask owned by this frame; the call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Ends the process with exit code 2 if it is still running after `limit`: a
/// bound on every benchmark that costs nothing inside the timed loops (unlike a
/// `tokio::time::timeout` around the client, which would poll a timer on every
/// wake-up).
pub fn watchdog(limit: Duration) {
    thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            thread::sleep(limit);
            eprintln!("watchdog: still running after {limit:?}, giving up");
            std::process::exit(2);
        })
        .expect("a watchdog thread");
}

/// A reqwest client for the loopback server: `.no_proxy()`, so that a proxy
/// set in the environment never sits between the client and 127.0.0.1.
pub fn loopback_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client")
}

/// A single-threaded client runtime (`threads == 0`) or a multi-threaded one.
pub fn client_runtime(threads: usize) -> tokio::runtime::Runtime {
    let mut builder = if threads == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder.enable_all().build().expect("a runtime")
}

/// How [`client_runtime`] names the runtime it builds, for a benchmark's header.
pub fn runtime_name(threads: usize) -> String {
    if threads == 0 {
        "current_thread".to_string()
    } else {
        format!("multi_thread({threads})")
    }
}

/// Reads `--name value` from the command line, or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == name)
        .and_then(|index| args.get(index + 1))
        .map(|value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("bad value for {name}: {value}"))
        })
        .unwrap_or(default)
}

/// Receives from `subscription` until `events` events have arrived; panics if the
/// source disconnects or ends first, so a broken run never reports a figure.
/// Returns the count, which is then `events`.
pub async fn receive_events(subscription: &mut everstream::Subscription, events: usize) -> usize {
    let mut count = 0;
    while count < events {
        match subscription.recv().await {
            Some(everstream::Message::Event(event)) => {
                std::hint::black_box(&event);
                count += 1;
            }
            Some(everstream::Message::Disconnected { error, .. }) => {
                panic!("disconnected after {count} events: {error:?}")
            }
            Some(_) => {}
            None => panic!("the source ended after {count} events"),
        }
    }
    count
}
