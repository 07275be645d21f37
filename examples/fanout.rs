//! One upstream connection, several subscribers, one of them slow.
//!
//! A dashboard backend receives one SSE stream and broadcasts it to many
//! consumers (think websocket clients). This example shows the two
//! backpressure modes side by side:
//!
//! - `Wait` (the default): the supervisor waits for a slow subscriber. Nothing is
//!   lost, but every subscriber goes at the slow one's pace.
//! - `Skip`: a slow subscriber misses messages instead, and is told how many;
//!   the others are not held back.
//!
//! Run with `cargo run --example fanout`.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use everstream::{EventSource, Message, SlowSubscriber, SubscribeOptions, Subscription};

const EVENTS: usize = 2_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/ticks", listener.local_addr()?);
    tokio::spawn(
        async move { axum::serve(listener, Router::new().route("/ticks", get(ticks))).await },
    );

    for slow_mode in [SlowSubscriber::Skip, SlowSubscriber::Wait] {
        println!("slow subscriber mode: {slow_mode:?}");
        // Built, not started: every subscriber is in place before the first event.
        let source = EventSource::builder(&url).build()?;
        let mut consumers = Vec::new();
        for name in ["dashboard-1", "dashboard-2", "dashboard-3"] {
            consumers.push(tokio::spawn(consume(
                name,
                source.subscribe(),
                Duration::ZERO,
            )));
        }
        let slow = source.subscribe_with(
            SubscribeOptions::default()
                .capacity(32)
                .slow_subscriber(slow_mode),
        );
        consumers.push(tokio::spawn(consume(
            "slow-client",
            slow,
            Duration::from_micros(500),
        )));
        source.start();
        for consumer in consumers {
            let report = consumer.await?;
            println!("  {report}");
        }
        let stats = source.stats();
        println!(
            "  upstream: {} connection(s), {} events, {} bytes\n",
            stats.attempts, stats.events, stats.bytes
        );
        source.close().await;
    }
    Ok(())
}

/// Reads until the stream closes; returns a one-line report.
async fn consume(name: &str, mut subscription: Subscription, pause: Duration) -> String {
    let started = Instant::now();
    let mut last_event_at = Duration::ZERO;
    let (mut events, mut missed) = (0, 0);
    while let Some(message) = subscription.recv().await {
        match message {
            Message::Event(_) => {
                events += 1;
                last_event_at = started.elapsed();
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            Message::Missed { count } => missed += count,
            Message::Closed(_) => break,
            _ => {}
        }
    }
    format!(
        "{name:<12} received {events:>5} events, missed {missed:>5}, last event after {last_event_at:>8.1?}"
    )
}

/// Sends every event at once, then asks the client to stop (204) on reconnect.
async fn ticks(headers: HeaderMap) -> Response {
    if headers.contains_key("last-event-id") {
        return StatusCode::NO_CONTENT.into_response();
    }
    let body: String = (0..EVENTS)
        .map(|n| format!("id: {n}\ndata: {{\"tick\": {n}}}\n\n"))
        .collect();
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from(body),
    )
        .into_response()
}
