//! One-shot connect over reqwest: the request headers, the response checks.

use std::time::Duration;

use futures_core::Stream;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::error::{Error, ErrorKind, Rejection};
use crate::parser::Parser;
use crate::stream::{EventStream, Frames};

/// The media type of an event stream.
pub(crate) const EVENT_STREAM: &str = "text/event-stream";

/// How long reading the start of a refused response's body may take, at most.
pub(crate) const REJECTION_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `request` and checks that the response is an event stream, like httpx-sse's
/// `connect_sse`: any method, headers and body.
///
/// Sets `Accept: text/event-stream` and `Cache-Control: no-store` unless the request
/// already has those headers. Redirects are followed by the `reqwest::Client`'s
/// policy. The returned [`SseResponse`] lets you inspect the status and headers
/// before reading any event.
///
/// This connects once. For a stream that reconnects with `Last-Event-ID`, use
/// [`EventSource`](crate::EventSource).
///
/// # Examples
///
/// ```no_run
/// use futures::StreamExt;
///
/// # async fn run() -> Result<(), everstream::Error> {
/// let client = reqwest::Client::new();
/// let request = client
///     .post("http://127.0.0.1:8080/v1/chat/completions")
///     .bearer_auth("token")
///     .body(r#"{"stream": true}"#);
/// let response = everstream::connect(request).await?;
/// println!("status {}", response.status());
/// let mut events = response.events();
/// while let Some(event) = events.next().await {
///     println!("{}", event?.data());
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// - the request could not be built or sent ([`Error::is_transport`],
///   [`Error::is_config`]);
/// - the status is not 200 ([`Error::is_status`]), or a redirect could not be
///   followed ([`Error::is_redirect`]);
/// - the `Content-Type` is not `text/event-stream` ([`Error::is_content_type`]).
///
/// Status and content type errors carry the status, the headers and the start of
/// the body ([`Error::rejection`]).
pub async fn connect(request: RequestBuilder) -> Result<SseResponse, Error> {
    let (client, request) = request.build_split();
    let mut request = request.map_err(|error| Error::config(format!("bad request: {error}")))?;
    set_stream_headers(request.headers_mut());
    let response = client.execute(request).await?;
    check_response(response, REJECTION_READ_TIMEOUT)
        .await
        .map(SseResponse::new)
}

/// Adds the headers every event-stream request carries, unless already set.
pub(crate) fn set_stream_headers(headers: &mut HeaderMap) {
    headers
        .entry(ACCEPT)
        .or_insert(HeaderValue::from_static(EVENT_STREAM));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// True when the headers declare `text/event-stream` (parameters allowed, any case).
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(EVENT_STREAM))
}

/// Accepts a 200 `text/event-stream` response and refuses anything else.
///
/// A refused response's body is read for at most `body_timeout`.
pub(crate) async fn check_response(
    response: Response,
    body_timeout: Duration,
) -> Result<Response, Error> {
    if opens_stream(response.status(), response.headers()) {
        return Ok(response);
    }
    Err(refused(read_rejection(response, body_timeout).await))
}

/// Only a 200 with `text/event-stream` opens a stream.
pub(crate) fn opens_stream(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::OK && is_event_stream(headers)
}

/// The error for a response that does not open a stream, by what is wrong with it.
pub(crate) fn refused(rejection: Rejection) -> Error {
    let status = rejection.status;
    let rejection = Box::new(rejection);
    Error::new(if status.is_redirection() {
        ErrorKind::Redirect(rejection)
    } else if status != StatusCode::OK {
        ErrorKind::Status(rejection)
    } else {
        ErrorKind::ContentType(rejection)
    })
}

/// Keeps the status, headers and at most [`Rejection::BODY_LIMIT`] bytes of the body,
/// reading for at most `timeout`: a refused response must not hang the caller.
pub(crate) async fn read_rejection(response: Response, timeout: Duration) -> Rejection {
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    let read = async {
        while let Some(Ok(chunk)) = chunks.next().await {
            let room = Rejection::BODY_LIMIT - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= Rejection::BODY_LIMIT {
                break;
            }
        }
    };
    // A timeout only shortens the body we keep; the error is the status itself.
    let _ = tokio::time::timeout(timeout, read).await;
    Rejection {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A response accepted as an event stream: inspect it, then read its events.
#[derive(Debug)]
pub struct SseResponse {
    response: Response,
    parser: Parser,
}

impl SseResponse {
    fn new(response: Response) -> Self {
        Self {
            response,
            parser: Parser::new(),
        }
    }

    /// Uses a configured parser (limits, initial last event ID) for the events.
    pub fn with_parser(mut self, parser: Parser) -> Self {
        self.parser = parser;
        self
    }

    /// The response status (always 200).
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The underlying response, for anything else (URL after redirects, version).
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// Gives the response back, unread.
    pub fn into_response(self) -> Response {
        self.response
    }

    /// The events of the body, as a `Stream`.
    pub fn events(self) -> EventStream<impl Stream<Item = reqwest::Result<bytes::Bytes>>> {
        EventStream::with_parser(self.response.bytes_stream(), self.parser)
    }

    /// Every frame of the body (events, comments, retry hints), as a `Stream`.
    pub fn frames(self) -> Frames<impl Stream<Item = reqwest::Result<bytes::Bytes>>> {
        Frames::with_parser(self.response.bytes_stream(), self.parser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_stream_content_types() {
        for (value, expected) in [
            ("text/event-stream", true),
            ("text/event-stream; charset=utf-8", true),
            ("Text/Event-Stream;charset=UTF-8", true),
            (" text/event-stream ", true),
            ("text/event-streams", false),
            ("text/plain", false),
            ("application/json", false),
            ("", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            assert_eq!(is_event_stream(&headers), expected, "{value:?}");
        }
        assert!(!is_event_stream(&HeaderMap::new()));
    }

    #[test]
    fn stream_headers_do_not_override_the_caller() {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream, */*"));
        set_stream_headers(&mut headers);
        assert_eq!(headers[ACCEPT], "text/event-stream, */*");
        assert_eq!(headers[CACHE_CONTROL], "no-store");
    }
}
