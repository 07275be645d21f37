//! The loops that more than one bench target times: the newline visit behind
//! the baseline and the bounds, and the `sse-stream` peer counting its events.
//! Included by `common/mod.rs` and, by path, by `benches/e2e.rs`, so the parser
//! benches and the end-to-end bench time exactly the same work.

use std::hint::black_box;

use bytes::Bytes;
use futures::StreamExt;

/// Visits each newline of a chunk (taken by reference count, as a decoder
/// would) and counts them.
///
/// A `for` loop over the iterator on purpose: `memchr_iter(..).count()` is
/// specialised into a vectorised count that never yields a position, which would
/// not be a lower bound for anything that has to look at each line.
pub fn visit_newlines(chunk: &Bytes) -> usize {
    let chunk = chunk.clone();
    let mut newlines = 0;
    for position in memchr::memchr_iter(b'\n', &chunk) {
        black_box(position);
        newlines += 1;
    }
    newlines
}

/// Decodes `body` with `sse_stream::SseByteStream` and counts its events.
pub async fn sse_stream_events<E>(body: impl futures::Stream<Item = Result<Bytes, E>>) -> usize
where
    E: std::error::Error + Send + Sync + 'static,
{
    let mut blocks = std::pin::pin!(sse_stream::SseByteStream::new(body));
    let mut count = 0;
    while let Some(block) = blocks.next().await {
        let block = block.expect("valid UTF-8");
        // It also yields blocks without data (an `id:`-only block); not events.
        if block.data.is_some() {
            count += 1;
        }
        black_box(&block);
    }
    count
}
