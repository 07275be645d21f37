//! Consume an axum SSE endpoint in process, without a socket.
//!
//! The Rust counterpart of calling an ASGI app through httpx's transport: the
//! router is called as a service, and its response body, a stream of byte chunks,
//! is decoded by `everstream::EventStream`. Useful in tests of your own server.
//!
//! Run with `cargo run --example axum_in_process`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::response::Response;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use everstream::EventStream;
use futures::{Stream, StreamExt, stream};

#[derive(serde::Serialize, serde::Deserialize)]
struct Progress {
    done: u32,
    total: u32,
}

async fn progress() -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut events = vec![
        Event::default().comment("starting"),
        Event::default().retry(Duration::from_secs(2)),
    ];
    for done in 1..=3 {
        let event = Event::default()
            .event("progress")
            .id(done.to_string())
            .json_data(Progress { done, total: 3 })
            .expect("serializable");
        events.push(event);
    }
    events.push(Event::default().event("done").data("all done\nbye"));
    Sse::new(stream::iter(events).map(Ok))
}

/// Calls `service` once, in process. With `tower` as a dependency this is
/// `tower::ServiceExt::oneshot`; `axum::ServiceExt` has tower's `Service` as a
/// supertrait, which is enough to poll and call the router here.
async fn oneshot<S>(mut service: S, request: Request<Body>) -> Response
where
    S: axum::ServiceExt<Request<Body>, Response = Response, Error = Infallible>,
{
    let Ok(()) = std::future::poll_fn(|cx| service.poll_ready(cx)).await;
    let Ok(response) = service.call(request).await;
    response
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new().route("/progress", get(progress));
    let request = Request::get("/progress").body(Body::empty())?;
    let response = oneshot(app, request).await;
    println!(
        "{} {:?}",
        response.status(),
        response.headers().get("content-type")
    );

    let mut events = EventStream::new(response.into_body().into_data_stream());
    while let Some(event) = events.next().await {
        let event = event?;
        match event.event_type() {
            "progress" => {
                let progress: Progress = event.json()?;
                println!(
                    "progress id={} {}/{}",
                    event.id(),
                    progress.done,
                    progress.total
                );
            }
            other => println!("{other} id={} data={:?}", event.id(), event.data()),
        }
    }
    println!(
        "last event id {:?}, retry {:?}",
        events.last_event_id(),
        events.retry()
    );
    Ok(())
}
