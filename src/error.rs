//! The crate's one error type.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::parser::ParseError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What everstream reports when something goes wrong.
///
/// Opaque on purpose: ask it questions with the `is_*` predicates, or match on
/// [`Error::kind`]. Cloning is cheap (the error is shared), so one error can be
/// sent to many subscribers. `Display` describes this error only; the underlying
/// cause is available through [`std::error::Error::source`].
#[derive(Clone)]
pub struct Error(Arc<ErrorKind>);

/// What an [`Error`] is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Connecting, sending the request, or reading the body failed.
    #[error("HTTP transport failed")]
    Transport(#[source] reqwest::Error),
    /// The server answered with a status that does not open an event stream.
    #[error("server answered {} instead of an event stream", .0.status)]
    Status(Box<Rejection>),
    /// The response is not `text/event-stream`.
    #[error("response content type is {:?}, not text/event-stream", .0.content_type().unwrap_or("missing"))]
    ContentType(Box<Rejection>),
    /// A redirect could not be followed: no usable `Location`, or too many hops.
    #[error("redirect {} could not be followed", .0.status)]
    Redirect(Box<Rejection>),
    /// A configured size limit was exceeded; the event was skipped.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// No bytes arrived for the configured read timeout.
    #[error("no bytes received for {0:?}")]
    ReadTimeout(Duration),
    /// An event's data was not valid JSON for the requested type.
    #[error("data of event {event_type:?} is not the expected JSON")]
    Json {
        /// The type of the event that failed to decode.
        event_type: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// Reading from a `std::io::Read` failed.
    #[error("reading the event stream failed")]
    Io(#[source] std::io::Error),
    /// A byte stream given to [`EventStream`](crate::EventStream) failed.
    #[error("the byte stream failed")]
    Body(#[source] BoxError),
    /// The per-attempt request hook failed.
    #[error("the request hook failed")]
    Hook(#[source] BoxError),
    /// A configuration value was invalid (a URL, a header, a builder setting).
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// A server response that was refused: its status, headers and the start of its body.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The response status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The first bytes of the body (at most [`Rejection::BODY_LIMIT`]), lossily decoded.
    pub body: String,
}

impl Rejection {
    /// How much of a refused response's body is kept: 4 KiB.
    pub const BODY_LIMIT: usize = 4096;

    /// The `Content-Type` header, if present and readable.
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
    }
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Self(Arc::new(kind))
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config(message.into()))
    }

    pub(crate) fn json(event_type: &str, source: serde_json::Error) -> Self {
        Self::new(ErrorKind::Json {
            event_type: event_type.to_owned(),
            source,
        })
    }

    pub(crate) fn body(source: impl Into<BoxError>) -> Self {
        Self::new(ErrorKind::Body(source.into()))
    }

    /// What this error is about.
    pub fn kind(&self) -> &ErrorKind {
        &self.0
    }

    /// The refused response's status, for status, content type and redirect errors.
    pub fn status(&self) -> Option<StatusCode> {
        self.rejection().map(|rejection| rejection.status)
    }

    /// The refused response's headers, for status, content type and redirect errors.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.rejection().map(|rejection| &rejection.headers)
    }

    /// The start of the refused response's body.
    pub fn body_text(&self) -> Option<&str> {
        self.rejection().map(|rejection| rejection.body.as_str())
    }

    /// The refused response, for status, content type and redirect errors.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self.kind() {
            ErrorKind::Status(rejection)
            | ErrorKind::ContentType(rejection)
            | ErrorKind::Redirect(rejection) => Some(rejection),
            _ => None,
        }
    }

    /// Displays this error followed by each of its causes, `: `-separated, for
    /// a log line or a terminal.
    ///
    /// # Examples
    ///
    /// ```
    /// let error = everstream::Error::from(std::io::Error::other("connection reset"));
    /// assert_eq!(
    ///     error.display_chain().to_string(),
    ///     "reading the event stream failed: connection reset"
    /// );
    /// ```
    pub fn display_chain(&self) -> impl fmt::Display + '_ {
        DisplayChain(self)
    }

    /// The server answered with a status that does not open a stream.
    pub fn is_status(&self) -> bool {
        matches!(self.kind(), ErrorKind::Status(_))
    }

    /// The response was not `text/event-stream`.
    pub fn is_content_type(&self) -> bool {
        matches!(self.kind(), ErrorKind::ContentType(_))
    }

    /// A redirect could not be followed.
    pub fn is_redirect(&self) -> bool {
        match self.kind() {
            ErrorKind::Redirect(_) => true,
            ErrorKind::Transport(error) => error.is_redirect(),
            _ => false,
        }
    }

    /// Connecting, sending or reading over HTTP failed.
    pub fn is_transport(&self) -> bool {
        matches!(self.kind(), ErrorKind::Transport(_))
    }

    /// The connection could not be established.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind(), ErrorKind::Transport(error) if error.is_connect())
    }

    /// The request could not be built (for example an invalid URL).
    pub fn is_builder(&self) -> bool {
        match self.kind() {
            ErrorKind::Config(_) => true,
            ErrorKind::Transport(error) => error.is_builder(),
            _ => false,
        }
    }

    /// A timeout fired: the read timeout, or one configured on the `reqwest::Client`.
    pub fn is_timeout(&self) -> bool {
        match self.kind() {
            ErrorKind::ReadTimeout(_) => true,
            ErrorKind::Transport(error) => error.is_timeout(),
            _ => false,
        }
    }

    /// A configured size limit was exceeded (the event was skipped).
    pub fn is_limit(&self) -> bool {
        matches!(self.kind(), ErrorKind::Parse(_))
    }

    /// An event's data was not the expected JSON.
    pub fn is_json(&self) -> bool {
        matches!(self.kind(), ErrorKind::Json { .. })
    }

    /// A configuration value was invalid.
    pub fn is_config(&self) -> bool {
        matches!(self.kind(), ErrorKind::Config(_))
    }

    /// Reading a byte source (an `io::Read` or a user's byte stream) failed.
    pub fn is_io(&self) -> bool {
        matches!(self.kind(), ErrorKind::Io(_) | ErrorKind::Body(_))
    }
}

struct DisplayChain<'a>(&'a Error);

impl fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

impl From<ParseError> for Error {
    fn from(error: ParseError) -> Self {
        Self::new(ErrorKind::Parse(error))
    }
}

impl From<reqwest::Error> for Error {
    fn from(error: reqwest::Error) -> Self {
        Self::new(ErrorKind::Transport(error))
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Self::new(ErrorKind::Io(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_does_not_repeat_source() {
        let io = std::io::Error::other("disk on fire");
        let error = Error::from(io);
        assert!(!error.to_string().contains("disk on fire"));
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk on fire"));
        assert!(error.is_io());
    }

    #[test]
    fn rejection_is_exposed() {
        let error = Error::new(ErrorKind::Status(Box::new(Rejection {
            status: StatusCode::UNAUTHORIZED,
            headers: HeaderMap::new(),
            body: "no token".into(),
        })));
        assert!(error.is_status());
        assert_eq!(error.status(), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(error.body_text(), Some("no token"));
        assert!(error.to_string().contains("401"));
    }

    #[test]
    fn limit_errors_are_transparent() {
        let error = Error::from(ParseError::LineTooLong { limit: 10 });
        assert!(error.is_limit());
        assert!(error.to_string().contains("10 bytes"));
    }
}
