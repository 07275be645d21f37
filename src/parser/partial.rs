//! A line split across chunks, checked as UTF-8 piece by piece as it arrives.
//!
//! A split line has to be copied once to become contiguous. While its pieces
//! are valid UTF-8, it is copied into a `String` after a SIMD check of each
//! piece, so the complete line is text without a second, slower check. A
//! character cut between two chunks is held back until its other bytes arrive.
//! Anything else (invalid bytes, a line that ends inside a character) turns
//! the line into plain bytes, decoded with U+FFFD at its end as before.

use std::ops::Range;

use bytes::Bytes;
use bytestring::ByteString;

/// The start of a line whose end has not arrived yet. Never holds a line ending.
#[derive(Debug, Default)]
pub(super) struct PartialLine {
    /// The number of bytes held. Stored, not computed from `repr`: the parser
    /// asks whether it is zero for every line.
    len: usize,
    repr: Repr,
}

#[derive(Debug)]
enum Repr {
    /// Every byte so far is valid UTF-8: `text`, then `cut[..cut_len]`, the
    /// first bytes of a character whose rest has not arrived.
    Text {
        text: String,
        cut: [u8; 4],
        cut_len: u8,
    },
    /// The line holds bytes that are not valid UTF-8 on their own.
    Bytes(Vec<u8>),
}

impl Default for Repr {
    fn default() -> Self {
        Self::Text {
            text: String::new(),
            cut: [0; 4],
            cut_len: 0,
        }
    }
}

/// A complete line that was split across chunks.
#[derive(Debug)]
pub(super) enum JoinedLine {
    /// Checked as it arrived: values are sliced out without another check.
    Text(ByteString),
    /// Decoded per value, with U+FFFD for each invalid sequence.
    Bytes(Bytes),
}

impl Default for JoinedLine {
    fn default() -> Self {
        Self::Bytes(Bytes::new())
    }
}

impl JoinedLine {
    pub(super) fn bytes(&self) -> &Bytes {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Bytes(bytes) => bytes,
        }
    }

    /// The value at `range`, sharing the line's allocation.
    pub(super) fn value(&self, range: Range<usize>) -> ByteString {
        match self {
            // Values start after an ASCII colon or space, so `get` succeeds.
            Self::Text(text) => match text.get(range.clone()) {
                Some(value) => text.slice_ref(value),
                None => super::decode_range(text.as_bytes(), range),
            },
            Self::Bytes(bytes) => super::decode_range(bytes, range),
        }
    }
}

impl PartialLine {
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of bytes held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The bytes allocated.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        match &self.repr {
            Repr::Text { text, .. } => text.capacity(),
            Repr::Bytes(bytes) => bytes.capacity(),
        }
    }

    /// Reserves room for `additional` more bytes.
    pub(super) fn reserve(&mut self, additional: usize) {
        match &mut self.repr {
            Repr::Text { text, .. } => text.reserve(additional),
            Repr::Bytes(bytes) => bytes.reserve(additional),
        }
    }

    /// Appends the next piece of the line.
    pub(super) fn push(&mut self, piece: &[u8]) {
        self.len += piece.len();
        let rest = match &mut self.repr {
            Repr::Bytes(bytes) => {
                bytes.extend_from_slice(piece);
                return;
            }
            Repr::Text { text, cut, cut_len } => match push_text(text, cut, cut_len, piece) {
                Ok(()) => return,
                Err(consumed) => &piece[consumed..],
            },
        };
        let mut bytes = std::mem::take(&mut self.repr).into_bytes();
        bytes.extend_from_slice(rest);
        self.repr = Repr::Bytes(bytes);
    }

    /// The complete line; the partial line is left empty.
    pub(super) fn take_line(&mut self) -> JoinedLine {
        self.len = 0;
        match std::mem::take(&mut self.repr) {
            Repr::Text {
                text, cut_len: 0, ..
            } => JoinedLine::Text(ByteString::from(text)),
            // Including a line that ends inside a character: not valid UTF-8.
            line => JoinedLine::Bytes(Bytes::from(line.into_bytes())),
        }
    }
}

impl Repr {
    /// The bytes held, in the order they arrived.
    fn into_bytes(self) -> Vec<u8> {
        match self {
            Self::Text { text, cut, cut_len } => {
                let mut bytes = text.into_bytes();
                bytes.extend_from_slice(&cut[..usize::from(cut_len)]);
                bytes
            }
            Self::Bytes(bytes) => bytes,
        }
    }
}

