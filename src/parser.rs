//! The sans-IO WHATWG event-stream parser: bytes in, frames out.
//!
//! This module knows nothing of tokio or reqwest. It follows the HTML Standard's
//! "Parsing an event stream" and "Interpreting an event stream" rules for every
//! byte sequence; the only errors it reports are configured limits being exceeded.

use std::ops::Range;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use smol_str::SmolStr;

use crate::event::{Event, default_event_type};

mod partial;

use partial::{JoinedLine, PartialLine};

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Default for [`Limits::max_line_length`]: 16 MiB.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 16 << 20;
/// Default for [`Limits::max_event_size`]: 32 MiB.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 32 << 20;

/// Size limits that bound the parser's memory whatever the input.
///
/// The defaults fit a multi-MiB LLM response in one `data:` line.
///
/// # Examples
///
/// ```
/// use everstream::Limits;
///
/// let limits = Limits::default().max_line_length(1 << 20).max_event_size(4 << 20);
/// assert_eq!(limits.line_length(), 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    max_line_length: usize,
    max_event_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            max_event_size: DEFAULT_MAX_EVENT_SIZE,
        }
    }
}

impl Limits {
    /// The longest line accepted, in bytes, without its line ending.
    ///
    /// A longer line is reported once as [`ParseError::LineTooLong`], the rest of it
    /// is discarded as it arrives, and the event it belongs to is skipped.
    /// Default: [`DEFAULT_MAX_LINE_LENGTH`] (16 MiB).
    pub fn max_line_length(mut self, bytes: usize) -> Self {
        self.max_line_length = bytes;
        self
    }

    /// The largest data buffer of one event, in bytes (the `data:` values plus one
    /// newline each).
    ///
    /// A larger event is reported once as [`ParseError::EventTooLarge`] and skipped.
    /// Default: [`DEFAULT_MAX_EVENT_SIZE`] (32 MiB).
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }

    /// The configured maximum line length.
    pub fn line_length(&self) -> usize {
        self.max_line_length
    }

    /// The configured maximum event size.
    pub fn event_size(&self) -> usize {
        self.max_event_size
    }
}

/// A configured limit was exceeded. The offending event is skipped and parsing
/// resumes at the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A line was longer than [`Limits::max_line_length`].
    #[error("line longer than the limit of {limit} bytes; its event was skipped")]
    LineTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// An event's data was larger than [`Limits::max_event_size`].
    #[error("event data larger than the limit of {limit} bytes; the event was skipped")]
    EventTooLarge {
        /// The configured limit.
        limit: usize,
    },
}

/// What the parser yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// A dispatched event.
    Event(Event),
    /// A comment line (`:` at line start), without the colon and one following
    /// space. Servers send these as keep-alives.
    Comment(String),
    /// A valid `retry:` field: the server's new reconnection delay, in force from now.
    Retry(Duration),
}

/// The data buffer of the block being read. Lines of the current input are only
/// noted, and decoded once at dispatch: a one-line value as a slice of the input,
/// so the common one-line event is never copied, and several lines joined once,
/// at exact size.
#[derive(Debug, Default)]
enum Data {
    #[default]
    Empty,
    /// One line: `input[range]`.
    Line(Range<usize>),
    /// Several lines of the input, their ranges in [`Parser::lines`].
    Lines,
    /// One line that is not (or no longer) in the input: split across chunks,
    /// or its chunk was dropped before the block ended.
    Single(ByteString),
    /// Several lines, not all in the input, joined as they came in
    /// [`Parser::text`], and validated once at dispatch.
    Text,
}

/// The largest joined-data buffer kept for the next multi-line event.
const MAX_RETAINED_TEXT: usize = 64 << 10;

/// The most data lines of one event noted as ranges. Past this, the event is
/// joined as it arrives: a range costs 16 bytes however short its line is, so
/// an event of many empty lines would otherwise cost up to 16 times
/// [`Limits::max_event_size`].
const MAX_NOTED_LINES: usize = 1024;

