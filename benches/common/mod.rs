//! Shared workloads and drivers for the `parser` (criterion) and `ratios` benches.
//!
//! Every driver gets the same pre-split `Vec<Bytes>` and clones the chunks it feeds
//! (an O(1) reference-count bump), so the only difference between them is the
//! decoding work. Each returns the number of events it saw; `verify` checks once,
//! outside any timing, that every implementation agrees on that number.

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use futures::StreamExt;
use futures::executor::block_on;
use futures::stream;

mod scans;
mod workloads;
use scans::{sse_stream_events, visit_newlines};
pub use workloads::{Workload, workloads};

/// The chunk sizes every workload is fed in: a typical TCP read and a large one.
pub const CHUNK_SIZES: [usize; 2] = [8 << 10, 64 << 10];

impl Workload {
    /// `body` cut into chunks of `size` bytes (the last one shorter), each its own
    /// allocation as a network read would be.
    pub fn chunks(&self, size: usize) -> Vec<Bytes> {
        self.body.chunks(size).map(Bytes::copy_from_slice).collect()
    }
}

/// The implementations compared, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// Lower bound: visit every `\n` with `memchr::memchr_iter`, no parsing.
    Memchr,
    /// Not a decoder: the baseline plus one copy of every chunk. A decoder that
    /// hands out each line's data in one piece must copy every line split across
    /// chunks, so on lines much longer than a chunk (`large`) this bounds how
    /// fast any such decoder can be.
    MemchrCopy,
    /// `everstream::Parser` driven directly: feed a chunk, drain its frames.
    Parser,
    /// `everstream::EventStream` over `futures::stream::iter`, polled by `block_on`.
    EventStream,
    /// `sse_stream::SseByteStream`, same executor.
    SseStream,
    /// `eventsource_stream::EventStream`, same executor.
    EventsourceStream,
}

impl Impl {
    /// All implementations; the baseline comes first.
    pub const ALL: [Impl; 6] = [
        Impl::Memchr,
        Impl::MemchrCopy,
        Impl::Parser,
        Impl::EventStream,
        Impl::SseStream,
        Impl::EventsourceStream,
    ];

    /// The name used in benchmark IDs and tables.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Memchr => "memchr",
            Impl::MemchrCopy => "memchr+copy (bound)",
            Impl::Parser => "everstream-parser",
            Impl::EventStream => "everstream-stream",
            Impl::SseStream => "sse-stream",
            Impl::EventsourceStream => "eventsource-stream",
        }
    }

    /// Whether this is one of the other crates.
    #[allow(dead_code, reason = "only the ratios bench ranks the peers")]
    pub fn is_peer(self) -> bool {
        matches!(self, Impl::SseStream | Impl::EventsourceStream)
    }

    /// Whether [`run`](Self::run) counts newlines rather than events.
    pub fn counts_newlines(self) -> bool {
        matches!(self, Impl::Memchr | Impl::MemchrCopy)
    }

    /// Decodes `chunks` once and returns the count: newlines for the baseline
    /// and the bound, events for the others.
    pub fn run(self, chunks: &[Bytes]) -> usize {
        match self {
            Impl::Memchr => count_newlines(chunks),
            Impl::MemchrCopy => count_newlines_and_copy(chunks),
            Impl::Parser => everstream_parser(chunks),
            Impl::EventStream => everstream_stream(chunks),
            Impl::SseStream => sse_stream(chunks),
            Impl::EventsourceStream => eventsource_stream(chunks),
        }
    }
}

/// Panics unless every implementation counts the workload's events (and the
/// baseline its newlines) when fed `chunks`.
pub fn verify(workload: &Workload, chunks: &[Bytes]) {
    let newlines = memchr::memchr_iter(b'\n', &workload.body).count();
    for imp in Impl::ALL {
        let expected = if imp.counts_newlines() {
            newlines
        } else {
            workload.events
        };
        let counted = imp.run(chunks);
        assert_eq!(
            counted,
            expected,
            "{} counted {counted} on {} in {} chunks, expected {expected}",
            imp.name(),
            workload.name,
            chunks.len()
        );
    }
}

fn byte_stream(chunks: &[Bytes]) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + '_ {
    stream::iter(chunks.iter().cloned().map(Ok))
}

fn count_newlines(chunks: &[Bytes]) -> usize {
    chunks.iter().map(visit_newlines).sum()
}

/// The newline scan, and each chunk copied into one reused buffer.
fn count_newlines_and_copy(chunks: &[Bytes]) -> usize {
    let mut copy = Vec::with_capacity(chunks.iter().map(Bytes::len).max().unwrap_or(0));
    let mut newlines = 0;
    for chunk in chunks {
        newlines += visit_newlines(chunk);
        copy.clear();
        copy.extend_from_slice(chunk);
        black_box(&mut copy);
    }
    newlines
}

fn everstream_parser(chunks: &[Bytes]) -> usize {
    let mut parser = everstream::Parser::new();
    let mut events = 0;
    for chunk in chunks {
        parser.feed(chunk.clone());
        while let Some(frame) = parser.next_frame() {
            if let Ok(everstream::Frame::Event(event)) = frame {
                black_box(&event);
                events += 1;
            }
        }
    }
    parser.finish();
    events
}

fn everstream_stream(chunks: &[Bytes]) -> usize {
    block_on(async {
        let mut events = everstream::EventStream::new(byte_stream(chunks));
        let mut count = 0;
        while let Some(event) = events.next().await {
            black_box(&event.expect("no limit is reached"));
            count += 1;
        }
        count
    })
}

fn sse_stream(chunks: &[Bytes]) -> usize {
    block_on(sse_stream_events(byte_stream(chunks)))
}

fn eventsource_stream(chunks: &[Bytes]) -> usize {
    block_on(async {
        let mut events = eventsource_stream::EventStream::new(byte_stream(chunks));
        let mut count = 0;
        while let Some(event) = events.next().await {
            black_box(&event.expect("the workloads are valid UTF-8"));
            count += 1;
        }
        count
    })
}
