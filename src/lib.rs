//! everstream
#![deny(missing_docs)]

mod error;
mod event;
mod parser;

pub use error::{Error, ErrorKind, Rejection};
pub use event::Event;
pub use parser::{DEFAULT_MAX_EVENT_SIZE, DEFAULT_MAX_LINE_LENGTH, Frame, Limits, ParseError, Parser};
