//! Memory of idle open streams: the growth of `VmRSS` when K idle SSE
//! connections are opened, per client kind. The server (headers, then a body
//! that never yields) runs in a child process, so the client's RSS is its own
//! and each process needs one descriptor per stream; every measurement is a
//! fresh client process with a fresh server.
//!
//! `cargo run --release --bin memory -- [--reps 5] [--count 1000] [--big 10000] [--big-reps 3]`
//!
//! Internal modes: `memory serve` (the server child) and
//! `memory measure --variant V --count K --port P` (one client measurement).

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use everstream::{EventSource, Message, Subscription};
use everstream_perf::{
    Summary, arg, client_runtime, loopback_client, open_fds, raise_nofile, sse_response, vm_rss,
};
use futures::StreamExt;

const VARIANTS: [&str; 5] = [
    "reqwest-held",
    "reqwest-reading",
    "connect",
    "source",
    "source-default-client",
];

/// Streams opened (and kept) before the baseline reading, so one-time costs
/// (lazy statics, allocator arenas, the pool) are not counted per stream.
const WARM_UP: usize = 16;

/// What keeps one stream open.
#[allow(dead_code, reason = "held only to keep the stream open")]
enum Held {
    Response(reqwest::Response),
    Task(tokio::task::JoinHandle<()>),
    Source(EventSource, Subscription),
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("serve") => serve(),
        Some("measure") => measure(),
        _ => drive(),
    }
}

/// The server child: prints its port, serves idle streams until stdin closes.
fn serve() {
    raise_nofile(65_536);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let router = Router::new().route(
            "/idle",
            get(|| async {
                // Headers now, then nothing, ever.
                let body =
                    Body::from_stream(futures::stream::pending::<Result<Bytes, Infallible>>());
                sse_response(body, false)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        println!("PORT {}", listener.local_addr().expect("an address").port());
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stdin_closed.await;
            })
            .await
            .expect("the server runs");
    });
    // Idle connections never finish on their own; dropping the runtime ends them.
    runtime.shutdown_timeout(Duration::from_millis(100));
}

async fn open(variant: &str, client: &reqwest::Client, url: &str) -> Held {
    match variant {
        "reqwest-held" => Held::Response(client.get(url).send().await.expect("a response")),
        "reqwest-reading" => {
            let response = client.get(url).send().await.expect("a response");
            Held::Task(tokio::spawn(async move {
                let mut body = response.bytes_stream();
                let _ = body.next().await;
            }))
        }
        "connect" => {
            let response = everstream::connect(client.get(url))
                .await
                .expect("an event stream");
            Held::Task(tokio::spawn(async move {
                let mut events = response.events();
                let _ = events.next().await;
            }))
        }
        "source" | "source-default-client" => {
            let mut builder = EventSource::builder(url).read_timeout(None);
            if variant == "source" {
                builder = builder.client(client.clone());
            }
            let source = builder.build().expect("a valid source");
            let mut subscription = source.subscribe();
            source.start();
            loop {
                match subscription.recv().await {
                    Some(Message::Open { .. }) => break,
                    Some(Message::Disconnected { error, .. }) => {
                        panic!("could not open: {error:?}")
                    }
                    Some(_) => {}
                    None => panic!("the source ended before it opened"),
                }
            }
            Held::Source(source, subscription)
        }
        other => panic!("unknown variant {other}"),
    }
}