/// A sans-IO parser for `text/event-stream` bodies.
///
/// Feed it chunks of any size with [`feed`](Self::feed), drain the frames with
/// [`next_frame`](Self::next_frame), and call [`finish`](Self::finish) when the
/// stream ends. Any chunking of the same bytes yields the same frames.
///
/// Lines fully inside one chunk are sliced out of it without copying; only a line
/// split across chunks is copied, once. Scanning never revisits a byte.
///
/// # Examples
///
/// ```
/// use everstream::{Frame, Parser};
///
/// let mut parser = Parser::new();
/// parser.feed("id: 1\ndata: hel".into());
/// assert!(parser.next_frame().is_none()); // the event is not finished yet
/// parser.feed("lo\n\n".into());
/// match parser.next_frame() {
///     Some(Ok(Frame::Event(event))) => {
///         assert_eq!(event.data(), "hello");
///         assert_eq!(event.id(), "1");
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(parser.last_event_id(), "1");
/// ```
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    /// The current chunk; `input[pos..]` is not scanned yet.
    input: Bytes,
    pos: usize,
    /// The start of a line whose end has not arrived yet.
    partial: PartialLine,
    /// How many BOM bytes matched so far at stream start; `None` once decided.
    bom_matched: Option<usize>,
    /// The previous line ended with CR: a LF right after it belongs to that ending.
    skip_lf: bool,
    /// The length so far of an over-long line whose rest is dropped as it
    /// arrives; 0 when there is none (an over-long line is never empty).
    overlong_line: usize,
    /// The block being read hit a limit: it dispatches nothing.
    skipping_block: bool,
    data: Data,
    data_len: usize,
    /// The value ranges of `Data::Lines`; kept between the events of a chunk.
    lines: Vec<Range<usize>>,
    /// The joined lines of `Data::Text`; kept between the events of a chunk (up
    /// to `MAX_RETAINED_TEXT`) so that joining rarely allocates.
    text: Vec<u8>,
    /// The block's event type, `message` unless an `event:` field set another.
    /// Kept ready for the next block, so that dispatch only moves it out.
    event_type: SmolStr,
    block_retry: Option<Duration>,
    /// The spec's "last event ID buffer": set by `id:`, committed at a blank line.
    id_buffer: SmolStr,
    /// The last event ID string of the source.
    last_event_id: SmolStr,
    /// `id_buffer` changed since the last dispatch.
    id_changed: bool,
    /// The last line split across chunks, once complete.
    joined: JoinedLine,
    /// The size to reserve for the next split line: the last one's (capped).
    line_hint: usize,
}

/// What a line leads to. Small, so that the common `Next` costs nothing to pass on.
enum Step {
    /// Nothing to yield yet: read the next line.
    Next,
    /// The block ended with data: yield its event ([`Parser::take_event`]).
    Dispatch,
    Comment(String),
    Retry(Duration),
    Failed(ParseError),
}

/// Where a line lies.
#[derive(Clone, Copy)]
enum Src {
    Input,
    Joined,
}

