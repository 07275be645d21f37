//! everstream: a Server-Sent Events client that never silently dies.
//!
//! Three layers, use the one you need:
//!
//! - [`Parser`]: a sans-IO, spec-exact decoder of `text/event-stream` bytes
//!   (the WHATWG HTML rules), with [`EventStream`] and [`EventIter`] adapting any
//!   async byte `Stream` or `std::io::Read`.
//! - [`connect`]: one request over reqwest, checked to be an event stream, like
//!   Python's httpx-sse `connect_sse`.
//! - [`EventSource`]: a supervisor task that reconnects with `Last-Event-ID`,
//!   honours `retry:` and backs off with jitter, and fans events and lifecycle
//!   notices out to any number of subscribers.
//!
//! # Quick start
//!
//! ```no_run
//! use everstream::{EventSource, Message};
//!
//! # async fn run() -> Result<(), everstream::Error> {
//! let mut subscription = EventSource::builder("http://127.0.0.1:8080/events").subscribe()?;
//! while let Some(message) = subscription.recv().await {
//!     match message {
//!         Message::Event(event) => println!("{}: {}", event.event_type(), event.data()),
//!         Message::Closed(reason) => println!("closed: {reason}"),
//!         other => println!("{other:?}"),
//!     }
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
#[cfg(feature = "blocking")]
pub mod blocking;
mod builder;
mod classify;
mod connect;
mod error;
mod event;
mod mailbox;
mod message;
mod parser;
mod source;
mod stream;
mod supervisor;

pub use builder::EventSourceBuilder;
pub use classify::{Decision, Outcome};
pub use connect::{SseResponse, connect};
pub use error::{Error, ErrorKind, Rejection};
pub use event::Event;
pub use message::{CloseReason, DelayCause, Message, State, Stats};
pub use parser::{
    DEFAULT_MAX_EVENT_SIZE, DEFAULT_MAX_LINE_LENGTH, Frame, Limits, ParseError, Parser,
};
pub use source::{EventSource, SlowSubscriber, SubscribeOptions, Subscription};
pub use stream::{EventIter, EventStream, Frames};

/// Re-exported so users can name headers, methods and status codes without a
/// direct dependency on a matching reqwest version.
pub use reqwest;

// The main types are shareable across tasks; a regression here is a breaking change.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    const fn assert_clone<T: Clone>() {}
    assert_send_sync::<Event>();
    assert_send_sync::<Error>();
    assert_send_sync::<Message>();
    assert_send_sync::<EventSource>();
    assert_send_sync::<Subscription>();
    assert_send_sync::<Parser>();
    assert_clone::<Event>();
    assert_clone::<Error>();
    assert_clone::<Message>();
    assert_clone::<EventSource>();
};

// The Rust snippets in the README and guides are compiled as doctests, so they
// cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/coming-from-httpx-sse.md")]
struct HttpxSseGuideDoctests;
