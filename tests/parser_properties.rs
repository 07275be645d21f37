//! Property tests: the parser agrees with an independent reference model of the
//! WHATWG rules, whatever the chunking of the input.

use bytes::Bytes;
use everstream::{Frame, Parser};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Event {
        event_type: String,
        data: String,
        id: String,
        retry: Option<u64>,
    },
    Comment(String),
    Retry(u64),
}

/// A deliberately naive model: decode the whole stream first, split it into lines
/// with `chars()`, then interpret each line exactly as the spec's prose says.
fn reference(input: &[u8]) -> Vec<Out> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let text = String::from_utf8_lossy(input);
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines.push(std::mem::take(&mut current));
            }
            '\n' => lines.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    // `current` holds an unterminated line: discarded.

    let mut out = Vec::new();
    let (mut data, mut event_type, mut id_buffer) = (String::new(), String::new(), String::new());
    let mut block_retry = None;
    for line in lines {
        if line.is_empty() {
            let last_id = id_buffer.clone();
            if !data.is_empty() {
                if data.ends_with('\n') {
                    data.pop();
                }
                out.push(Out::Event {
                    event_type: if event_type.is_empty() {
                        "message".into()
                    } else {
                        event_type.clone()
                    },
                    data: data.clone(),
                    id: last_id,
                    retry: block_retry,
                });
            }
            data.clear();
            event_type.clear();
            block_retry = None;
            continue;
        }
        if let Some(comment) = line.strip_prefix(':') {
            out.push(Out::Comment(
                comment.strip_prefix(' ').unwrap_or(comment).to_owned(),
            ));
            continue;
        }
        let (name, value) = match line.find(':') {
            Some(i) => (
                &line[..i],
                line[i + 1..].strip_prefix(' ').unwrap_or(&line[i + 1..]),
            ),
            None => (line.as_str(), ""),
        };
        match name {
            "event" => event_type = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => id_buffer = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                let millis = value.parse::<u64>().unwrap_or(u64::MAX);
                block_retry = Some(millis);
                out.push(Out::Retry(millis));
            }
            _ => {}
        }
    }
    out
}

fn parse_in_chunks(input: &[u8], cuts: &[usize]) -> Vec<Out> {
    let mut parser = Parser::new();
    let mut out = Vec::new();
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    ends.sort_unstable();
    ends.push(input.len());
    for end in ends {
        parser.feed(Bytes::copy_from_slice(&input[start..end]));
        start = end;
        while let Some(frame) = parser.next_frame() {
            out.push(match frame.expect("default limits are never hit here") {
                Frame::Event(e) => Out::Event {
                    event_type: e.event_type().into(),
                    data: e.data().into(),
                    id: e.id().into(),
                    retry: e.retry().map(|d| d.as_millis() as u64),
                },
                Frame::Comment(text) => Out::Comment(text),
                Frame::Retry(delay) => Out::Retry(delay.as_millis() as u64),
                other => panic!("unexpected frame {other:?}"),
            });
        }
    }
    parser.finish();
    assert!(parser.next_frame().is_none());
    out
}

fn token() -> impl Strategy<Value = &'static [u8]> {
    prop::sample::select(vec![
        &b"data"[..],
        b"data:",
        b"data: ",
        b"event: ",
        b"event:",
        b"id: ",
        b"id",
        b"retry: ",
        b"retry:",
        b":",
        b": ",
        b"\n",
        b"\n",
        b"\n",
        b"\r",
        b"\r\n",
        b" ",
        b"x",
        b"abc",
        b"\xC3\xA9",
        b"\xE2\x82\xAC",
        b"\xF0\x9F\x98\x80",
        b"\xEF\xBB\xBF",
        b"\xFF",
        b"\xE2\x82",
        b"\0",
        b"1",
        b"42",
        b"99999999999999999999999",
        b"-1",
        b"Data",
        b"\t",
        b"\xE2\x80\xA8",
    ])
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(token(), 0..80).prop_map(|tokens| tokens.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_chunking_matches_the_reference(input in input(), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        prop_assert_eq!(parse_in_chunks(&input, &cuts), reference(&input));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_chunking_does_not_matter(
        input in prop::collection::vec(any::<u8>(), 0..300),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        prop_assert_eq!(parse_in_chunks(&input, &cuts), parse_in_chunks(&input, &[]));
        prop_assert_eq!(parse_in_chunks(&input, &[]), reference(&input));
    }
}
