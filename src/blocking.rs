//! Blocking one-shot connect over reqwest's blocking client (feature `blocking`).

use std::io::Read;

use reqwest::StatusCode;
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::HeaderMap;

use crate::connect::{opens_stream, refused, set_stream_headers};
use crate::error::{Error, Rejection};
use crate::parser::Parser;
use crate::stream::EventIter;

/// Sends `request` and checks that the response is an event stream: the blocking
/// counterpart of [`connect`](crate::connect) (httpx-sse's `connect_sse` with a
/// sync client).
///
/// # Examples
///
/// ```no_run
/// let client = reqwest::blocking::Client::new();
/// let response = everstream::blocking::connect(client.get("http://127.0.0.1:8080/events"))?;
/// for event in response.events() {
///     println!("{}", event?.data());
/// }
/// # Ok::<(), everstream::Error>(())
/// ```
///
/// # Errors
///
/// The same as [`connect`](crate::connect).
pub fn connect(request: RequestBuilder) -> Result<SseResponse, Error> {
    let (client, request) = request.build_split();
    let mut request = request.map_err(|error| Error::config(format!("bad request: {error}")))?;
    set_stream_headers(request.headers_mut());
    let response = client.execute(request)?;
    let status = response.status();
    if opens_stream(status, response.headers()) {
        return Ok(SseResponse { response });
    }
    let headers = response.headers().clone();
    let mut body = Vec::new();
    // A read error only shortens the body we keep; the error is the status itself.
    let _ = response
        .take(Rejection::BODY_LIMIT as u64)
        .read_to_end(&mut body);
    Err(refused(Rejection {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }))
}

/// A blocking response accepted as an event stream.
#[derive(Debug)]
pub struct SseResponse {
    response: Response,
}

impl SseResponse {
    /// The response status (always 200).
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The underlying response.
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// The events of the body, as an `Iterator`.
    pub fn events(self) -> EventIter<Response> {
        EventIter::new(self.response)
    }

    /// The events of the body, parsed with a configured parser.
    pub fn events_with(self, parser: Parser) -> EventIter<Response> {
        EventIter::with_parser(self.response, parser)
    }
}
