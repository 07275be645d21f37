//! End-to-end throughput over 127.0.0.1: a loopback axum server streams a
//! pre-built 4 MiB body as fast as it can; each client reads it, and its
//! throughput is compared with reqwest's raw `bytes_stream()` in the same round.
//! The competitors (`reqwest-eventsource`, `sse-stream`) are dev-dependencies.
//! A bound row (the raw read plus a visit of every LF) shows what any decoder
//! could reach, and each timing records how busy the client and the server
//! thread were, so a reader can tell which side limited it. From those it
//! derives each decoder's CPU cost per event and what the target ratio
//! leaves per event on this machine (the "budget" table).
//!
//! `cargo bench --bench e2e -- [--rounds 7] [--min-ms 250] [--client-threads 0] [--workload small|llm]`
//!
//! `--profile KEY --workload NAME` runs one client alone for 5 s, for `perf record`
//! (keys: raw, raw012, bound, connect, source, reqwest-eventsource, sse-stream).

use std::hint::black_box;
use std::time::{Duration, Instant};

use everstream::EventSource;
#[allow(dead_code)]
#[path = "support/loopback.rs"]
mod loopback;
#[path = "common/scans.rs"]
mod scans;

use futures::StreamExt;
use loopback::{
    SERVER_CHUNK, Server, Summary, Workload, arg, client_runtime, llm, receive_events, slices,
    small, watchdog,
};
use scans::{sse_stream_events, visit_newlines};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// reqwest 0.13 `bytes_stream()`, counting bytes: the baseline.
    Raw,
    /// reqwest 0.12 `bytes_stream()`: the transport under reqwest-eventsource.
    Raw012,
    /// The raw read plus a `memchr` scan for LF in every chunk: what any decoder
    /// must at least do, so no decoder can beat this ratio in the same round.
    Bound,
    /// `everstream::connect` + `.events()`.
    Connect,
    /// `EventSource` supervisor + one `Subscription`.
    Source,
    /// `reqwest_eventsource::EventSource` (reqwest 0.12).
    ReqwestEventsource,
    /// `sse_stream::SseByteStream` over reqwest 0.13 `bytes_stream()`.
    SseStream,
}

const CLIENTS: [Client; 7] = [
    Client::Raw,
    Client::Raw012,
    Client::Bound,
    Client::Connect,
    Client::Source,
    Client::ReqwestEventsource,
    Client::SseStream,
];

impl Client {
    /// The key for `--profile`.
    fn key(self) -> &'static str {
        match self {
            Client::Raw => "raw",
            Client::Raw012 => "raw012",
            Client::Bound => "bound",
            Client::Connect => "connect",
            Client::Source => "source",
            Client::ReqwestEventsource => "reqwest-eventsource",
            Client::SseStream => "sse-stream",
        }
    }

    /// Whether [`read_once`] counts bytes (rather than events).
    fn counts_bytes(self) -> bool {
        matches!(self, Client::Raw | Client::Raw012 | Client::Bound)
    }

    fn name(self) -> &'static str {
        match self {
            Client::Raw => "reqwest bytes_stream (baseline)",
            Client::Raw012 => "reqwest 0.12 bytes_stream",
            Client::Bound => "bytes_stream + LF scan (bound)",
            Client::Connect => "everstream connect + events()",
            Client::Source => "everstream EventSource + 1 subscription",
            Client::ReqwestEventsource => "reqwest-eventsource 0.6",
            Client::SseStream => "sse-stream 0.3 over bytes_stream",
        }
    }
}

struct Clients {
    v13: reqwest::Client,
    v12: reqwest012::Client,
}

