//! `Event`: one dispatched server-sent event, as pure data.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;
use serde::de::DeserializeOwned;
use smol_str::SmolStr;

use crate::error::Error;

/// The type an event has when its block carried no (or an empty) `event:` field.
const DEFAULT_EVENT_TYPE: &str = "message";

/// [`DEFAULT_EVENT_TYPE`] as an event's type: static, so it costs no allocation.
pub(crate) fn default_event_type() -> SmolStr {
    SmolStr::new_static(DEFAULT_EVENT_TYPE)
}

/// One server-sent event, as dispatched by the parser.
///
/// All text is valid UTF-8 (invalid input bytes were replaced with U+FFFD, as the
/// WHATWG spec requires). The data shares the bytes it was parsed from, and a
/// short type or ID (up to 23 bytes) is stored inline, so [`Clone`] is O(1): it
/// never copies the data, which makes fanning one event out to many subscribers
/// cheap.
///
/// # Examples
///
/// ```
/// use everstream::Event;
///
/// let event = Event::new("{\"n\": 1}").with_event_type("tick").with_id("42");
/// assert_eq!(event.event_type(), "tick");
/// assert_eq!(event.id(), "42");
///
/// #[derive(serde::Deserialize)]
/// struct Tick { n: u32 }
/// let tick: Tick = event.json()?;
/// assert_eq!(tick.n, 1);
/// # Ok::<(), everstream::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Event {
    /// Inline when short (almost always): cloned without a reference count.
    event_type: SmolStr,
    data: ByteString,
    /// Inline when short, like most IDs: every event carries the ID in force,
    /// and a shared string would cost two atomic operations per event.
    id: SmolStr,
    retry: Option<Duration>,
}

impl Event {
    /// An event of type `message` with the given data, an empty ID and no retry.
    pub fn new(data: impl Into<String>) -> Self {
        Self {
            event_type: default_event_type(),
            data: ByteString::from(data.into()),
            id: SmolStr::default(),
            retry: None,
        }
    }

    pub(crate) fn from_parts(
        event_type: SmolStr,
        data: ByteString,
        id: SmolStr,
        retry: Option<Duration>,
    ) -> Self {
        Self {
            event_type,
            data,
            id,
            retry,
        }
    }

    /// Returns this event with its type replaced (an empty type means `message`).
    pub fn with_event_type(mut self, event_type: impl Into<String>) -> Self {
        let event_type = event_type.into();
        self.event_type = if event_type.is_empty() {
            default_event_type()
        } else {
            SmolStr::from(event_type)
        };
        self
    }

    /// Returns this event with its last event ID replaced.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = SmolStr::from(id.into());
        self
    }

    /// Returns this event with its block's `retry` value replaced.
    pub fn with_retry(mut self, retry: Option<Duration>) -> Self {
        self.retry = retry;
        self
    }

    /// The event type: the block's `event:` field, or `message` when it had none.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The data: the block's `data:` lines joined with `\n` (no trailing newline).
    pub fn data(&self) -> &str {
        &self.data
    }

    /// The data as shared bytes, without copying.
    pub fn data_bytes(&self) -> Bytes {
        self.data.as_bytes().clone()
    }

    /// The last event ID in force when this event was dispatched.
    ///
    /// This is the stream's last event ID, not only the block's own `id:` field: it
    /// persists across events until the server changes it, as the spec requires.
    /// Empty when no ID has been set (or the server reset it with an empty `id:`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `retry:` value carried by this event's own block, if any.
    ///
    /// It is already in force for the connection when the event is dispatched;
    /// this accessor only tells which block set it.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Deserializes the data as JSON.
    ///
    /// # Errors
    ///
    /// Fails when the data is not valid JSON for `T`; the error names the event
    /// type and keeps the `serde_json` error as its source ([`Error::is_json`]).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_str(&self.data).map_err(|source| Error::json(self.event_type(), source))
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("event_type", &self.event_type())
            .field("data", &self.data())
            .field("id", &self.id())
            .field("retry", &self.retry)
            .finish()
    }
}

/// Prints the data, exactly as received.
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.data())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_shares_data() {
        let event = Event::new("x".repeat(1 << 16));
        let copy = event.clone();
        assert_eq!(event.data().as_ptr(), copy.data().as_ptr());
        assert_eq!(event, copy);
    }

    #[test]
    fn empty_type_means_message() {
        assert_eq!(Event::new("").with_event_type("").event_type(), "message");
    }

    #[test]
    fn json_error_names_event_type() {
        let event = Event::new("{not json").with_event_type("update");
        let error = event.json::<serde_json::Value>().unwrap_err();
        assert!(error.is_json());
        assert!(error.to_string().contains("update"), "{error}");
        assert!(std::error::Error::source(&error).is_some());
    }

    #[test]
    fn display_is_data_and_debug_is_readable() {
        let event = Event::new("hello").with_id("7");
        assert_eq!(event.to_string(), "hello");
        let debug = format!("{event:?}");
        assert!(
            debug.contains("\"hello\"") && debug.contains("\"7\""),
            "{debug}"
        );
    }
}
