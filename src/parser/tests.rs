//! Table tests for the parser: every rule of the spec, every line ending, every split.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    E(String, String, String, Option<u64>),
    C(String),
    R(u64),
    Line(usize),
    Size(usize),
}

fn ev(event_type: &str, data: &str, id: &str) -> Out {
    Out::E(event_type.into(), data.into(), id.into(), None)
}

fn drain(parser: &mut Parser, out: &mut Vec<Out>) {
    while let Some(item) = parser.next_frame() {
        out.push(match item {
            Ok(Frame::Event(e)) => Out::E(
                e.event_type().into(),
                e.data().into(),
                e.id().into(),
                e.retry().map(|d| d.as_millis() as u64),
            ),
            Ok(Frame::Comment(text)) => Out::C(text),
            Ok(Frame::Retry(delay)) => Out::R(delay.as_millis() as u64),
            Err(ParseError::LineTooLong { limit }) => Out::Line(limit),
            Err(ParseError::EventTooLarge { limit }) => Out::Size(limit),
        });
    }
}

fn parse_chunks_with(limits: Limits, chunks: &[&[u8]]) -> Vec<Out> {
    let mut parser = Parser::with_limits(limits);
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(Bytes::copy_from_slice(chunk));
        drain(&mut parser, &mut out);
    }
    parser.finish();
    drain(&mut parser, &mut out);
    out
}

