//! Consuming event streams without a socket: an axum SSE endpoint called in
//! process (what calling an ASGI app through httpx's transport is in Python), and
//! a file read with `EventIter`.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use everstream::{Event, EventIter, EventStream, Frame, Limits, Parser};
use futures::{Stream, StreamExt, stream};

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Delta {
    index: u32,
    text: String,
}

#[derive(serde::Deserialize)]
struct Prompt {
    words: Vec<String>,
}

type SseItems = Vec<Result<SseEvent, Infallible>>;

async fn events() -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let delta = Delta {
        index: 3,
        text: "h\u{e9}llo \"world\"".into(),
    };
    let items: SseItems = vec![
        Ok(SseEvent::default().comment("stream opened")),
        Ok(SseEvent::default().retry(Duration::from_millis(1500))),
        Ok(SseEvent::default().event("greeting").id("1").data("hi")),
        Ok(SseEvent::default().data("line one\nline two\n\nline four")),
        Ok(SseEvent::default()
            .event("delta")
            .id("2")
            .json_data(&delta)
            .unwrap()),
        Ok(SseEvent::default().id("").data("id reset")),
    ];
    Sse::new(stream::iter(items))
}

/// Streams one event per word of the posted JSON prompt.
async fn completion(
    Json(prompt): Json<Prompt>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let items: SseItems = prompt
        .words
        .into_iter()
        .enumerate()
        .map(|(index, word)| Ok(SseEvent::default().id(index.to_string()).data(word)))
        .chain([Ok(SseEvent::default().event("done").data("[DONE]"))])
        .collect();
    Sse::new(stream::iter(items))
}

/// A handler whose event source fails after one event.
async fn failing() -> Sse<impl Stream<Item = Result<SseEvent, std::io::Error>>> {
    Sse::new(stream::iter([
        Ok(SseEvent::default().data("before the failure")),
        Err(std::io::Error::other("upstream went away")),
        Ok(SseEvent::default().data("never sent")),
    ]))
}

fn app() -> Router {
    Router::new()
        .route("/events", get(events))
        .route("/v1/completions", post(completion))
        .route("/failing", get(failing))
}

/// Calls `service` once, in process: no listener, no socket, no HTTP encoding.
///
/// This is `tower::ServiceExt::oneshot` written out, so that the tests need no
/// direct `tower` dependency: `axum::ServiceExt` has `tower_service::Service` as
/// a supertrait, so a type bounded by it can be polled and called.
async fn oneshot<S>(mut service: S, request: Request<Body>) -> Response
where
    S: axum::ServiceExt<Request<Body>, Response = Response, Error = Infallible>,
{
    let Ok(()) = std::future::poll_fn(|cx| service.poll_ready(cx)).await;
    let Ok(response) = service.call(request).await;
    response
}