/// A complete line without its ending: `buffer(src)[start..end]`.
#[derive(Clone, Copy)]
struct Line {
    src: Src,
    start: usize,
    end: usize,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    /// A parser with the default [`Limits`] and an empty last event ID.
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// A parser with the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            input: Bytes::new(),
            pos: 0,
            partial: PartialLine::default(),
            bom_matched: Some(0),
            skip_lf: false,
            overlong_line: 0,
            skipping_block: false,
            data: Data::Empty,
            data_len: 0,
            lines: Vec::new(),
            text: Vec::new(),
            event_type: default_event_type(),
            block_retry: None,
            id_buffer: SmolStr::default(),
            last_event_id: SmolStr::default(),
            id_changed: false,
            joined: JoinedLine::default(),
            line_hint: 0,
        }
    }

    /// Sets the last event ID, as if a previous stream had ended with it.
    ///
    /// A reconnecting client uses this so the ID survives connections whose events
    /// carry no `id:` field.
    pub fn set_last_event_id(&mut self, id: impl Into<String>) {
        self.last_event_id = SmolStr::from(id.into());
        self.id_buffer = self.last_event_id.clone();
    }

    /// The last event ID: changed only when a blank line ends a block.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The length so far of an over-long line whose rest is being dropped as it
    /// arrives, or 0 when there is none. Memory stays bounded whatever it grows
    /// to; a caller may give up on a line that never seems to end.
    pub fn overlong_line_length(&self) -> usize {
        self.overlong_line
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Adds a chunk of input. Drain [`next_frame`](Self::next_frame) between calls:
    /// input left unscanned is then copied once to join the new chunk.
    pub fn feed(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        self.detach_data();
        let rest = &self.input[self.pos..];
        if rest.is_empty() {
            self.input = chunk;
            self.pos = 0;
        } else {
            let mut joined = BytesMut::with_capacity(rest.len() + chunk.len());
            joined.extend_from_slice(rest);
            joined.extend_from_slice(&chunk);
            self.input = joined.freeze();
            self.pos = 0;
        }
    }

    /// Ends the stream: an unfinished line or block is discarded, as the spec
    /// requires, and the parser is ready for a new stream (a reconnection) that
    /// keeps the last event ID.
    pub fn finish(&mut self) {
        let limits = self.limits;
        let last_event_id = std::mem::take(&mut self.last_event_id);
        *self = Self::with_limits(limits);
        self.id_buffer = last_event_id.clone();
        self.last_event_id = last_event_id;
    }

    /// The next frame from the input fed so far, or `None` when more input is needed.
    ///
    /// # Errors
    ///
    /// Yields a [`ParseError`] once when a line or an event exceeds the [`Limits`];
    /// that event is skipped and the following frames are parsed normally.
    pub fn next_frame(&mut self) -> Option<Result<Frame, ParseError>> {
        loop {
            let line = match self.next_line()? {
                Ok(line) => line,
                Err(error) => return Some(Err(error)),
            };
            let step = if line.start == line.end {
                self.end_block()
            } else {
                self.process_field(line)
            };
            // Only here is a `Frame` built: a large value moved through every
            // line's step would cost more than the step itself.
            match step {
                Step::Next => {}
                Step::Dispatch => return Some(Ok(Frame::Event(self.take_event()))),
                Step::Comment(text) => return Some(Ok(Frame::Comment(text))),
                Step::Retry(delay) => return Some(Ok(Frame::Retry(delay))),
                Step::Failed(error) => return Some(Err(error)),
            }
        }
    }

    /// The next complete line, its ending consumed, or `None` when more input is
    /// needed. Fails when a line grows beyond the limit.
    fn next_line(&mut self) -> Option<Result<Line, ParseError>> {
        loop {
            if self.bom_matched.is_some() && !self.strip_bom() {
                return None;
            }
            if self.skip_lf && self.pos < self.input.len() {
                self.skip_lf = false;
                if self.input[self.pos] == b'\n' {
                    self.pos += 1;
                }
            }
            let start = self.pos;
            let Some(len) = find_line_end(&self.input[start..]) else {
                return self.keep_partial_line().map(Err);
            };
            let end = start + len;
            self.pos = self.after_line_end(end);
            if self.overlong_line > 0 {
                self.overlong_line = 0;
                continue;
            }
            if self.partial.is_empty() {
                // The common case: the line lies inside the input and is parsed in place.
                return Some(Ok(Line {
                    src: Src::Input,
                    start,
                    end,
                }));
            }
            self.partial.push(&self.input[start..end]);
            self.joined = self.partial.take_line();
            let len = self.joined.bytes().len();
            self.line_hint = len.min(1 << 20) + 1;
            return Some(Ok(Line {
                src: Src::Joined,
                start: 0,
                end: len,
            }));
        }
    }

    /// Strips a leading BOM, split across chunks or not. Returns false while undecided.
    fn strip_bom(&mut self) -> bool {
        let Some(mut matched) = self.bom_matched else {
            return true;
        };
        while matched < BOM.len() {
            let Some(&byte) = self.input.get(self.pos) else {
                self.bom_matched = Some(matched);
                return false;
            };
            if byte != BOM[matched] {
                // Not a BOM: the bytes matched so far are ordinary content.
                self.partial.push(&BOM[..matched]);
                break;
            }
            self.pos += 1;
            matched += 1;
        }
        self.bom_matched = None;
        true
    }

    /// Keeps the unterminated rest of the input for the next chunk, within the limit.
    fn keep_partial_line(&mut self) -> Option<ParseError> {
        self.detach_data();
        let input = std::mem::take(&mut self.input);
        let rest = &input[std::mem::take(&mut self.pos)..];
        if rest.is_empty() {
            return None;
        }
        if self.overlong_line > 0 {
            self.overlong_line = self.overlong_line.saturating_add(rest.len());
            return None;
        }
        if self.partial.len() + rest.len() > self.limits.max_line_length {
            self.overlong_line = self.partial.len() + rest.len();
            self.partial = PartialLine::default();
            self.skipping_block = true;
            return Some(ParseError::LineTooLong {
                limit: self.limits.max_line_length,
            });
        }
        if self.partial.is_empty() {
            // One allocation of the size the last split line had, instead of
            // doubling (and copying) its way up to it.
            self.partial.reserve(rest.len().max(self.line_hint));
        }
        self.partial.push(rest);
        None
    }

    fn buffer(&self, src: Src) -> &Bytes {
        match src {
            Src::Input => &self.input,
            Src::Joined => self.joined.bytes(),
        }
    }

    /// Interprets a non-blank line.
    fn process_field(&mut self, line: Line) -> Step {
        let step = self.interpret_field(line);
        if let Src::Joined = line.src {
            // Values were sliced out of it; do not keep the rest alive.
            self.joined = JoinedLine::default();
        }
        step
    }

    fn interpret_field(&mut self, line: Line) -> Step {
        let Line { src, start, end } = line;
        if end - start > self.limits.max_line_length {
            self.skipping_block = true;
            return Step::Failed(ParseError::LineTooLong {
                limit: self.limits.max_line_length,
            });
        }
        let bytes = &self.buffer(src)[start..end];
        // Most lines are data: name them without a search for the colon.
        let (name_end, mut value_start) = if bytes.starts_with(b"data:") {
            (4, 5)
        } else {
            match memchr::memchr(b':', bytes) {
                Some(colon) => (colon, colon + 1),
                None => (bytes.len(), bytes.len()),
            }
        };
        if bytes.get(value_start) == Some(&b' ') {
            value_start += 1;
        }
        let value = start + value_start..end;
        match &bytes[..name_end] {
            b"" => {
                return Step::Comment(String::from_utf8_lossy(&bytes[value_start..]).into_owned());
            }
            b"data" => return self.append_data(src, value),
            b"event" => {
                self.event_type = match &bytes[value_start..] {
                    b"" => default_event_type(),
                    name => decode_short(name),
                }
            }
            // An id containing NUL is ignored entirely.
            b"id" if memchr::memchr(0, &bytes[value_start..]).is_none() => {
                self.id_buffer = decode_short(&bytes[value_start..]);
                self.id_changed = true;
            }
            b"retry" => {
                if let Some(millis) = parse_retry(&bytes[value_start..]) {
                    let delay = Duration::from_millis(millis);
                    self.block_retry = Some(delay);
                    return Step::Retry(delay);
                }
            }
            _ => {}
        }
        Step::Next
    }

    fn append_data(&mut self, src: Src, value: Range<usize>) -> Step {
        if self.skipping_block {
            return Step::Next;
        }
        self.data_len += value.len() + 1;
        if self.data_len > self.limits.max_event_size {
            self.clear_data();
            self.skipping_block = true;
            return Step::Failed(ParseError::EventTooLarge {
                limit: self.limits.max_event_size,
            });
        }
        match (src, &self.data) {
            // Lines that follow are looked for from the second on: most events
            // have one line, which the look would only slow down.
            (Src::Input, Data::Empty) => self.data = Data::Line(value),
            (Src::Input, Data::Line(_) | Data::Lines) if self.lines.len() < MAX_NOTED_LINES => {
                self.note_line(value);
                self.note_following_data_lines();
            }
            (Src::Joined, Data::Empty) => {
                self.data = Data::Single(self.joined.value(value));
            }
            _ => {
                self.move_data_to_text();
                self.text.push(b'\n');
                // Not `self.buffer(src)`: `self.text` is written while this is borrowed.
                let buffer = match src {
                    Src::Input => &self.input,
                    Src::Joined => self.joined.bytes(),
                };
                self.text.extend_from_slice(&buffer[value]);
            }
        }
        Step::Next
    }

    /// Notes the `data:` lines that follow in the input, if any: the lines of
    /// a multi-line event skip the general per-line path.
    fn note_following_data_lines(&mut self) {
        // The first byte alone tells most other lines apart, blank lines first.
        if self.input.get(self.pos) == Some(&b'd') {
            self.note_data_lines();
        }
    }

    /// Notes `data:` lines of the input for as long as they lie whole in it,
    /// following a line noted in it: none of the general per-line checks can
    /// apply (no BOM, split or over-long line is pending, the block is not
    /// skipped; after a CR at the end of the input nothing is left to read).
    /// A line near a limit is left to the general path.
    #[inline(never)]
    fn note_data_lines(&mut self) {
        let search_line_end = line_end_search();
        while let Some(rest) = self.input[self.pos..].strip_prefix(b"data:") {
            // A data line is seldom empty: no shortcut for a blank one.
            let Some(len) = search_line_end(rest) else {
                return;
            };
            let start = self.pos + b"data:".len();
            let end = start + len;
            let value = start + usize::from(rest[0] == b' ')..end;
            let data_len = self.data_len + value.len() + 1;
            if end - self.pos > self.limits.max_line_length
                || data_len > self.limits.max_event_size
                || self.lines.len() >= MAX_NOTED_LINES
            {
                return;
            }
            self.data_len = data_len;
            self.note_line(value);
            self.pos = self.after_line_end(end);
        }
    }

    /// Adds a line of the input to data that lies in it.
    fn note_line(&mut self, value: Range<usize>) {
        if let Data::Line(first) = &self.data {
            let first = first.clone();
            self.lines.push(first);
            self.data = Data::Lines;
        }
        self.lines.push(value);
    }

    /// Where the line ending at `input[end]` (a CR or LF) is followed; a CR at
    /// the end of the input leaves a LF to skip in the next chunk.
    fn after_line_end(&mut self, end: usize) -> usize {
        if self.input[end] == b'\r' {
            match self.input.get(end + 1) {
                Some(b'\n') => return end + 2,
                Some(_) => {}
                None => self.skip_lf = true,
            }
        }
        end + 1
    }

    /// Makes the data `Data::Text`, for a line that is not in the input.
    fn move_data_to_text(&mut self) {
        match std::mem::take(&mut self.data) {
            Data::Empty => return,
            Data::Line(range) => self.text.extend_from_slice(&self.input[range]),
            Data::Lines => {
                join_ranges(&mut self.text, &self.input, &self.lines);
                self.lines.clear();
            }
            Data::Single(first) => self.text.extend_from_slice(first.as_bytes()),
            Data::Text => {}
        }
        self.data = Data::Text;
    }

    /// The input is about to be dropped: the data that lies in it moves out, and
    /// the buffers kept for the events of this chunk are released.
    fn detach_data(&mut self) {
        match &self.data {
            Data::Line(range) => {
                self.data = Data::Single(decode_range(&self.input, range.clone()));
            }
            Data::Lines => self.move_data_to_text(),
            _ => {}
        }
        self.lines = Vec::new();
        if !matches!(self.data, Data::Text) {
            self.text = Vec::new();
        }
    }

    fn clear_data(&mut self) {
        self.data = Data::Empty;
        self.lines.clear();
        self.text.clear();
    }

    /// A blank line: commits the last event ID, and dispatches the block if it has
    /// data; otherwise the block is discarded here.
    fn end_block(&mut self) -> Step {
        if std::mem::take(&mut self.id_changed) {
            self.last_event_id = self.id_buffer.clone();
        }
        if matches!(self.data, Data::Empty) || self.skipping_block {
            self.clear_data();
            self.data_len = 0;
            self.event_type = default_event_type();
            self.block_retry = None;
            self.skipping_block = false;
            return Step::Next;
        }
        Step::Dispatch
    }

    /// The event of the block that `end_block` dispatched; the block is reset.
    fn take_event(&mut self) -> Event {
        let data_len = std::mem::take(&mut self.data_len);
        let data = match std::mem::take(&mut self.data) {
            Data::Empty => ByteString::new(),
            Data::Line(range) => decode_range(&self.input, range),
            Data::Lines => self.join_lines(data_len - 1),
            Data::Single(data) => data,
            Data::Text => self.take_text(),
        };
        Event::from_parts(
            std::mem::replace(&mut self.event_type, default_event_type()),
            data,
            self.last_event_id.clone(),
            self.block_retry.take(),
        )
    }

    /// The lines of `Data::Lines` joined into one allocation of the exact size,
    /// `len` (each line counted its value and a newline; the last has none).
    /// The list of lines is kept for the next event of this chunk.
    fn join_lines(&mut self, len: usize) -> ByteString {
        let mut joined = Vec::with_capacity(len);
        join_ranges(&mut joined, &self.input, &self.lines);
        if self.pos == self.input.len() {
            self.lines = Vec::new();
        } else {
            self.lines.clear();
        }
        decode_vec(joined)
    }

    /// The joined data, as an exact-size copy so the buffer is reused by the
    /// next event of this chunk. At the end of the input, or when the buffer
    /// grew too large to keep, it is handed over instead: an idle parser holds
    /// no buffer.
    fn take_text(&mut self) -> ByteString {
        if self.pos == self.input.len() || self.text.capacity() > MAX_RETAINED_TEXT {
            return decode_vec(std::mem::take(&mut self.text));
        }
        // A clone is allocated at exactly the text's length.
        let data = decode_vec(self.text.clone());
        self.text.clear();
        data
    }
}