/// The next frame, which must be an event.
fn next_event(parser: &mut Parser) -> Event {
    match parser.next_frame() {
        Some(Ok(Frame::Event(event))) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Parses `input` whole, then split at every single point, then byte by byte, and
/// checks that all agree before returning the frames.
fn parse(input: &[u8]) -> Vec<Out> {
    let whole = parse_chunks_with(Limits::default(), &[input]);
    for split in 0..=input.len() {
        let (a, b) = input.split_at(split);
        assert_eq!(
            parse_chunks_with(Limits::default(), &[a, b]),
            whole,
            "split at {split} of {input:?}"
        );
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(parse_chunks_with(Limits::default(), &bytes), whole);
    whole
}

#[test]
fn line_endings() {
    for ending in ["\n", "\r", "\r\n"] {
        let input = format!("data: a{ending}data: b{ending}{ending}data: c{ending}{ending}");
        assert_eq!(
            parse(input.as_bytes()),
            vec![ev("message", "a\nb", ""), ev("message", "c", "")],
            "ending {ending:?}"
        );
    }
}

#[test]
fn mixed_line_endings_and_cr_lf_pairs() {
    // "\r\n" is one ending; "\n\r" is two; "\r\r" is two.
    assert_eq!(parse(b"data: a\r\n\r\n"), vec![ev("message", "a", "")]);
    assert_eq!(
        parse(b"data: a\n\rdata: b\n\n"),
        vec![ev("message", "a", ""), ev("message", "b", "")]
    );
    assert_eq!(
        parse(b"data: a\r\rdata: b\r\r"),
        vec![ev("message", "a", ""), ev("message", "b", "")]
    );
}

#[test]
fn cr_split_from_lf_across_chunks_is_one_ending() {
    let out = parse_chunks_with(
        Limits::default(),
        &[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"],
    );
    assert_eq!(out, vec![ev("message", "a\nb", "")]);
}

#[test]
fn lone_cr_at_end_of_stream_ends_the_line() {
    assert_eq!(parse(b"data: a\r\r"), vec![ev("message", "a", "")]);
    assert_eq!(parse(b"data: a\n\r"), vec![ev("message", "a", "")]);
}

#[test]
fn unicode_line_separators_are_content() {
    let input = "data: a\u{2028}b\u{2029}c\u{85}d\u{b}e\u{c}f\n\n";
    assert_eq!(
        parse(input.as_bytes()),
        vec![ev("message", "a\u{2028}b\u{2029}c\u{85}d\u{b}e\u{c}f", "")]
    );
}

#[test]
fn bom_stripped_once_at_start_only() {
    assert_eq!(
        parse(b"\xEF\xBB\xBFdata: a\n\n"),
        vec![ev("message", "a", "")]
    );
    // A second BOM is content: the line's field name is then "\u{FEFF}data".
    assert_eq!(parse(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n"), vec![]);
    assert_eq!(
        parse(b"data: \xEF\xBB\xBFa\n\n"),
        vec![ev("message", "\u{FEFF}a", "")]
    );
    // A BOM later in the stream is content too.
    assert_eq!(
        parse(b"data: a\n\n\xEF\xBB\xBFdata: b\n\n"),
        vec![ev("message", "a", "")]
    );
}

#[test]
fn bom_after_empty_first_chunk_and_partial_bom_prefix() {
    let out = parse_chunks_with(
        Limits::default(),
        &[b"", b"\xEF", b"", b"\xBB", b"\xBFdata: a\n\n"],
    );
    assert_eq!(out, vec![ev("message", "a", "")]);
    // A BOM prefix that turns out not to be a BOM is content (decoded to U+FFFD).
    assert_eq!(parse(b"\xEF\xBBdata: a\n\n"), vec![]);
    assert_eq!(
        parse(b"\xEF\xBB\n\ndata: a\n\n"),
        vec![ev("message", "a", "")]
    );
}

#[test]
fn invalid_utf8_is_replaced_never_stalls() {
    assert_eq!(
        parse(b"data: a\xFFb\xC3\n\n"),
        vec![ev("message", "a\u{FFFD}b\u{FFFD}", "")]
    );
    // A truncated 3-byte sequence is one replacement, per the Encoding Standard.
    assert_eq!(
        parse(b"data: \xE2\x82z\n\n"),
        vec![ev("message", "\u{FFFD}z", "")]
    );
    assert_eq!(
        parse(b"event: \xFF\ndata\n\n"),
        vec![ev("\u{FFFD}", "", "")]
    );
}

#[test]
fn multibyte_character_split_across_chunks_is_decoded_whole() {
    let input = "data: h\u{e9}\u{20ac}\u{1F600}!\n\n".as_bytes();
    // `parse` checks every split point, including inside each character.
    assert_eq!(
        parse(input),
        vec![ev("message", "h\u{e9}\u{20ac}\u{1F600}!", "")]
    );
}

#[test]
fn nul_is_kept_in_data_and_event_type() {
    assert_eq!(
        parse(b"event: a\0b\ndata: c\0d\n\n"),
        vec![ev("a\0b", "c\0d", "")]
    );
}

#[test]
fn comments_are_reported_not_dispatched() {
    assert_eq!(
        parse(b": keep-alive\n:raw\n:  two\ndata: x\n\n"),
        vec![
            Out::C("keep-alive".into()),
            Out::C("raw".into()),
            Out::C(" two".into()),
            ev("message", "x", "")
        ]
    );
    // A block of only comments dispatches nothing.
    assert_eq!(parse(b": hi\n\n"), vec![Out::C("hi".into())]);
}

#[test]
fn field_parsing() {
    // No colon: the whole line is the field name and the value is empty.
    assert_eq!(parse(b"data\n\n"), vec![ev("message", "", "")]);
    assert_eq!(parse(b"data:\n\n"), vec![ev("message", "", "")]);
    // Only the first colon splits; exactly one space is removed.
    assert_eq!(parse(b"data: a: b\n\n"), vec![ev("message", "a: b", "")]);
    assert_eq!(parse(b"data:  two\n\n"), vec![ev("message", " two", "")]);
    assert_eq!(parse(b"data:\tx\n\n"), vec![ev("message", "\tx", "")]);
    // Field names are case-sensitive; unknown fields are ignored.
    assert_eq!(parse(b"Data: a\nDATA: b\nfoo: c\ndata : d\n\n"), vec![]);
    assert_eq!(parse(b"foo: c\ndata: d\n\n"), vec![ev("message", "d", "")]);
}

#[test]
fn data_lines_join_and_only_final_lf_removed() {
    assert_eq!(
        parse(b"data: a\ndata:\ndata: b\n\n"),
        vec![ev("message", "a\n\nb", "")]
    );
    assert_eq!(parse(b"data\ndata\n\n"), vec![ev("message", "\n", "")]);
    assert_eq!(parse(b"data: a\ndata\n\n"), vec![ev("message", "a\n", "")]);
}

#[test]
fn empty_data_buffer_dispatches_nothing() {
    assert_eq!(parse(b"event: x\n\n"), vec![]);
    assert_eq!(parse(b"\n\n\n"), vec![]);
}

#[test]
fn event_type_resets_after_every_blank_line() {
    assert_eq!(
        parse(b"event: a\ndata: 1\n\ndata: 2\n\nevent: b\n\ndata: 3\n\nevent:\ndata: 4\n\n"),
        vec![
            ev("a", "1", ""),
            ev("message", "2", ""),
            ev("message", "3", ""),
            ev("message", "4", "")
        ]
    );
    // The last `event:` of a block wins, an empty one included.
    assert_eq!(
        parse(b"event: a\nevent:\ndata: 5\n\nevent:\nevent: b\ndata: 6\n\n"),
        vec![ev("message", "5", ""), ev("b", "6", "")]
    );
}

#[test]
fn id_semantics() {
    assert_eq!(
        parse(b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 2\n\ndata: d\n\n"),
        vec![
            ev("message", "a", "1"),
            ev("message", "b", "1"),
            ev("message", "c", ""),
            ev("message", "d", "2")
        ]
    );
    // An id containing NUL is ignored entirely.
    assert_eq!(
        parse(b"id: 1\n\nid: 2\0x\ndata: a\n\n"),
        vec![ev("message", "a", "1")]
    );
    // Non-ASCII and control characters other than NUL are kept.
    assert_eq!(
        parse(b"id: \x01\t\xC3\xA9\ndata: a\n\n"),
        vec![ev("message", "a", "\u{1}\t\u{e9}")]
    );
}

#[test]
fn id_changes_only_when_a_blank_line_is_processed() {
    let mut parser = Parser::new();
    parser.feed(Bytes::from_static(b"id: 1\n\nid: 2\ndata: x\n"));
    let mut out = Vec::new();
    drain(&mut parser, &mut out);
    assert_eq!(out, vec![]);
    assert_eq!(parser.last_event_id(), "1");
    parser.finish();
    // The unterminated block's id never counted, and does not leak into the next stream.
    assert_eq!(parser.last_event_id(), "1");
    parser.feed(Bytes::from_static(b"data: y\n\n"));
    drain(&mut parser, &mut out);
    assert_eq!(out, vec![ev("message", "y", "1")]);
}

#[test]
fn last_event_id_survives_a_new_stream() {
    let mut parser = Parser::new();
    parser.set_last_event_id("41");
    parser.feed(Bytes::from_static(b"data: a\n\n"));
    let mut out = Vec::new();
    drain(&mut parser, &mut out);
    assert_eq!(out, vec![ev("message", "a", "41")]);
}

#[test]
fn retry_rules() {
    assert_eq!(
        parse(b"retry: 1500\n\n"),
        vec![Out::R(1500)],
        "a retry-only block takes effect without dispatching"
    );
    assert_eq!(
        parse(b"retry: 10\ndata: a\n\n"),
        vec![
            Out::R(10),
            Out::E("message".into(), "a".into(), "".into(), Some(10))
        ]
    );
    for bad in [
        &b"retry: -1\n\n"[..],
        b"retry: +1\n\n",
        b"retry:  1\n\n",
        b"retry: 1 \n\n",
        b"retry: 1ms\n\n",
        b"retry: 1_000\n\n",
        b"retry: 1.5\n\n",
        b"retry:\n\n",
        b"retry\n\n",
        "retry: \u{0661}\n\n".as_bytes(),
    ] {
        assert_eq!(parse(bad), vec![], "{:?}", String::from_utf8_lossy(bad));
    }
    assert_eq!(parse(b"retry: 0\n\n"), vec![Out::R(0)]);
    assert_eq!(parse(b"retry:7\n\n"), vec![Out::R(7)]);
    let huge = format!("retry: {}\n\n", "9".repeat(100));
    assert_eq!(parse(huge.as_bytes()), vec![Out::R(u64::MAX)]);
    // The block's retry belongs to that block only.
    assert_eq!(
        parse(b"retry: 5\ndata: a\n\ndata: b\n\n"),
        vec![
            Out::R(5),
            Out::E("message".into(), "a".into(), "".into(), Some(5)),
            ev("message", "b", "")
        ]
    );
}

#[test]
fn unfinished_block_or_line_is_discarded_at_end() {
    assert_eq!(parse(b"data: a\n"), vec![]);
    assert_eq!(parse(b"data: a"), vec![]);
    assert_eq!(parse(b"data: a\n\ndata: b"), vec![ev("message", "a", "")]);
}

#[test]
fn single_line_data_is_not_copied() {
    let input = Bytes::from_static(b"data: zero-copy\n\n");
    let mut parser = Parser::new();
    parser.feed(input.clone());
    let event = next_event(&mut parser);
    assert_eq!(event.data().as_ptr(), input[6..].as_ptr());
}

#[test]
fn multi_line_buffer_is_reused_within_a_chunk_and_released_at_its_end() {
    let mut parser = Parser::new();
    parser.feed(Bytes::from_static(
        b"data: a\ndata: b\n\ndata: c\ndata: d\n\n",
    ));
    let first = next_event(&mut parser);
    assert_eq!(first.data(), "a\nb");
    assert!(parser.lines.capacity() > 0, "kept for the next event");
    let second = next_event(&mut parser);
    assert_eq!(second.data(), "c\nd");
    assert_eq!(parser.lines.capacity(), 0, "an idle parser holds no buffer");
}

#[test]
fn joined_text_of_split_lines_is_reused_within_a_chunk_and_released_at_its_end() {
    let mut parser = Parser::new();
    parser.feed(Bytes::from_static(b"data: a\ndata: "));
    assert!(parser.next_frame().is_none());
    parser.feed(Bytes::from_static(b"b\n\ndata: c\n\n"));
    let first = next_event(&mut parser);
    assert_eq!(first.data(), "a\nb");
    assert!(parser.text.capacity() > 0, "kept for the next event");
    let second = next_event(&mut parser);
    assert_eq!(second.data(), "c");
    assert!(parser.next_frame().is_none());
    assert_eq!(parser.text.capacity(), 0, "an idle parser holds no buffer");
}

#[test]
fn an_event_of_many_lines_is_joined_as_it_arrives_so_its_line_list_stays_small() {
    let lines = 5000;
    let mut input = "data: x\n".repeat(lines);
    input.push('\n');
    let mut parser = Parser::new();
    parser.feed(Bytes::from(input.clone() + &input));
    let event = next_event(&mut parser);
    assert_eq!(event.data(), vec!["x"; lines].join("\n"));
    assert!(
        parser.lines.capacity() <= 2 * MAX_NOTED_LINES,
        "{}",
        parser.lines.capacity()
    );
    let second = next_event(&mut parser);
    assert_eq!(second.data(), event.data());
}

#[test]
fn over_long_line_is_reported_once_skipped_and_parsing_resumes() {
    let limits = Limits::default().max_line_length(8);
    let long: &[&[u8]] = &[
        b"data: a\n",
        b"data: 0123",
        b"456789",
        b"abcdef\n",
        b"\n",
        b"data: ok\n\n",
    ];
    assert_eq!(
        parse_chunks_with(limits, long),
        vec![Out::Line(8), ev("message", "ok", "")]
    );
    // The same line in a single chunk.
    assert_eq!(
        parse_chunks_with(limits, &[b"data: 0123456789\n\ndata: ok\n\n"]),
        vec![Out::Line(8), ev("message", "ok", "")]
    );
    // Exactly at the limit is fine.
    assert_eq!(
        parse_chunks_with(limits, &[b"data: 12", b"\n\n"]),
        vec![ev("message", "12", "")]
    );
}

#[test]
fn endless_line_keeps_memory_bounded() {
    let mut parser = Parser::with_limits(Limits::default().max_line_length(1024));
    let chunk = Bytes::from(vec![b'x'; 8192]);
    let mut errors = 0;
    for _ in 0..1000 {
        parser.feed(chunk.clone());
        while let Some(item) = parser.next_frame() {
            assert!(item.is_err());
            errors += 1;
        }
        assert!(parser.partial.capacity() <= 1024);
    }
    assert_eq!(errors, 1);
    assert_eq!(parser.overlong_line_length(), 1000 * 8192);
    // The line ends, a blank line ends its (skipped) block, then parsing resumes.
    parser.feed(Bytes::from_static(b"\n\ndata: back\n\n"));
    let mut out = Vec::new();
    drain(&mut parser, &mut out);
    assert_eq!(parser.overlong_line_length(), 0);
    assert_eq!(out, vec![ev("message", "back", "")]);
}

#[test]
fn oversized_event_is_reported_once_and_skipped_but_keeps_its_id() {
    let limits = Limits::default().max_event_size(10);
    assert_eq!(
        parse_chunks_with(
            limits,
            &[b"id: 1\ndata: 12345\ndata: 67890\ndata: more\ndata: more\n\ndata: ok\n\n"]
        ),
        vec![Out::Size(10), ev("message", "ok", "1")]
    );
}

#[test]
fn feeding_before_draining_keeps_the_data_noted_so_far() {
    // The comment returns while data lines of the input are only noted; the
    // next chunk then replaces that input.
    for (first, data) in [
        (&b"data: a\n:c\n"[..], "a\nb"),
        (&b"data: a\ndata: \xFFz\n:c\n"[..], "a\n\u{FFFD}z\nb"),
    ] {
        let mut parser = Parser::new();
        parser.feed(Bytes::copy_from_slice(first));
        assert!(matches!(parser.next_frame(), Some(Ok(Frame::Comment(_)))));
        parser.feed(Bytes::from_static(b"data: b\n"));
        parser.feed(Bytes::from_static(b"\n"));
        let mut out = Vec::new();
        drain(&mut parser, &mut out);
        assert_eq!(out, vec![ev("message", data, "")]);
    }
}

#[test]
fn data_lines_that_follow_one_another_keep_every_rule() {
    // Over the line limit right after another data line of the same chunk.
    assert_eq!(
        parse_chunks_with(
            Limits::default().max_line_length(8),
            &[b"data: a\ndata: 0123456789\n\ndata: ok\n\n"]
        ),
        vec![Out::Line(8), ev("message", "ok", "")]
    );
    // Lone CRs, and a CRLF split after its CR, between data lines.
    assert_eq!(
        parse(b"data: a\rdata: b\r\rdata: c\n\n"),
        vec![ev("message", "a\nb", ""), ev("message", "c", "")]
    );
    assert_eq!(
        parse_chunks_with(
            Limits::default(),
            &[b"data: a\r\ndata: b\r", b"\ndata: c\rdata: d\r\n\r\n"]
        ),
        vec![ev("message", "a\nb\nc\nd", "")]
    );
}