/// One client measurement; prints `RESULT variant count base after fds`.
fn measure() {
    let variant: String = arg("--variant", String::new());
    let count: usize = arg("--count", 1000);
    let port: u16 = arg("--port", 0);
    let limit = raise_nofile(65_536);
    assert!(
        limit as usize > count + WARM_UP + 64,
        "open-file limit {limit} is too low for {count} streams"
    );
    let url = format!("http://127.0.0.1:{port}/idle");
    let runtime = client_runtime(0);
    let client = loopback_client();
    runtime.block_on(async {
        let mut held = Vec::with_capacity(count + WARM_UP);
        let opening = async {
            for _ in 0..WARM_UP {
                held.push(open(&variant, &client, &url).await);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let base = vm_rss();
            // Bounded concurrency: the listener's backlog is finite.
            let mut opened = futures::stream::iter(0..count)
                .map(|_| open(&variant, &client, &url))
                .buffer_unordered(128);
            while let Some(stream) = opened.next().await {
                held.push(stream);
            }
            drop(opened);
            tokio::time::sleep(Duration::from_millis(500)).await;
            (base, vm_rss())
        };
        let (base, after) = tokio::time::timeout(Duration::from_secs(180), opening)
            .await
            .expect("opening takes less than 180 s");
        println!("RESULT {variant} {count} {base} {after} {}", open_fds());
        // Exit without tearing down thousands of streams one by one.
        std::process::exit(0);
    });
}

/// A fresh server child; returns it and its port.
fn start_server(exe: &std::path::Path) -> (Child, u16) {
    let mut child = Command::new(exe)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the server child starts");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("piped stdout"))
        .read_line(&mut line)
        .expect("the server prints its port");
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|port| port.parse().ok())
        .expect("PORT <n>");
    (child, port)
}

/// Runs one measurement in fresh processes; returns (base, after, fds).
fn one(exe: &std::path::Path, variant: &str, count: usize) -> Option<(u64, u64, u64)> {
    let (mut server, port) = start_server(exe);
    let output = Command::new(exe)
        .args(["measure", "--variant", variant])
        .args(["--count", &count.to_string(), "--port", &port.to_string()])
        .output()
        .expect("the client child runs");
    // Closing its stdin stops the server; kill it if it lingers.
    drop(server.stdin.take());
    for _ in 0..50 {
        if server.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if server.try_wait().ok().flatten().is_none() {
        let _ = server.kill();
        let _ = server.wait();
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = stdout.lines().find_map(|line| line.strip_prefix("RESULT "));
    let Some(result) = result else {
        eprintln!(
            "{variant} x {count} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    };
    let fields: Vec<u64> = result
        .split_whitespace()
        .skip(2)
        .map(|field| field.parse().expect("a number"))
        .collect();
    Some((fields[0], fields[1], fields[2]))
}

fn drive() {
    let reps: usize = arg("--reps", 5);
    let count: usize = arg("--count", 1000);
    let big: usize = arg("--big", 10_000);
    let big_reps: usize = arg("--big-reps", 3);
    let exe = std::env::current_exe().expect("this executable");
    let kib = |bytes: f64| bytes / 1024.0;

    println!("K = {count} idle streams per measurement, {reps} repetitions, fresh processes each");
    let mut per_stream: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for _ in 0..reps {
        for (index, variant) in VARIANTS.into_iter().enumerate() {
            if let Some((base, after, _fds)) = one(&exe, variant, count) {
                per_stream[index].push((after as f64 - base as f64) / count as f64);
            }
        }
    }
    println!(
        "\n| client | KiB per idle stream, min / median / max | vs reqwest-reading (median) |"
    );
    println!("|---|---:|---:|");
    let reading = Summary::of(&per_stream[1]).median;
    for (index, variant) in VARIANTS.into_iter().enumerate() {
        if per_stream[index].is_empty() {
            println!("| {variant} | failed | |");
            continue;
        }
        let summary = Summary::of(&per_stream[index]);
        println!(
            "| {variant} | {:.2} / {:.2} / {:.2} | {:+.2} KiB |",
            kib(summary.min),
            kib(summary.median),
            kib(summary.max),
            kib(summary.median - reading)
        );
    }

    if big == 0 {
        return;
    }
    println!("\nK = {big} idle streams, {big_reps} repetitions");
    println!(
        "\n| client | RSS before, MiB | RSS with {big} streams, MiB | KiB per stream | open fds |"
    );
    println!("|---|---:|---:|---:|---:|");
    for variant in ["reqwest-reading", "source"] {
        for _ in 0..big_reps {
            match one(&exe, variant, big) {
                Some((base, after, fds)) => println!(
                    "| {variant} | {:.1} | {:.1} | {:.2} | {fds} |",
                    base as f64 / f64::from(1 << 20),
                    after as f64 / f64::from(1 << 20),
                    kib((after as f64 - base as f64) / big as f64)
                ),
                None => println!("| {variant} | failed | | | |"),
            }
        }
    }
}