/// Appends `input[range]` for each range, separated by newlines.
fn join_ranges(joined: &mut Vec<u8>, input: &[u8], ranges: &[Range<usize>]) {
    let Some((first, rest)) = ranges.split_first() else {
        return;
    };
    joined.extend_from_slice(&input[first.clone()]);
    for range in rest {
        joined.push(b'\n');
        joined.extend_from_slice(&input[range.clone()]);
    }
}

/// Decodes `bytes` with U+FFFD for each invalid sequence, without copying when
/// they are valid.
///
/// Decoding joined lines gives the same text as joining decoded lines: the
/// newlines between them are ASCII, which always ends an invalid sequence.
fn decode_vec(bytes: Vec<u8>) -> ByteString {
    match String::from_utf8(bytes) {
        Ok(text) => ByteString::from(text),
        Err(error) => ByteString::from(String::from_utf8_lossy(error.as_bytes()).into_owned()),
    }
}

/// Decodes a field value that is usually short (an ID, an event type): inline
/// when it fits, so copies of it cost no reference count.
fn decode_short(bytes: &[u8]) -> SmolStr {
    match std::str::from_utf8(bytes) {
        Ok(text) => SmolStr::new(text),
        Err(_) => SmolStr::new(String::from_utf8_lossy(bytes)),
    }
}