/// One request read to the end (or to the last event); returns what was counted:
/// bytes for the raw clients, events for the others.
async fn read_once(client: Client, clients: &Clients, url: &str, workload: &Workload) -> usize {
    match client {
        Client::Raw => {
            let response = clients.v13.get(url).send().await.expect("a response");
            count_bytes(response.bytes_stream()).await
        }
        Client::Raw012 => {
            let response = clients.v12.get(url).send().await.expect("a response");
            count_bytes(response.bytes_stream()).await
        }
        Client::Bound => {
            let response = clients.v13.get(url).send().await.expect("a response");
            let mut body = response.bytes_stream();
            let mut bytes = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.expect("a chunk");
                visit_newlines(&chunk);
                bytes += chunk.len();
            }
            bytes
        }
        Client::Connect => {
            let response = everstream::connect(clients.v13.get(url))
                .await
                .expect("an event stream");
            let mut events = response.events();
            let mut count = 0;
            while let Some(event) = events.next().await {
                black_box(&event.expect("an event"));
                count += 1;
            }
            count
        }
        Client::Source => {
            let source = EventSource::builder(url)
                .client(clients.v13.clone())
                .build()
                .expect("a valid source");
            let mut subscription = source.subscribe();
            source.start();
            let count = receive_events(&mut subscription, workload.events).await;
            source.close().await;
            count
        }
        Client::ReqwestEventsource => {
            use reqwest_eventsource::Event;
            let mut source = reqwest_eventsource::EventSource::new(clients.v12.get(url))
                .expect("a clonable request");
            let mut count = 0;
            while count < workload.events {
                match source.next().await {
                    Some(Ok(Event::Message(message))) => {
                        black_box(&message);
                        count += 1;
                    }
                    Some(Ok(Event::Open)) => {}
                    Some(Err(error)) => panic!("error after {count} events: {error}"),
                    None => panic!("the source ended after {count} events"),
                }
            }
            source.close();
            count
        }
        Client::SseStream => {
            let response = clients.v13.get(url).send().await.expect("a response");
            sse_stream_events(response.bytes_stream()).await
        }
    }
}

/// Reads a raw body to its end; returns its length. Generic over the error,
/// so one loop serves reqwest 0.13 and 0.12.
async fn count_bytes<E: std::fmt::Debug>(
    body: impl futures::Stream<Item = Result<bytes::Bytes, E>>,
) -> usize {
    let mut body = std::pin::pin!(body);
    let mut bytes = 0;
    while let Some(chunk) = body.next().await {
        bytes += chunk.expect("a chunk").len();
    }
    bytes
}

/// One timing: wall time per request, and how busy each side was meanwhile.
#[derive(Debug, Clone, Copy)]
struct Timing {
    seconds: f64,
    /// The client's CPU time (the process's, less the server thread's) over the
    /// wall time: near 1 when the client is the bottleneck.
    client_busy: f64,
    /// The server thread's CPU time over the wall time: near 1 when the server
    /// is the bottleneck.
    server_busy: f64,
}

/// Repeats requests until `min` has passed (at most 200).
async fn time_one(
    client: Client,
    clients: &Clients,
    server: &Server,
    url: &str,
    workload: &Workload,
    min: Duration,
) -> Timing {
    let expected = if client.counts_bytes() {
        workload.body.len()
    } else {
        workload.events
    };
    let process_cpu = loopback::process_cpu_time();
    let server_cpu = server.cpu_time();
    let start = Instant::now();
    let mut requests = 0u32;
    while requests < 200 && (requests == 0 || start.elapsed() < min) {
        let counted = read_once(client, clients, url, workload).await;
        assert_eq!(counted, expected, "{} on {}", client.name(), workload.name);
        requests += 1;
    }
    let wall = start.elapsed().as_secs_f64();
    let server_cpu = (server.cpu_time() - server_cpu).as_secs_f64();
    let process_cpu = (loopback::process_cpu_time() - process_cpu).as_secs_f64();
    Timing {
        seconds: wall / f64::from(requests),
        client_busy: (process_cpu - server_cpu) / wall,
        server_busy: server_cpu / wall,
    }
}

