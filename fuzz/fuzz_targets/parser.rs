//! Fuzzes the sans-IO parser: any bytes, any chunking, small limits.
//!
//! Input layout: `[flags, line, event, steps, step.., body..]`.
//!
//! - `flags` bits 0-1 and 2-3 pick how `line` and `event` become the two limits
//!   (default, `0..=255`, `1..=4081` in steps of 16, or `0..=7`); bit 4 reuses the
//!   parser for a second stream after `finish()`.
//! - `steps % 17` plan bytes follow (fewer if the input is short). Each one feeds a
//!   chunk of `step & 0x3f` bytes (0 is an empty chunk, 63 the rest of the body) and
//!   then drains all frames (`step >> 6` is 0 or 3), none (1) or one (2). The plan
//!   repeats until the body is used up; no plan feeds the body whole.
//!
//! Invariants (a panic on violation is the crash libFuzzer reports):
//!
//! 1. The chunked run and the whole-body run yield the same frames and the same
//!    last event ID, limit errors included: the parser promises that any chunking of
//!    the same bytes yields the same frames.
//! 2. Both equal a small reference model written straight from the parser's docs
//!    and the WHATWG rules, working on the whole body at once. It fixes which
//!    frames a limit error suppresses: the block that hit a limit dispatches no
//!    event, while its comments and `retry:` frames still come out.
//! 3. When no limit was hit, both also equal a model that decodes the whole stream
//!    as UTF-8 first, as the spec does (the parser decodes per field value).
//! 4. Every event's data fits `max_event_size` (counting each U+FFFD as at least
//!    one input byte), every comment fits `max_line_length`, errors carry the
//!    configured limit, `last_event_id()` never contains NUL and equals the ID of
//!    the event just yielded, and `finish()` leaves nothing to yield.
//! 5. After `finish()` the same parser parses a second stream exactly as a fresh
//!    parser given the last event ID with `set_last_event_id` would.
//!
//! Retry frames come only from digit-only values: the model yields them only then.

#![no_main]

use std::time::Duration;

use bytes::Bytes;
use everstream::{Frame, Limits, ParseError, Parser};
use libfuzzer_sys::fuzz_target;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A frame as plain data, so runs compare with `==`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Event {
        event_type: String,
        data: String,
        id: String,
        retry: Option<Duration>,
    },
    Comment(String),
    Retry(Duration),
    LineTooLong(usize),
    EventTooLarge(usize),
}

/// What one run produced.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    frames: Vec<Out>,
    last_event_id: String,
}

impl Run {
    fn hit_limit(&self) -> bool {
        self.frames
            .iter()
            .any(|out| matches!(out, Out::LineTooLong(_) | Out::EventTooLarge(_)))
    }
}

/// The input split into its parts.
struct Plan<'a> {
    limits: Limits,
    steps: &'a [u8],
    body: &'a [u8],
    reuse: bool,
}

fn limit(mode: u8, byte: u8, default: usize) -> usize {
    match mode & 3 {
        0 => default,
        1 => usize::from(byte),
        2 => 1 + usize::from(byte) * 16,
        _ => usize::from(byte % 8),
    }
}

fn plan(input: &[u8]) -> Option<Plan<'_>> {
    let (&[flags, line, event, steps], rest) = input.split_first_chunk::<4>()?;
    let defaults = Limits::default();
    let limits = Limits::default()
        .max_line_length(limit(flags, line, defaults.line_length()))
        .max_event_size(limit(flags >> 2, event, defaults.event_size()));
    let (steps, body) = rest.split_at(usize::from(steps % 17).min(rest.len()));
    Some(Plan {
        limits,
        steps,
        body,
        reuse: flags & 0x10 != 0,
    })
}

/// Counts each U+FFFD as one byte: the fewest input bytes that decode to `text`.
fn min_input_len(text: &str) -> usize {
    text.chars()
        .map(|c| if c == '\u{FFFD}' { 1 } else { c.len_utf8() })
        .sum()
}

