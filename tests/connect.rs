//! One-shot connect against a real loopback server.

mod support;

use std::time::Duration;

use bytes::Bytes;
use everstream::{Event, Frame, Limits, Parser, Rejection};
use futures::StreamExt;
use support::{Reply, Server, Step, send};

/// One server write per byte. The client's chunked-body decoder never merges two
/// chunks, so each byte reaches the parser as its own chunk (checked by
/// `server_writes_arrive_as_separate_chunks`).
fn bytewise(input: &[u8]) -> Vec<Step> {
    input
        .iter()
        .map(|&byte| send(Bytes::copy_from_slice(&[byte])))
        .collect()
}

/// Connects to `path` on `server` and collects every event, panicking on any error.
async fn events_from(server: &Server, path: &str) -> Vec<Event> {
    let response = everstream::connect(support::client().get(server.url(path)))
        .await
        .expect("connect");
    response
        .events()
        .map(|event| event.expect("event"))
        .collect()
        .await
}

/// `(event type, data, id)` triples, for compact assertions.
fn triples(events: &[Event]) -> Vec<(&str, &str, &str)> {
    events
        .iter()
        .map(|e| (e.event_type(), e.data(), e.id()))
        .collect()
}

async fn connect_error(reply: Reply) -> everstream::Error {
    let server = Server::always(reply).await;
    everstream::connect(support::client().get(server.url("/events")))
        .await
        .expect_err("the response must be refused")
}