fn main() {
    let rounds: usize = arg("--rounds", 7);
    let min = Duration::from_millis(arg("--min-ms", 250));
    let threads: usize = arg("--client-threads", 0);
    let only: String = arg("--workload", String::new());
    let profile: String = arg("--profile", String::new());

    // Every timing ends after at most 200 requests; this bounds a hang.
    watchdog(Duration::from_secs(
        120 + rounds as u64 * (CLIENTS.len() as u64) * 2 * (min.as_secs() + 10),
    ));
    let workloads: Vec<Workload> = [small(), llm()]
        .into_iter()
        .filter(|workload| only.is_empty() || workload.name == only)
        .collect();
    let server = Server::start(loopback::workload_router(&workloads));
    let runtime = client_runtime(threads);
    loopback::pin_current_thread(0);
    let clients = Clients {
        v13: loopback::loopback_client(),
        v12: reqwest012::Client::builder()
            .no_proxy()
            .build()
            .expect("a client"),
    };
    println!(
        "client runtime: {}; {rounds} rounds; each timing repeats requests for >= {} ms",
        loopback::runtime_name(threads),
        min.as_millis()
    );

    if !profile.is_empty() {
        let client = CLIENTS
            .into_iter()
            .find(|client| client.key() == profile)
            .unwrap_or_else(|| panic!("unknown client {profile}"));
        let workload = &workloads[0];
        let url = server.url(&format!("/{}", workload.name));
        let timing = runtime.block_on(time_one(
            client,
            &clients,
            &server,
            &url,
            workload,
            Duration::from_secs(5),
        ));
        println!(
            "{} on {}: {:.2} ms per request; client busy {:.2}, server busy {:.2}",
            client.name(),
            workload.name,
            timing.seconds * 1e3,
            timing.client_busy,
            timing.server_busy
        );
        let chunks = runtime.block_on(async {
            let response = clients.v13.get(&url).send().await.expect("a response");
            let mut body = response.bytes_stream();
            let mut chunks = 0usize;
            while let Some(chunk) = body.next().await {
                chunk.expect("a chunk");
                chunks += 1;
            }
            chunks
        });
        println!(
            "one more raw read: {chunks} chunks from bytes_stream, {} bytes each on average",
            workload.body.len() / chunks.max(1)
        );
        return;
    }

    runtime.block_on(async {
        for workload in &workloads {
            let url = server.url(&format!("/{}", workload.name));
            // Warm-up and verification: every client counts everything once.
            for client in CLIENTS {
                time_one(client, &clients, &server, &url, workload, Duration::ZERO).await;
            }
            let mut timings: Vec<Vec<Timing>> = vec![Vec::new(); CLIENTS.len()];
            for _ in 0..rounds {
                for (index, client) in CLIENTS.into_iter().enumerate() {
                    let timing = time_one(client, &clients, &server, &url, workload, min).await;
                    timings[index].push(timing);
                }
            }
            report(workload, &timings);
        }
    });
}

/// Where `client` is in [`CLIENTS`], and so in every per-client table.
fn position(client: Client) -> usize {
    CLIENTS
        .iter()
        .position(|&other| other == client)
        .expect("every client is timed")
}

/// The median over one client's rounds of `value`.
fn median(timings: &[Timing], value: impl Fn(&Timing) -> f64) -> f64 {
    let values: Vec<f64> = timings.iter().map(value).collect();
    Summary::of(&values).median
}

fn report(workload: &Workload, timings: &[Vec<Timing>]) {
    let bytes = workload.body.len() as f64;
    let seconds: Vec<Vec<f64>> = timings
        .iter()
        .map(|client| client.iter().map(|timing| timing.seconds).collect())
        .collect();
    println!(
        "\n### {}: {} bytes, {} events, {:.0} bytes/event\n",
        workload.name,
        workload.body.len(),
        workload.events,
        workload.bytes_per_event()
    );
    println!(
        "| client | MiB/s min / median / max | events/s (median) | x baseline min / median / max | busy: client / server (median) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (index, client) in CLIENTS.into_iter().enumerate() {
        let mib: Vec<f64> = seconds[index]
            .iter()
            .map(|s| bytes / s / f64::from(1 << 20))
            .collect();
        let mib = Summary::of(&mib);
        let events_per_second = workload.events as f64 * mib.median * f64::from(1 << 20) / bytes;
        let equivalent = if client.counts_bytes() {
            " (equiv.)"
        } else {
            ""
        };
        let busy = |side: fn(&Timing) -> f64| median(&timings[index], side);
        println!(
            "| {} | {} | {:.2} M{equivalent} | {} | {:.2} / {:.2} |",
            client.name(),
            mib.show(0),
            events_per_second / 1e6,
            Summary::of(&ratios(&seconds, index)).show(3),
            busy(|timing| timing.client_busy),
            busy(|timing| timing.server_busy)
        );
    }
    report_rounds(workload, timings, &seconds);
    report_budget(workload, timings);
}