/// Converts one frame and checks the invariants that hold frame by frame.
fn check(parser: &Parser, item: Result<Frame, ParseError>) -> Out {
    let limits = parser.limits();
    let id = parser.last_event_id();
    assert!(!id.contains('\0'), "last_event_id {id:?} contains NUL");
    match item {
        Ok(Frame::Event(event)) => {
            assert_eq!(event.id(), id, "an event's ID is the last event ID");
            assert!(
                min_input_len(event.data()) < limits.event_size(),
                "data {:?} larger than the event limit {}",
                event.data(),
                limits.event_size()
            );
            Out::Event {
                event_type: event.event_type().to_owned(),
                data: event.data().to_owned(),
                id: event.id().to_owned(),
                retry: event.retry(),
            }
        }
        Ok(Frame::Comment(text)) => {
            assert!(
                min_input_len(&text) < limits.line_length(),
                "comment {text:?} longer than the line limit {}",
                limits.line_length()
            );
            Out::Comment(text)
        }
        Ok(Frame::Retry(delay)) => Out::Retry(delay),
        Err(ParseError::LineTooLong { limit }) => {
            assert_eq!(limit, limits.line_length());
            Out::LineTooLong(limit)
        }
        Err(ParseError::EventTooLarge { limit }) => {
            assert_eq!(limit, limits.event_size());
            Out::EventTooLarge(limit)
        }
        Ok(other) => panic!("unknown frame {other:?}"),
        Err(other) => panic!("unknown error {other:?}"),
    }
}

/// Drains up to `max` frames.
fn drain(parser: &mut Parser, out: &mut Vec<Out>, max: usize) {
    for _ in 0..max {
        let Some(item) = parser.next_frame() else {
            return;
        };
        let frame = check(parser, item);
        out.push(frame);
    }
}

/// Feeds `body` following `steps` (whole when there are none), then finishes.
fn feed(parser: &mut Parser, steps: &[u8], body: &[u8]) -> Vec<Out> {
    let mut out = Vec::new();
    if steps.is_empty() {
        parser.feed(Bytes::copy_from_slice(body));
    } else {
        let mut rest = body;
        let mut idle = 0;
        for &step in steps.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let mut len = match step & 0x3f {
                0x3f => rest.len(),
                n => usize::from(n).min(rest.len()),
            };
            // A plan of only empty chunks would never end.
            idle = if len == 0 { idle + 1 } else { 0 };
            if idle > steps.len() {
                len = rest.len();
            }
            let (chunk, tail) = rest.split_at(len);
            rest = tail;
            parser.feed(Bytes::copy_from_slice(chunk));
            match step >> 6 {
                1 => {}
                2 => drain(parser, &mut out, 1),
                _ => drain(parser, &mut out, usize::MAX),
            }
        }
    }
    drain(parser, &mut out, usize::MAX);
    let before = parser.last_event_id().to_owned();
    parser.finish();
    assert_eq!(parser.last_event_id(), before, "finish() keeps the ID");
    assert!(parser.next_frame().is_none(), "finish() left a frame");
    out
}

fn run(limits: Limits, initial_id: &str, steps: &[u8], body: &[u8]) -> Run {
    let mut parser = Parser::with_limits(limits);
    if !initial_id.is_empty() {
        parser.set_last_event_id(initial_id);
    }
    let frames = feed(&mut parser, steps, body);
    Run {
        frames,
        last_event_id: parser.last_event_id().to_owned(),
    }
}

/// Splits into complete lines (CRLF, LF or CR) and the unterminated rest.
fn lines<T: PartialEq + Copy>(input: &[T], cr: T, lf: T) -> (Vec<&[T]>, &[T]) {
    let mut lines = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < input.len() {
        if input[i] == lf || input[i] == cr {
            lines.push(&input[start..i]);
            i += if input[i] == cr && input.get(i + 1) == Some(&lf) {
                2
            } else {
                1
            };
            start = i;
        } else {
            i += 1;
        }
    }
    (lines, &input[start..])
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The reference model on bytes, with limits, written from the parser's docs: a
/// line over `max_line_length` is reported and skipped and so is its block; data
/// over `max_event_size` (values plus one newline each) is reported once and its
/// block skipped; a skipped block still yields its comments and retries but
/// dispatches nothing; an unterminated last line is dropped (reported if too long).
fn model(limits: Limits, initial_id: &str, body: &[u8]) -> Run {
    let (max_line, max_event) = (limits.line_length(), limits.event_size());
    let stripped = body.strip_prefix(BOM).unwrap_or(body);
    let (complete, unterminated) = lines(stripped, b'\r', b'\n');
    let mut frames = Vec::new();
    let mut last_event_id = initial_id.to_owned();
    let mut id_buffer = last_event_id.clone();
    let mut data: Option<Vec<u8>> = None;
    let mut data_len = 0;
    let mut event_type: Option<&[u8]> = None;
    let mut retry = None;
    let mut skipping = false;
    for line in complete {
        if line.len() > max_line {
            frames.push(Out::LineTooLong(max_line));
            skipping = true;
            continue;
        }
        if line.is_empty() {
            last_event_id = id_buffer.clone();
            let data = data.take();
            let event_type = event_type.take();
            let retry = retry.take();
            if let (Some(data), false) = (data, std::mem::take(&mut skipping)) {
                frames.push(Out::Event {
                    event_type: match event_type {
                        Some(name) if !name.is_empty() => lossy(name),
                        _ => "message".to_owned(),
                    },
                    data: lossy(&data),
                    id: last_event_id.clone(),
                    retry,
                });
            }
            data_len = 0;
            continue;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"" => frames.push(Out::Comment(lossy(value))),
            b"data" if !skipping => {
                data_len += value.len() + 1;
                if data_len > max_event {
                    frames.push(Out::EventTooLarge(max_event));
                    data = None;
                    skipping = true;
                } else if let Some(data) = &mut data {
                    data.push(b'\n');
                    data.extend_from_slice(value);
                } else {
                    data = Some(value.to_vec());
                }
            }
            b"event" => event_type = Some(value),
            b"id" if !value.contains(&0) => id_buffer = lossy(value),
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let millis = value.iter().fold(0u64, |millis, digit| {
                    millis
                        .saturating_mul(10)
                        .saturating_add(u64::from(digit - b'0'))
                });
                retry = Some(Duration::from_millis(millis));
                frames.push(Out::Retry(Duration::from_millis(millis)));
            }
            _ => {}
        }
    }
    // A body that is still a possible BOM start never reached the line splitter.
    let undecided_bom = body.len() < BOM.len() && BOM.starts_with(body);
    if unterminated.len() > max_line && !undecided_bom {
        frames.push(Out::LineTooLong(max_line));
    }
    Run {
        frames,
        last_event_id,
    }
}