/// The events of an in-process response, checked to be an event stream first.
async fn call_events(request: Request<Body>) -> Vec<Event> {
    let response = oneshot(app(), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    EventStream::new(response.into_body().into_data_stream())
        .map(|event| event.expect("event"))
        .collect()
        .await
}

#[tokio::test]
async fn axum_sse_endpoint_in_process() {
    let request = Request::get("/events").body(Body::empty()).unwrap();
    let events = call_events(request).await;
    let triples: Vec<_> = events
        .iter()
        .map(|e| (e.event_type(), e.data(), e.id()))
        .collect();
    assert_eq!(
        triples,
        [
            ("greeting", "hi", "1"),
            ("message", "line one\nline two\n\nline four", "1"),
            ("delta", r#"{"index":3,"text":"héllo \"world\""}"#, "2"),
            ("message", "id reset", ""),
        ]
    );
    assert_eq!(
        events[2].json::<Delta>().unwrap(),
        Delta {
            index: 3,
            text: "h\u{e9}llo \"world\"".into()
        }
    );
    let error = events[0].json::<Delta>().unwrap_err();
    assert!(
        error.is_json() && error.to_string().contains("greeting"),
        "{error}"
    );
}

#[tokio::test]
async fn axum_frames_in_process_show_comments_and_retry() {
    let request = Request::get("/events").body(Body::empty()).unwrap();
    let response = oneshot(app(), request).await;
    let frames: Vec<Frame> = EventStream::new(response.into_body().into_data_stream())
        .frames()
        .map(|frame| frame.expect("frame"))
        .collect()
        .await;
    assert_eq!(frames[0], Frame::Comment("stream opened".into()));
    assert_eq!(frames[1], Frame::Retry(Duration::from_millis(1500)));
    // The retry block was its own event-less block: the next event carries no retry.
    let Frame::Event(greeting) = &frames[2] else {
        panic!("expected an event, got {:?}", frames[2]);
    };
    assert_eq!(greeting.retry(), None);
    assert_eq!(frames.len(), 6);
}

#[tokio::test]
async fn axum_post_with_json_body_in_process() {
    let request = Request::post("/v1/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "text/event-stream")
        .body(Body::from(r#"{"words": ["one", "two", "three"]}"#))
        .unwrap();
    let events = call_events(request).await;
    let data: Vec<_> = events.iter().map(|e| (e.data(), e.id())).collect();
    assert_eq!(
        data,
        [("one", "0"), ("two", "1"), ("three", "2"), ("[DONE]", "2")]
    );
    assert_eq!(events[3].event_type(), "done");
}

#[tokio::test]
async fn axum_stream_failure_surfaces_as_an_io_error() {
    let request = Request::get("/failing").body(Body::empty()).unwrap();
    let response = oneshot(app(), request).await;
    let mut events = EventStream::new(response.into_body().into_data_stream());
    assert_eq!(
        events.next().await.unwrap().unwrap().data(),
        "before the failure"
    );
    let error = events.next().await.unwrap().unwrap_err();
    assert!(error.is_io(), "{error:?}");
    assert!(events.next().await.is_none());
}

#[tokio::test]
async fn axum_limits_apply_in_process() {
    let request = Request::get("/events").body(Body::empty()).unwrap();
    let response = oneshot(app(), request).await;
    // Data buffers (values plus one LF each): "hi" 3 bytes, the multi-line event 30,
    // the JSON event 38, "id reset" 9. Only the JSON event is over the limit.
    let parser = Parser::with_limits(Limits::default().max_event_size(35));
    let outcomes: Vec<Result<String, bool>> =
        EventStream::with_parser(response.into_body().into_data_stream(), parser)
            .map(|event| event.map(|e| e.data().to_owned()).map_err(|e| e.is_limit()))
            .collect()
            .await;
    assert_eq!(
        outcomes,
        [
            Ok("hi".into()),
            Ok("line one\nline two\n\nline four".into()),
            Err(true),
            Ok("id reset".into()),
        ]
    );
}

/// A file in the temp dir, removed on drop (also when the test panics).
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir().join(format!(
            "everstream-{name}-{}-{nanos}.sse",
            std::process::id()
        ));
        std::fs::write(&path, contents).expect("write temp file");
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn event_iter_reads_a_file() {
    let mut contents = b"\xEF\xBB\xBF: recorded stream\r\n".to_vec();
    contents.extend_from_slice(b"event: greeting\r\nid: 1\r\ndata: hi\r\n\r\n");
    contents.extend_from_slice(b"data: {\"index\": 1, \"text\": \"a\"}\r\n\r\n");
    // A large event crosses EventIter's 64 KiB read size.
    contents.extend_from_slice(format!("id: 2\ndata: {}\n\n", "z".repeat(100_000)).as_bytes());
    contents.extend_from_slice(b"data: bad \xFF byte\r\r");
    contents.extend_from_slice(b"id: 3\ndata: cut off by the end of the file");
    let file = TempFile::new("iter", &contents);

    let mut events = EventIter::new(std::fs::File::open(&file.0).unwrap());
    let first = events.next().unwrap().unwrap();
    assert_eq!(
        (first.event_type(), first.data(), first.id()),
        ("greeting", "hi", "1")
    );
    let second = events.next().unwrap().unwrap();
    assert_eq!(
        second.json::<Delta>().unwrap(),
        Delta {
            index: 1,
            text: "a".into()
        }
    );
    assert_eq!(second.id(), "1");
    let large = events.next().unwrap().unwrap();
    assert_eq!(large.data().len(), 100_000);
    assert_eq!(large.id(), "2");
    assert_eq!(events.next().unwrap().unwrap().data(), "bad \u{FFFD} byte");
    assert!(events.next().is_none());
    // The unterminated last block was discarded with its id.
    assert_eq!(events.last_event_id(), "2");
}

#[test]
fn event_iter_reports_limits_in_a_file_and_resumes() {
    let contents = format!(
        "data: ok\n\ndata: {}\n\ndata: still ok\n\n",
        "x".repeat(1000)
    );
    let file = TempFile::new("limits", contents.as_bytes());
    let parser = Parser::with_limits(Limits::default().max_line_length(100));
    let outcomes: Vec<Result<String, bool>> =
        EventIter::with_parser(std::fs::File::open(&file.0).unwrap(), parser)
            .map(|event| event.map(|e| e.data().to_owned()).map_err(|e| e.is_limit()))
            .collect();
    assert_eq!(
        outcomes,
        [Ok("ok".into()), Err(true), Ok("still ok".into())]
    );
}