/// The performance issue's end-to-end target for a workload: a ratio to the
/// baseline.
fn target_ratio(workload: &Workload) -> Option<f64> {
    match workload.name {
        "small" => Some(0.5),
        "llm" => Some(0.8),
        _ => None,
    }
}

/// CPU time of one visit of every LF in the body, cut as the server sends it:
/// the bound's work beyond the raw read. The fastest of a few passes.
fn newline_visit_seconds(workload: &Workload) -> f64 {
    let chunks = slices(&workload.body, SERVER_CHUNK);
    (0..20)
        .map(|_| {
            let start = loopback::process_cpu_time();
            let newlines: usize = chunks.iter().map(visit_newlines).sum();
            black_box(newlines);
            (loopback::process_cpu_time() - start).as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Each decoder's CPU cost per event, and the cost per event the target ratio
/// allows on this machine. A decoding client is limited by its own thread, so
/// its time per request is its CPU time: the transport's plus the decoder's.
/// The transport's is the bound's CPU time less the LF visit. The target
/// leaves the decoder (baseline time / ratio) x busy - transport.
fn report_budget(workload: &Workload, timings: &[Vec<Timing>]) {
    let Some(target) = target_ratio(workload) else {
        return;
    };
    let median_of =
        |client: Client, value: fn(&Timing) -> f64| median(&timings[position(client)], value);
    let cpu = |timing: &Timing| timing.seconds * timing.client_busy;
    let visit = newline_visit_seconds(workload);
    let transport = median_of(Client::Bound, cpu) - visit;
    let events = workload.events as f64;
    let per_event = |seconds: f64| seconds / events * 1e9;
    let busy = median_of(Client::Connect, |timing| timing.client_busy);
    let budget =
        per_event(median_of(Client::Raw, |timing| timing.seconds) / target * busy - transport);
    println!(
        "\n{} budget: the LF visit costs {:.3} ms per request, so the transport {:.3} ms; {target}x of the median baseline leaves a decoder {budget:.1} ns per event (at busy {busy:.2}):\n",
        workload.name,
        visit * 1e3,
        transport * 1e3,
    );
    println!("| client | decoder CPU ns per event (median) | x budget |");
    println!("|---|---:|---:|");
    for client in CLIENTS.into_iter().filter(|client| !client.counts_bytes()) {
        let cost = per_event(median_of(client, cpu) - transport);
        // No budget at all: even the transport alone misses the target.
        let times = if budget > 0.0 {
            format!("{:.2}", cost / budget)
        } else {
            "-".to_owned()
        };
        println!("| {} | {cost:.1} | {times} |", client.name());
    }
}

/// Baseline time / this client's time, one per round.
fn ratios(seconds: &[Vec<f64>], index: usize) -> Vec<f64> {
    seconds[0]
        .iter()
        .zip(&seconds[index])
        .map(|(base, own)| base / own)
        .collect()
}

/// Round by round: how busy each side was during the baseline's timing, and
/// the ratios of the bound and of everstream's clients. A baseline limited by
/// the server leaves a decoder spare client time; one limited by the client
/// does not, and then the bound shows the most any decoder could reach.
fn report_rounds(workload: &Workload, timings: &[Vec<Timing>], seconds: &[Vec<f64>]) {
    let column = |client: Client| ratios(seconds, position(client));
    let (bound, connect, source) = (
        column(Client::Bound),
        column(Client::Connect),
        column(Client::Source),
    );
    println!(
        "\n{} round by round (baseline: MiB/s, client and server busy = CPU time / wall time):\n",
        workload.name
    );
    println!(
        "| round | baseline MiB/s | client busy | server busy | bound x | connect x | EventSource x |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (round, raw) in timings[0].iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.3} | {:.3} | {:.3} |",
            round + 1,
            workload.body.len() as f64 / raw.seconds / f64::from(1 << 20),
            raw.client_busy,
            raw.server_busy,
            bound[round],
            connect[round],
            source[round]
        );
    }
}