/// The spec's own order without limits: decode the whole stream as UTF-8 (one
/// leading BOM removed), then split lines and interpret fields as text.
fn spec_model(initial_id: &str, body: &[u8]) -> Run {
    let text = lossy(body.strip_prefix(BOM).unwrap_or(body));
    let chars: Vec<char> = text.chars().collect();
    let (complete, _) = lines(&chars, '\r', '\n');
    let mut frames = Vec::new();
    let mut last_event_id = initial_id.to_owned();
    let mut id_buffer = last_event_id.clone();
    let mut data = String::new();
    let mut event_type = String::new();
    let mut retry = None;
    for line in complete {
        let line: String = line.iter().collect();
        if line.is_empty() {
            last_event_id = id_buffer.clone();
            let retry = retry.take();
            let event_type = std::mem::take(&mut event_type);
            if !data.is_empty() {
                data.pop(); // the spec's trailing LF
                frames.push(Out::Event {
                    event_type: if event_type.is_empty() {
                        "message".to_owned()
                    } else {
                        event_type
                    },
                    data: std::mem::take(&mut data),
                    id: last_event_id.clone(),
                    retry,
                });
            }
            continue;
        }
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match name {
            "" => frames.push(Out::Comment(value.to_owned())),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "event" => event_type = value.to_owned(),
            "id" if !value.contains('\0') => id_buffer = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                let millis = value.bytes().fold(0u64, |millis, digit| {
                    millis
                        .saturating_mul(10)
                        .saturating_add(u64::from(digit - b'0'))
                });
                retry = Some(Duration::from_millis(millis));
                frames.push(Out::Retry(Duration::from_millis(millis)));
            }
            _ => {}
        }
    }
    Run {
        frames,
        last_event_id,
    }
}

fuzz_target!(|input: &[u8]| {
    let Some(Plan {
        limits,
        steps,
        body,
        reuse,
    }) = plan(input)
    else {
        return;
    };

    let whole = run(limits, "", &[], body);
    let chunked = run(limits, "", steps, body);
    assert_eq!(chunked, whole, "chunked and whole runs differ");
    assert_eq!(
        whole,
        model(limits, "", body),
        "the parser and the model differ"
    );
    if !whole.hit_limit() {
        assert_eq!(whole, spec_model("", body), "per-field decoding differs");
    }

    if reuse {
        // A second stream on the same parser, after finish(): the ID carries over.
        let mut parser = Parser::with_limits(limits);
        let first = feed(&mut parser, steps, body);
        assert_eq!(first, whole.frames);
        let second = feed(&mut parser, steps, body);
        let fresh = run(limits, &whole.last_event_id, &[], body);
        assert_eq!(
            second, fresh.frames,
            "a reused parser differs from a fresh one"
        );
        assert_eq!(parser.last_event_id(), fresh.last_event_id);
        assert_eq!(
            fresh,
            model(limits, &whole.last_event_id, body),
            "the second stream and the model differ"
        );
    }
});
