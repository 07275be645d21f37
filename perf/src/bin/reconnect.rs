//! Reconnection latency: the loopback server ends each stream after `k` events;
//! the client waits `retry_delay` D (no jitter, no growth) and reconnects. The
//! latency of one reconnection is the time from the server ending the body to
//! the client receiving the first event of the next stream, minus D.
//!
//! `cargo run --release --bin reconnect -- [--reconnects 100] [--delay-ms 50] [--events 10]`

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use everstream::{EventSource, Message};
use everstream_perf::{Server, Summary, arg, client_runtime, loopback_client, sse_response};
use futures::StreamExt;

/// When the server ended stream `i` (index = stream number).
type Closes = Arc<Mutex<Vec<(usize, Instant)>>>;

/// A server whose stream number `i` sends `events` events (`data: i j`) and then
/// ends the body, recording the moment. With `close`, the response also carries
/// `Connection: close`, so every reconnection opens a new TCP connection.
fn server(events: usize, close: bool) -> (Server, Closes) {
    let closes: Closes = Arc::default();
    let counter = Arc::new(AtomicUsize::new(0));
    let recorded = Arc::clone(&closes);
    let router = Router::new().route(
        "/stream",
        get(move || {
            let stream = counter.fetch_add(1, Ordering::Relaxed);
            let closes = Arc::clone(&recorded);
            async move {
                let mut body = String::new();
                for event in 0..events {
                    body.push_str(&format!("id: {stream}-{event}\ndata: {stream} {event}\n\n"));
                }
                let first = futures::stream::iter([Ok::<_, Infallible>(Bytes::from(body))]);
                // Polled once the events are written: the end of the body.
                let end = futures::stream::poll_fn(move |_| {
                    closes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((stream, Instant::now()));
                    std::task::Poll::Ready(None::<Result<Bytes, Infallible>>)
                });
                sse_response(axum::body::Body::from_stream(first.chain(end)), close)
            }
        }),
    );
    (Server::start(router), closes)
}

/// everstream: returns when each stream's first event arrived, and the delays
/// the source announced.
async fn everstream_client(
    url: &str,
    client: &reqwest::Client,
    streams: usize,
    delay: Duration,
) -> (Vec<Option<Instant>>, Vec<Duration>) {
    let source = EventSource::builder(url)
        .client(client.clone())
        .retry_delay(delay)
        .jitter(0.0)
        .backoff_factor(1.0)
        .min_delay(Duration::from_millis(1))
        .read_timeout(None)
        .build()
        .expect("a valid source");
    let mut subscription = source.subscribe();
    source.start();
    let mut first = vec![None; streams];
    let mut delays = Vec::new();
    while first[streams - 1].is_none() {
        match subscription.recv().await {
            Some(Message::Event(event)) => {
                let now = Instant::now();
                let (stream, index) = parse(event.data());
                if index == 0 && stream < streams {
                    first[stream] = Some(now);
                }
            }
            Some(Message::Retrying { delay, .. }) => delays.push(delay),
            Some(Message::Closed(reason)) => panic!("closed: {reason}"),
            Some(_) => {}
            None => panic!("the source ended"),
        }
    }
    source.close().await;
    (first, delays)
}

/// The floor: reqwest alone, sleeping D between requests.
async fn raw_client(
    url: &str,
    client: &reqwest::Client,
    streams: usize,
    delay: Duration,
) -> Vec<Option<Instant>> {
    let mut first = vec![None; streams];
    for slot in first.iter_mut() {
        let response = client.get(url).send().await.expect("a response");
        let mut body = response.bytes_stream();
        let mut seen = false;
        while let Some(chunk) = body.next().await {
            chunk.expect("a chunk");
            if !seen {
                *slot = Some(Instant::now());
                seen = true;
            }
        }
        tokio::time::sleep(delay).await;
    }
    first
}

fn parse(data: &str) -> (usize, usize) {
    let mut numbers = data.split(' ').map(|n| n.parse().expect("a number"));
    (
        numbers.next().expect("stream"),
        numbers.next().expect("event"),
    )
}

fn main() {
    let reconnects: usize = arg("--reconnects", 100);
    let delay = Duration::from_millis(arg("--delay-ms", 50));
    let events: usize = arg("--events", 10);
    let threads: usize = arg("--client-threads", 0);
    let runtime = client_runtime(threads);
    let client = loopback_client();
    println!(
        "D = {} ms, {events} events per stream, {reconnects} reconnections per row; latency = first event of stream i+1 - end of stream i - D",
        delay.as_millis()
    );
    println!("\n| client | connection | ms min / median / max | p90 ms |");
    println!("|---|---|---:|---:|");
    let streams = reconnects + 1;
    for close in [false, true] {
        for everstream in [true, false] {
            let (server, closes) = server(events, close);
            let url = server.url("/stream");
            let bound = Duration::from_secs(30) + delay * u32::try_from(streams).expect("small");
            let first = runtime.block_on(async {
                tokio::time::timeout(bound, async {
                    if everstream {
                        let (first, delays) =
                            everstream_client(&url, &client, streams, delay).await;
                        assert!(
                            delays.iter().all(|announced| *announced == delay),
                            "every delay is D: {delays:?}"
                        );
                        first
                    } else {
                        raw_client(&url, &client, streams, delay).await
                    }
                })
                .await
                .expect("the run ends in time")
            });
            drop(server);
            let closes = closes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let mut latencies = Vec::new();
            for (stream, closed) in closes {
                if let Some(Some(next)) = first.get(stream + 1) {
                    let total = next.duration_since(closed);
                    latencies.push((total.as_secs_f64() - delay.as_secs_f64()) * 1e3);
                }
            }
            assert_eq!(latencies.len(), reconnects, "one latency per reconnection");
            println!(
                "| {} | {} | {} | {:.2} |",
                if everstream {
                    "everstream EventSource"
                } else {
                    "reqwest + sleep(D) (floor)"
                },
                if close {
                    "new TCP connection (Connection: close)"
                } else {
                    "kept alive, reused"
                },
                Summary::of(&latencies).show(2),
                Summary::quantile(&latencies, 0.9)
            );
        }
    }
}
