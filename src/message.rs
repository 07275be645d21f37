//! What subscribers receive: events, comments and lifecycle notices.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::error::Error;
use crate::event::Event;

/// One item delivered to a [`Subscription`](crate::Subscription).
///
/// Events and lifecycle notices arrive in the order they happened. The last
/// message is always [`Message::Closed`] (unless the subscriber's channel was
/// full at shutdown), after which the subscription ends.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Message {
    /// A server-sent event.
    Event(Event),
    /// A comment line (keep-alives), for subscribers that asked for comments.
    Comment(String),
    /// A connection attempt is starting (1-based, counted since the source started).
    Connecting {
        /// The attempt number.
        attempt: u64,
    },
    /// The server accepted the stream: status 200, `text/event-stream`.
    Open {
        /// The attempt that opened.
        attempt: u64,
        /// The response status.
        status: StatusCode,
        /// The response headers.
        headers: Arc<HeaderMap>,
    },
    /// The attempt failed or the open connection ended.
    Disconnected {
        /// Why; `None` when the server ended the body cleanly.
        error: Option<Error>,
        /// Whether the source will reconnect.
        will_retry: bool,
    },
    /// A problem on an open connection that does not end it: an event exceeded a
    /// configured limit and was skipped.
    Error(Error),
    /// The source waits `delay` before attempt number `attempt`.
    Retrying {
        /// The attempt that will follow the delay.
        attempt: u64,
        /// How long the source waits.
        delay: Duration,
        /// What set the delay.
        cause: DelayCause,
    },
    /// This (lossy) subscriber was too slow: `count` messages were not delivered to
    /// it. Lossless subscribers never receive this.
    Missed {
        /// How many messages were dropped for this subscriber.
        count: u64,
    },
    /// The source stopped for good. The last message.
    Closed(CloseReason),
}

/// What set a reconnection delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DelayCause {
    /// The configured initial delay, grown by backoff after repeated failures.
    Backoff,
    /// The server's `retry:` value (first retry after a healthy connection).
    ServerRetry,
    /// The server's `retry:` value grown by backoff after repeated failures.
    ServerRetryBackoff,
    /// The response's `Retry-After` header.
    RetryAfter,
    /// A custom delay policy (the `backoff` feature).
    Policy,
}

/// Why a source stopped.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CloseReason {
    /// [`EventSource::close`](crate::EventSource::close) was called.
    ByUser,
    /// The server answered 204 No Content: it asks clients not to reconnect.
    ServerStopped,
    /// A custom classifier decided to stop, without an error.
    Stopped,
    /// An error that retrying cannot fix.
    Fatal(Error),
    /// The give-up policy was reached.
    GaveUp {
        /// Consecutive failed attempts since the last healthy connection.
        attempts: u64,
        /// Time since the last healthy connection (or the start).
        elapsed: Duration,
        /// The last error seen, if the last attempt failed with one.
        last_error: Option<Error>,
    },
    /// Every handle and subscription was dropped.
    Dropped,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ByUser => f.write_str("closed by the user"),
            Self::ServerStopped => f.write_str("the server asked to stop (204 No Content)"),
            Self::Stopped => f.write_str("stopped without reconnecting"),
            Self::Fatal(error) => write!(f, "fatal error: {error}"),
            Self::GaveUp {
                attempts, elapsed, ..
            } => write!(
                f,
                "gave up after {attempts} failed attempts over {elapsed:.1?}"
            ),
            Self::Dropped => f.write_str("every handle was dropped"),
        }
    }
}

/// Where a source is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Sending a request and waiting for the response headers.
    Connecting,
    /// Reading an open event stream.
    Open,
    /// Waiting before the next attempt.
    Waiting,
    /// Stopped for good.
    Closed,
}

impl State {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Self::Connecting => 0,
            Self::Open => 1,
            Self::Waiting => 2,
            Self::Closed => 3,
        }
    }

    pub(crate) fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Connecting,
            1 => Self::Open,
            2 => Self::Waiting,
            _ => Self::Closed,
        }
    }
}

/// Counters a dashboard can export, read with
/// [`EventSource::stats`](crate::EventSource::stats).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Connection attempts made.
    pub attempts: u64,
    /// Attempts after the first one.
    pub reconnects: u64,
    /// Events dispatched.
    pub events: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// Total time spent with a connection open.
    pub connected: Duration,
    /// The most recent error, if any.
    pub last_error: Option<Error>,
}