/// Decodes `buffer[range]` with one validation and one reference count, with
/// U+FFFD for each invalid sequence.
///
/// Decoding per field value gives the same text as decoding the whole stream
/// first: values are delimited by ASCII bytes, which always end an invalid sequence.
fn decode_range(buffer: &Bytes, range: Range<usize>) -> ByteString {
    match ByteString::try_from(buffer.slice(range.clone())) {
        Ok(text) => text,
        Err(_) => ByteString::from(String::from_utf8_lossy(&buffer[range]).into_owned()),
    }
}

/// The first CR or LF.
#[inline(always)]
fn find_line_end(input: &[u8]) -> Option<usize> {
    // Every event ends with a blank line: answer that one without a search.
    if let Some(b'\n' | b'\r') = input.first() {
        return Some(0);
    }
    line_end_search()(input)
}

/// A search for the first CR or LF. Taken once before a loop, it spares the
/// loop the check that the searcher is set up.
#[inline(always)]
fn line_end_search() -> impl Fn(&[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    let avx2 = avx2_line_ends();
    move |input| {
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = avx2 {
            return avx2.find(input);
        }
        memchr::memchr2(b'\n', b'\r', input)
    }
}

/// memchr's AVX2 searcher for CR and LF, when the CPU has AVX2. Called directly,
/// it spares the CPU feature dispatch and the needle setup that
/// `memchr::memchr2` repeats for every line; held once per process, it costs
/// no memory per parser.
#[cfg(target_arch = "x86_64")]
fn avx2_line_ends() -> Option<&'static memchr::arch::x86_64::avx2::memchr::Two> {
    static SEARCHER: std::sync::OnceLock<Option<memchr::arch::x86_64::avx2::memchr::Two>> =
        std::sync::OnceLock::new();
    SEARCHER
        .get_or_init(|| memchr::arch::x86_64::avx2::memchr::Two::new(b'\n', b'\r'))
        .as_ref()
}

/// A `retry:` value counts only if it is one or more ASCII digits. Values beyond
/// `u64` saturate rather than overflow.
fn parse_retry(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |millis, digit| {
        millis
            .saturating_mul(10)
            .saturating_add(u64::from(digit - b'0'))
    }))
}

#[cfg(test)]
mod tests;