/// Appends `piece` to valid text, holding back a character cut at its end.
/// On bytes that are not valid UTF-8, returns how much of `piece` was taken
/// (into `text` or `cut`); nothing of the rest was.
fn push_text(
    text: &mut String,
    cut: &mut [u8; 4],
    cut_len: &mut u8,
    mut piece: &[u8],
) -> Result<(), usize> {
    let mut consumed = 0;
    if *cut_len > 0 {
        let held = usize::from(*cut_len);
        let need = utf8_width(cut[0]).saturating_sub(held);
        let taken = need.min(piece.len());
        cut[held..held + taken].copy_from_slice(&piece[..taken]);
        *cut_len += taken as u8;
        if taken < need {
            // Still cut short; checked once it is whole.
            return Ok(());
        }
        match std::str::from_utf8(&cut[..held + taken]) {
            Ok(character) => text.push_str(character),
            Err(_) => return Err(taken),
        }
        *cut_len = 0;
        piece = &piece[taken..];
        consumed = taken;
    }
    let whole = whole_characters_len(piece);
    match simdutf8::basic::from_utf8(&piece[..whole]) {
        Ok(valid) => text.push_str(valid),
        Err(_) => return Err(consumed),
    }
    let tail = &piece[whole..];
    cut[..tail.len()].copy_from_slice(tail);
    *cut_len = tail.len() as u8;
    Ok(())
}

/// The length of `bytes` without a character cut short at its end: the last
/// lead byte among the final three, if its character needs more bytes than
/// follow it. Bytes that cannot be UTF-8 are left to the check to reject.
fn whole_characters_len(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=len.min(3) {
        let byte = bytes[len - back];
        if byte & 0xC0 != 0x80 {
            return if utf8_width(byte) > back {
                len - back
            } else {
                len
            };
        }
    }
    len
}

/// The length of the character a byte leads, by its high bits (1 for ASCII and
/// for bytes that cannot lead one).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xFF => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(pieces: &[&[u8]]) -> JoinedLine {
        let mut line = PartialLine::default();
        for piece in pieces {
            line.push(piece);
        }
        let total: usize = pieces.iter().map(|piece| piece.len()).sum();
        assert_eq!(line.len(), total);
        let joined = line.take_line();
        assert!(line.is_empty());
        joined
    }

    fn is_text(line: &JoinedLine) -> bool {
        matches!(line, JoinedLine::Text(_))
    }

    /// Every way of cutting `bytes` into three pieces gives back the same bytes,
    /// as text exactly when they are valid UTF-8.
    fn check_every_cut(bytes: &[u8]) {
        let valid = std::str::from_utf8(bytes).is_ok();
        for first in 0..=bytes.len() {
            for second in first..=bytes.len() {
                let line = joined(&[&bytes[..first], &bytes[first..second], &bytes[second..]]);
                assert_eq!(&line.bytes()[..], bytes, "cut at {first}, {second}");
                assert_eq!(
                    is_text(&line),
                    valid,
                    "cut at {first}, {second} of {bytes:?}"
                );
            }
        }
    }

    #[test]
    fn characters_cut_anywhere_are_joined_whole() {
        check_every_cut("data: h\u{e9}\u{20ac}\u{1F600}!".as_bytes());
        check_every_cut("\u{1F600}\u{1F600}".as_bytes());
        check_every_cut("\u{7FF}\u{800}\u{FFFF}\u{10000}\u{10FFFF}".as_bytes());
    }

    #[test]
    fn invalid_bytes_anywhere_make_plain_bytes_in_order() {
        check_every_cut(b"data: a\xFFb");
        check_every_cut(b"\xE2\x82z\xE2\x82\xAC");
        // A line ending inside a character.
        check_every_cut(b"data: \xF0\x9F\x98");
        // Leads that UTF-8 never uses, surrogates, overlong forms.
        check_every_cut(b"\xC0\xAF \xF8\x88\x80\x80\x80 \xED\xA0\x80 \xF4\x90\x80\x80");
        // Continuation bytes with no lead.
        check_every_cut(b"\x80\x80\x80\x80a");
    }

    #[test]
    fn values_of_a_text_line_share_its_allocation() {
        let line = joined(&[b"data: caf\xC3", b"\xA9 au lait"]);
        let JoinedLine::Text(text) = &line else {
            panic!("expected text, got {line:?}");
        };
        let value = line.value(6..text.len());
        assert_eq!(value, "caf\u{e9} au lait");
        assert_eq!(value.as_ptr(), text[6..].as_ptr());
    }

    #[test]
    fn values_of_a_bytes_line_are_decoded_with_replacements() {
        let line = joined(&[b"data: a\xFF", b"b"]);
        assert!(!is_text(&line));
        assert_eq!(line.value(6..9), "a\u{FFFD}b");
    }

    #[test]
    fn a_taken_line_leaves_an_empty_text_line() {
        let mut line = PartialLine::default();
        line.push(b"\xFF");
        assert!(!is_text(&line.take_line()));
        line.push(b"ok");
        assert!(is_text(&line.take_line()));
    }
}
