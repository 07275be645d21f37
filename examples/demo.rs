//! The main job: a flaky server, a client that never loses an event.
//!
//! Starts an SSE server on 127.0.0.1 that numbers its events, honours
//! `Last-Event-ID`, and cuts the connection at random points (mid-line and
//! mid-event included). The client prints events and lifecycle notices, then a
//! summary proving nothing was lost or duplicated.
//!
//! Run with `cargo run --example demo`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::get;
use everstream::{EventSource, Message};
use futures::stream;

const TOTAL: u64 = 60;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/events", listener.local_addr()?);
    let app = Router::new().route("/events", get(flaky_events));
    tokio::spawn(async move { axum::serve(listener, app).await });

    println!("server: {url} (drops the connection every few events)");
    let mut subscription = EventSource::builder(&url)
        .retry_delay(Duration::from_millis(50))
        .max_delay(Duration::from_millis(400))
        // Connections here last well under a second; count them as healthy.
        .stable_period(Duration::from_millis(50))
        .subscribe()?;
    let source = subscription.source();

    let mut received = Vec::new();
    while let Some(message) = subscription.recv().await {
        match message {
            Message::Event(event) => {
                println!("  event  id={:<3} data={}", event.id(), event.data());
                received.push(event.id().parse::<u64>()?);
                if received.len() as u64 == TOTAL {
                    source.close().await;
                }
            }
            Message::Connecting { attempt } => println!("connecting (attempt {attempt})"),
            Message::Open { status, .. } => println!("open ({status})"),
            Message::Disconnected { error, will_retry } => match error {
                Some(error) => println!(
                    "disconnected: {} (retry: {will_retry})",
                    error.display_chain()
                ),
                None => println!("stream ended (retry: {will_retry})"),
            },
            Message::Retrying { delay, cause, .. } => {
                println!("retrying in {delay:?} ({cause:?})")
            }
            Message::Closed(reason) => println!("closed: {reason}"),
            other => println!("{other:?}"),
        }
    }

    let stats = source.stats();
    let in_order = received.iter().copied().eq(0..TOTAL);
    let mut unique = received.clone();
    unique.dedup();
    println!();
    println!("summary");
    println!("  events received : {}", received.len());
    println!("  expected        : {TOTAL}");
    println!("  duplicates      : {}", received.len() - unique.len());
    println!(
        "  missing         : {}",
        TOTAL.saturating_sub(unique.len() as u64)
    );
    println!("  in order        : {in_order}");
    println!("  reconnects      : {}", stats.reconnects);
    if !in_order {
        return Err("events were lost, duplicated or reordered".into());
    }
    println!("nothing lost, nothing duplicated.");
    Ok(())
}

/// Replays from `Last-Event-ID`, sends a few events, then cuts the connection
/// somewhere inside the next one.
async fn flaky_events(headers: HeaderMap) -> Response {
    let next = headers
        .get("last-event-id")
        .and_then(|id| id.to_str().ok())
        .and_then(|id| id.parse::<u64>().ok())
        .map_or(0, |id| id + 1);
    let batch = 3 + next % 5;
    let mut body = String::from("retry: 50\n");
    for n in next..(next + batch).min(TOTAL) {
        body.push_str(&format!("id: {n}\ndata: event number {n}\n\n"));
    }
    let mut chunks: Vec<Result<String, std::io::Error>> = vec![Ok(body)];
    if next + batch < TOTAL {
        // Half of the next event, then the connection dies.
        let partial = format!("id: {}\ndata: event num", next + batch);
        chunks.push(Ok(
            partial[..(next as usize % partial.len()).max(1)].to_owned()
        ));
        chunks.push(Err(std::io::Error::other("simulated network failure")));
    } else {
        chunks.push(Ok(": all sent\n".into()));
    }
    let paced = stream::unfold(chunks.into_iter(), |mut chunks| async move {
        let chunk = chunks.next()?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        Some((chunk, chunks))
    });
    let body = if next >= TOTAL {
        Body::from_stream(stream::pending::<Result<String, Infallible>>())
    } else {
        Body::from_stream(paced)
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(body)
        .unwrap_or_default()
}