#[tokio::test]
async fn receives_fragmented_events_and_sets_headers() {
    let server = Server::always(Reply::sse(vec![
        send("\u{feff}da"),
        send("ta: hel"),
        send("lo\r"),
        send("\n\r\n"),
        send("id: 2\ndata: world\n\n"),
    ]))
    .await;
    let response = everstream::connect(support::client().get(server.url("/events")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events: Vec<_> = response.events().map(|e| e.unwrap()).collect().await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].data(), "hello");
    assert_eq!(events[1].data(), "world");
    assert_eq!(events[1].id(), "2");
    let request = &server.requests()[0];
    assert_eq!(request.header("accept"), Some("text/event-stream"));
    assert_eq!(request.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn server_writes_arrive_as_separate_chunks() {
    // Guards the premise of the fragmentation tests below: one write, one chunk.
    let body = b"data: abc\n\n";
    let server = Server::always(Reply::sse(bytewise(body))).await;
    let response = everstream::connect(support::client().get(server.url("/")))
        .await
        .unwrap();
    let chunks: Vec<Bytes> = response
        .into_response()
        .bytes_stream()
        .map(|chunk| chunk.unwrap())
        .collect()
        .await;
    assert_eq!(chunks.len(), body.len(), "{chunks:?}");
    assert_eq!(chunks.concat(), body);
}

#[tokio::test]
async fn one_byte_per_write() {
    let body = "\u{feff}: hi\nevent: greeting\nid: 7\ndata: first\ndata: second\n\n\
                data: caf\u{e9} \u{1F600}\r\n\r\nretry: 10\rdata: cr\r\r";
    let server = Server::always(Reply::sse(bytewise(body.as_bytes()))).await;
    let events = events_from(&server, "/").await;
    assert_eq!(
        triples(&events),
        [
            ("greeting", "first\nsecond", "7"),
            ("message", "caf\u{e9} \u{1F600}", "7"),
            ("message", "cr", "7"),
        ]
    );
    assert_eq!(events[2].retry(), Some(Duration::from_millis(10)));
}

#[tokio::test]
async fn crlf_split_across_writes_is_one_line_ending() {
    let server = Server::always(Reply::sse(vec![
        send("data: a\r"),
        send("\ndata: b\r"),
        send("\n\r"),
        send("\nid: 1\r"),
        send("\ndata: c\r\n\r"),
        send("\n"),
    ]))
    .await;
    let events = events_from(&server, "/").await;
    // Were the LF after a split CR a second line ending, "a" would be dispatched
    // alone and "c" would carry no data line joined to it.
    assert_eq!(
        triples(&events),
        [("message", "a\nb", ""), ("message", "c", "1")]
    );
}

#[tokio::test]
async fn lone_cr_at_end_of_a_write_ends_the_line() {
    // A CR followed by a write that does not start with LF is a complete ending.
    let server = Server::always(Reply::sse(vec![
        send("data: a\r"),
        send("data: b\r"),
        send("\r"),
    ]))
    .await;
    let events = events_from(&server, "/").await;
    assert_eq!(triples(&events), [("message", "a\nb", "")]);
}

#[tokio::test]
async fn bom_split_across_writes_is_stripped() {
    let server = Server::always(Reply::sse(vec![
        send(&b"\xEF"[..]),
        send(&b"\xBB"[..]),
        send(&b"\xBFdata: a\n\n"[..]),
        // A BOM later in the stream is content: this line's field name is not "data".
        send(&b"\xEF\xBB\xBFdata: b\n\n"[..]),
        send("data: c\n\n"),
    ]))
    .await;
    let events = events_from(&server, "/").await;
    assert_eq!(
        triples(&events),
        [("message", "a", ""), ("message", "c", "")]
    );
}

#[tokio::test]
async fn invalid_utf8_is_replaced_with_replacement_character() {
    let server = Server::always(Reply::sse(vec![
        send(&b"event: t\xFF\ndata: a\xFFb\xC3\n"[..]),
        send(&b"data: \xE2\x82z\n\n"[..]),
    ]))
    .await;
    let events = events_from(&server, "/").await;
    assert_eq!(
        triples(&events),
        [("t\u{FFFD}", "a\u{FFFD}b\u{FFFD}\n\u{FFFD}z", "")]
    );
}

#[tokio::test]
async fn multibyte_characters_split_across_writes_decode_whole() {
    // é is C3 A9, € is E2 82 AC, 😀 is F0 9F 98 80: split inside each of them.
    let server = Server::always(Reply::sse(vec![
        send(&b"data: \xC3"[..]),
        send(&b"\xA9\xE2"[..]),
        send(&b"\x82"[..]),
        send(&b"\xAC\xF0\x9F"[..]),
        send(&b"\x98"[..]),
        send(&b"\x80!\n\n"[..]),
    ]))
    .await;
    let events = events_from(&server, "/").await;
    assert_eq!(
        triples(&events),
        [("message", "\u{e9}\u{20ac}\u{1F600}!", "")]
    );
}

#[tokio::test]
async fn wrong_content_type_is_refused_with_the_response() {
    let error = connect_error(
        Reply::sse(vec![send("<html><body>login</body></html>")])
            .header("content-type", "text/html")
            .header("x-request-id", "abc"),
    )
    .await;
    assert!(error.is_content_type(), "{error:?}");
    assert!(!error.is_status());
    assert_eq!(error.status(), Some(reqwest::StatusCode::OK));
    let rejection = error.rejection().expect("rejection");
    assert_eq!(rejection.content_type(), Some("text/html"));
    assert_eq!(rejection.headers["x-request-id"], "abc");
    assert_eq!(error.headers().unwrap()["x-request-id"], "abc");
    assert!(
        error.body_text().unwrap().starts_with("<html><body>login"),
        "{error:?}"
    );
    assert!(error.to_string().contains("text/html"), "{error}");
}

#[tokio::test]
async fn missing_content_type_is_refused() {
    let mut reply = Reply::sse(vec![send("data: a\n\n")]);
    reply.headers.clear();
    let error = connect_error(reply).await;
    assert!(error.is_content_type(), "{error:?}");
    assert!(error.to_string().contains("missing"), "{error}");
}

#[tokio::test]
async fn content_type_parameters_and_case_are_accepted() {
    for content_type in [
        "text/event-stream; charset=utf-8",
        "Text/Event-Stream",
        "TEXT/EVENT-STREAM;charset=UTF-8",
    ] {
        let server = Server::always(
            Reply::sse(vec![send("data: ok\n\n")]).header("content-type", content_type),
        )
        .await;
        let response = everstream::connect(support::client().get(server.url("/")))
            .await
            .unwrap_or_else(|error| panic!("{content_type:?} refused: {error}"));
        assert_eq!(response.headers()["content-type"], content_type);
        let events: Vec<_> = response.events().map(|e| e.unwrap()).collect().await;
        assert_eq!(
            triples(&events),
            [("message", "ok", "")],
            "{content_type:?}"
        );
    }
}

#[tokio::test]
async fn error_statuses_are_refused_with_their_body() {
    for (status, body) in [(404, "no such stream"), (500, "database unavailable")] {
        let error = connect_error(Reply::status(status, body)).await;
        assert!(error.is_status(), "{error:?}");
        assert!(!error.is_content_type() && !error.is_redirect() && !error.is_transport());
        assert_eq!(error.status().map(|s| s.as_u16()), Some(status));
        assert!(error.body_text().unwrap().contains(body), "{error:?}");
        assert_eq!(
            error.rejection().unwrap().content_type(),
            Some("text/plain")
        );
        let display = error.to_string();
        assert!(display.contains(&status.to_string()), "{display}");
        // Display says what happened; the body is data, not part of the message.
        assert!(!display.contains(body), "{display}");
        assert!(std::error::Error::source(&error).is_none());
    }
}

#[tokio::test]
async fn no_content_is_a_status_error() {
    let error = connect_error(Reply {
        status: 204,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: vec![],
    })
    .await;
    assert!(error.is_status(), "{error:?}");
    assert_eq!(error.status(), Some(reqwest::StatusCode::NO_CONTENT));
    assert_eq!(error.body_text(), Some(""));
}

#[tokio::test]
async fn large_rejected_body_is_truncated_to_the_limit() {
    let body: String = (0..Rejection::BODY_LIMIT * 3)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    // Sent in several writes so the limit is hit inside a chunk, not at its edge.
    let steps = body
        .as_bytes()
        .chunks(1000)
        .map(|chunk| send(Bytes::copy_from_slice(chunk)))
        .collect();
    let error = connect_error(Reply {
        status: 500,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: steps,
    })
    .await;
    assert!(error.is_status());
    let kept = error.body_text().unwrap();
    assert_eq!(kept.len(), Rejection::BODY_LIMIT);
    assert_eq!(kept, &body[..Rejection::BODY_LIMIT]);
}

#[tokio::test]
async fn post_with_json_body_and_headers_arrives_intact() {
    let server = Server::always(Reply::sse(vec![send("data: done\n\n")])).await;
    let payload = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hé"}]}"#;
    let request = support::client()
        .post(server.url("/v1/chat?x=1"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-api-key", "secret-123")
        .bearer_auth("token")
        .body(payload);
    let response = everstream::connect(request).await.unwrap();
    let events: Vec<_> = response.events().map(|e| e.unwrap()).collect().await;
    assert_eq!(triples(&events), [("message", "done", "")]);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/chat?x=1");
    assert_eq!(request.body, payload.as_bytes());
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-api-key"), Some("secret-123"));
    assert_eq!(request.header("authorization"), Some("Bearer token"));
    // The caller's Accept wins, and is not doubled.
    assert_eq!(request.headers.get_all("accept").iter().count(), 1);
    assert_eq!(
        request.header("accept"),
        Some("application/json, text/event-stream")
    );
    assert_eq!(request.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn redirect_to_another_path_is_followed() {
    let server = Server::start(|request, _| match request.path.as_str() {
        "/old" => Reply::status(302, "moved").header("location", "/new"),
        "/new" => Reply::sse(vec![send("id: 1\ndata: here\n\n")]),
        _ => Reply::status(404, "unexpected path"),
    })
    .await;
    let response = everstream::connect(support::client().get(server.url("/old")))
        .await
        .unwrap();
    assert_eq!(response.response().url().path(), "/new");
    let events: Vec<_> = response.events().map(|e| e.unwrap()).collect().await;
    assert_eq!(triples(&events), [("message", "here", "1")]);
    let paths: Vec<_> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/old", "/new"]);
    assert_eq!(
        server.requests()[1].header("accept"),
        Some("text/event-stream")
    );
}

#[tokio::test]
async fn redirect_without_location_is_a_redirect_error() {
    let error = connect_error(Reply::status(302, "nowhere to go")).await;
    assert!(error.is_redirect(), "{error:?}");
    assert!(!error.is_status());
    assert_eq!(error.status(), Some(reqwest::StatusCode::FOUND));
    assert_eq!(error.body_text(), Some("nowhere to go"));
}

#[tokio::test]
async fn abort_mid_event_yields_complete_events_then_an_error() {
    let server = Server::always(Reply::sse(vec![
        send("id: 1\ndata: a\n\ndata: b\n\n"),
        send("id: 2\ndata: partial"),
        // Let the writes above reach the client before the connection is cut.
        Step::Sleep(Duration::from_millis(50)),
        Step::Abort,
    ]))
    .await;
    let response = everstream::connect(support::client().get(server.url("/")))
        .await
        .unwrap();
    let mut events = response.events();
    let a = events.next().await.unwrap().unwrap();
    let b = events.next().await.unwrap().unwrap();
    assert_eq!(
        triples(&[a, b]),
        [("message", "a", "1"), ("message", "b", "1")]
    );
    let error = events
        .next()
        .await
        .expect("an error, not a clean end")
        .expect_err("the partial event must not be dispatched");
    assert!(!error.is_status() && !error.is_limit(), "{error:?}");
    let source = std::error::Error::source(&error).expect("the cause is chained");
    assert!(!error.to_string().contains(&source.to_string()), "{error}");
    assert!(events.next().await.is_none());
    // The unfinished block's `id: 2` was never committed.
    assert_eq!(events.last_event_id(), "1");
}

#[tokio::test]
async fn clean_end_mid_event_discards_the_partial_event() {
    let server = Server::always(Reply::sse(vec![
        send("id: 1\ndata: a\n\n"),
        send("id: 2\nevent: x\ndata: partial\n"),
    ]))
    .await;
    let response = everstream::connect(support::client().get(server.url("/")))
        .await
        .unwrap();
    let mut events = response.events();
    assert_eq!(events.next().await.unwrap().unwrap().data(), "a");
    assert!(events.next().await.is_none());
    assert_eq!(events.last_event_id(), "1");
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct Delta {
    index: u32,
    text: String,
}

#[tokio::test]
async fn json_events_deserialize_and_bad_json_names_the_event_type() {
    let server = Server::always(Reply::sse(vec![
        send("event: delta\ndata: {\"index\": 0,\ndata:  \"text\": \"h\u{e9}\"}\n\n"),
        send("event: broken\ndata: {\"index\": \"zero\"}\n\n"),
    ]))
    .await;
    let events = events_from(&server, "/").await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0].json::<Delta>().unwrap(),
        Delta {
            index: 0,
            text: "h\u{e9}".into()
        }
    );
    let error = events[1].json::<Delta>().unwrap_err();
    assert!(error.is_json(), "{error:?}");
    assert!(error.to_string().contains("broken"), "{error}");
    assert!(std::error::Error::source(&error).is_some());
}

#[tokio::test]
async fn limit_error_is_reported_then_parsing_resumes() {
    let long = format!("data: {}\n\n", "x".repeat(100));
    let server = Server::always(Reply::sse(vec![
        send("data: before\n\n"),
        send(long[..40].to_owned()),
        send(long[40..].to_owned()),
        send("data: after\n\n"),
    ]))
    .await;
    let parser = Parser::with_limits(Limits::default().max_line_length(32));
    let response = everstream::connect(support::client().get(server.url("/")))
        .await
        .unwrap()
        .with_parser(parser);
    let mut events = response.events();
    assert_eq!(events.next().await.unwrap().unwrap().data(), "before");
    let error = events.next().await.unwrap().unwrap_err();
    assert!(error.is_limit(), "{error:?}");
    assert!(error.to_string().contains("32"), "{error}");
    assert_eq!(events.next().await.unwrap().unwrap().data(), "after");
    assert!(events.next().await.is_none());
}

#[tokio::test]
async fn frames_show_comments_and_retry() {
    let server = Server::always(Reply::sse(vec![
        send(": keep-alive\n"),
        send("retry: 2500\nid: 9\ndata: x\n\n"),
        send(":\n"),
    ]))
    .await;
    let response = everstream::connect(support::client().get(server.url("/")))
        .await
        .unwrap();
    let mut frames = response.frames();
    let mut seen = Vec::new();
    while let Some(frame) = frames.next().await {
        seen.push(frame.unwrap());
    }
    assert_eq!(
        seen,
        [
            Frame::Comment("keep-alive".into()),
            Frame::Retry(Duration::from_millis(2500)),
            Frame::Event(
                Event::new("x")
                    .with_id("9")
                    .with_retry(Some(Duration::from_millis(2500)))
            ),
            Frame::Comment(String::new()),
        ]
    );
    assert_eq!(frames.retry(), Some(Duration::from_millis(2500)));
    assert_eq!(frames.last_event_id(), "9");
}

// The two tests below fail against the current src: `SseResponse::events()` wraps a
// failed reqwest body read as `ErrorKind::Body` (what a user's own byte stream gets)
// instead of `ErrorKind::Transport`, so `is_transport()` and `is_timeout()` say
// false, while the supervisor classifies the very same failure as `Transport`.

#[tokio::test]
async fn body_failure_after_connect_is_a_transport_error() {
    let server = Server::always(Reply::sse(vec![
        send("data: a\n\ndata: partial"),
        Step::Sleep(Duration::from_millis(50)),
        Step::Abort,
    ]))
    .await;
    let response = everstream::connect(support::client().get(server.url("/")))
        .await
        .unwrap();
    let mut events = response.events();
    assert_eq!(events.next().await.unwrap().unwrap().data(), "a");
    let error = events.next().await.unwrap().unwrap_err();
    assert!(error.is_transport(), "{error:?}");
}

#[tokio::test]
async fn client_timeout_while_reading_the_body_is_a_timeout() {
    let server = Server::always(Reply::sse(vec![send("data: a\n\n"), Step::Stall])).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let response = everstream::connect(client.get(server.url("/")))
        .await
        .unwrap();
    let mut events = response.events();
    assert_eq!(events.next().await.unwrap().unwrap().data(), "a");
    let error = events.next().await.unwrap().unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
}
