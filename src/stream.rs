//! Adapters from any byte source to events: async `Stream`s and `std::io::Read`.

use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use pin_project_lite::pin_project;

use crate::error::Error;
use crate::event::Event;
use crate::parser::{Frame, Limits, Parser};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// A `Stream` of [`Frame`]s (events, comments, retry hints) decoded from any
    /// `Stream` of byte chunks.
    ///
    /// Built with [`EventStream::frames`] or [`Frames::new`]. After the byte stream
    /// fails once, the error is yielded and the stream ends.
    #[derive(Debug)]
    pub struct Frames<S> {
        #[pin]
        body: S,
        parser: Parser,
        retry: Option<Duration>,
        done: bool,
    }
}

impl<S> Frames<S> {
    /// Decodes `body` with the default [`Limits`].
    pub fn new(body: S) -> Self {
        Self::with_parser(body, Parser::new())
    }

    /// Decodes `body` with a configured parser (limits, initial last event ID).
    pub fn with_parser(body: S, parser: Parser) -> Self {
        Self {
            body,
            parser,
            retry: None,
            done: false,
        }
    }

    /// The last event ID so far.
    pub fn last_event_id(&self) -> &str {
        self.parser.last_event_id()
    }

    /// The latest reconnection delay the server asked for with `retry:`.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }
}

impl<S, B, E> Stream for Frames<S>
where
    S: Stream<Item = Result<B, E>>,
    B: Into<Bytes>,
    E: Into<BoxError>,
{
    type Item = Result<Frame, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_select(cx, Some)
    }
}

impl<S, B, E> Frames<S>
where
    S: Stream<Item = Result<B, E>>,
    B: Into<Bytes>,
    E: Into<BoxError>,
{
    /// Polls for the next frame `select` keeps (events only, say) without
    /// wrapping and unwrapping every frame on the way.
    #[inline]
    fn poll_select<T>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        select: impl Fn(Frame) -> Option<T>,
    ) -> Poll<Option<Result<T, Error>>> {
        let mut this = self.project();
        loop {
            match this.parser.next_frame() {
                Some(Ok(frame)) => {
                    if let Frame::Retry(delay) = frame {
                        *this.retry = Some(delay);
                    }
                    if let Some(kept) = select(frame) {
                        return Poll::Ready(Some(Ok(kept)));
                    }
                    continue;
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
                None => {}
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match ready!(this.body.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => this.parser.feed(chunk.into()),
                Some(Err(error)) => {
                    *this.done = true;
                    this.parser.finish();
                    return Poll::Ready(Some(Err(body_error(error.into()))));
                }
                None => {
                    *this.done = true;
                    this.parser.finish();
                }
            }
        }
    }
}

/// Keeps reqwest and io errors recognisable (`is_transport`, `is_timeout`, `is_io`).
fn body_error(error: BoxError) -> Error {
    let error = match error.downcast::<reqwest::Error>() {
        Ok(error) => return Error::from(*error),
        Err(error) => error,
    };
    match error.downcast::<std::io::Error>() {
        Ok(error) => Error::from(*error),
        Err(error) => Error::body(error),
    }
}

pin_project! {
    /// A `Stream` of [`Event`]s decoded from any `Stream` of byte chunks: a
    /// reqwest or hyper body, an axum response called in-process, a file.
    ///
    /// Comments are skipped and `retry:` values are reflected in
    /// [`retry`](Self::retry) and in each event's own [`Event::retry`]; use
    /// [`frames`](Self::frames) to see every frame. Limit errors are yielded
    /// (the event is skipped) and the stream goes on; after the byte stream fails,
    /// its error is yielded and the stream ends.
    ///
    /// # Examples
    ///
    /// ```
    /// use everstream::EventStream;
    /// use futures::{StreamExt, stream};
    ///
    /// # futures::executor::block_on(async {
    /// let chunks = stream::iter(["data: hel", "lo\n\n", "data: world\n\n"])
    ///     .map(Ok::<_, std::io::Error>);
    /// let mut events = EventStream::new(chunks);
    /// assert_eq!(events.next().await.unwrap()?.data(), "hello");
    /// assert_eq!(events.next().await.unwrap()?.data(), "world");
    /// assert!(events.next().await.is_none());
    /// # Ok::<(), everstream::Error>(())
    /// # }).unwrap();
    /// ```
    #[derive(Debug)]
    pub struct EventStream<S> {
        #[pin]
        frames: Frames<S>,
    }
}

impl<S> EventStream<S> {
    /// Decodes `body` with the default [`Limits`].
    pub fn new(body: S) -> Self {
        Self::with_parser(body, Parser::new())
    }

    /// Decodes `body` with the given limits.
    pub fn with_limits(body: S, limits: Limits) -> Self {
        Self::with_parser(body, Parser::with_limits(limits))
    }

    /// Decodes `body` with a configured parser (limits, initial last event ID).
    pub fn with_parser(body: S, parser: Parser) -> Self {
        Self {
            frames: Frames::with_parser(body, parser),
        }
    }

    /// Every frame instead of events only: comments and retry hints too.
    pub fn frames(self) -> Frames<S> {
        self.frames
    }

    /// The last event ID so far.
    pub fn last_event_id(&self) -> &str {
        self.frames.last_event_id()
    }

    /// The latest reconnection delay the server asked for with `retry:`.
    pub fn retry(&self) -> Option<Duration> {
        self.frames.retry()
    }
}

impl<S, B, E> Stream for EventStream<S>
where
    S: Stream<Item = Result<B, E>>,
    B: Into<Bytes>,
    E: Into<BoxError>,
{
    type Item = Result<Event, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project().frames.poll_select(cx, |frame| match frame {
            Frame::Event(event) => Some(event),
            _ => None,
        })
    }
}

/// How many bytes [`EventIter`] reads at a time.
const READ_SIZE: usize = 64 * 1024;

/// An `Iterator` of [`Event`]s read from any [`std::io::Read`]: the synchronous
/// counterpart of [`EventStream`] (httpx-sse's `iter_sse`).
///
/// # Examples
///
/// ```
/// use everstream::EventIter;
///
/// let body: &[u8] = b"event: greeting\ndata: hi\n\n";
/// let events: Vec<_> = EventIter::new(body).collect::<Result<_, _>>()?;
/// assert_eq!(events[0].event_type(), "greeting");
/// assert_eq!(events[0].data(), "hi");
/// # Ok::<(), everstream::Error>(())
/// ```
#[derive(Debug)]
pub struct EventIter<R> {
    reader: R,
    parser: Parser,
    /// Reused for every read; what was read is copied out, so events never pin
    /// a whole read buffer.
    buffer: Vec<u8>,
    done: bool,
}

impl<R: Read> EventIter<R> {
    /// Reads events from `reader` with the default [`Limits`].
    pub fn new(reader: R) -> Self {
        Self::with_parser(reader, Parser::new())
    }

    /// Reads events from `reader` with a configured parser.
    pub fn with_parser(reader: R, parser: Parser) -> Self {
        Self {
            reader,
            parser,
            buffer: Vec::new(),
            done: false,
        }
    }

    /// The last event ID so far.
    pub fn last_event_id(&self) -> &str {
        self.parser.last_event_id()
    }
}

impl<R: Read> Iterator for EventIter<R> {
    type Item = Result<Event, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.parser.next_frame() {
                Some(Ok(Frame::Event(event))) => return Some(Ok(event)),
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Some(Err(error.into())),
                None if self.done => return None,
                None => {}
            }
            if self.buffer.is_empty() {
                self.buffer = vec![0; READ_SIZE];
            }
            match self.reader.read(&mut self.buffer) {
                Ok(0) => {
                    self.done = true;
                    self.parser.finish();
                }
                Ok(n) => self.parser.feed(Bytes::copy_from_slice(&self.buffer[..n])),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    self.done = true;
                    self.parser.finish();
                    return Some(Err(error.into()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{StreamExt, stream};

    struct OneByteReader<'a>(&'a [u8]);

    impl Read for OneByteReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some((&first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            buf[0] = first;
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn iter_reads_in_any_sizes() {
        let input = b"id: 7\r\ndata: a\r\n\r\ndata: b\r\n\r\ndata: partial";
        let events: Vec<_> = EventIter::new(OneByteReader(input))
            .map(|e| e.map(|e| (e.data().to_owned(), e.id().to_owned())))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(events, [("a".into(), "7".into()), ("b".into(), "7".into())]);
    }

    #[test]
    fn iter_reports_read_errors_then_ends() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("boom"))
            }
        }
        let mut events = EventIter::new(Failing);
        assert!(events.next().unwrap().unwrap_err().is_io());
        assert!(events.next().is_none());
    }

    #[tokio::test]
    async fn stream_error_ends_and_discards_partial_event() {
        let chunks = stream::iter([
            Ok(Bytes::from_static(b"data: a\n\ndata: lost")),
            Err(std::io::Error::other("reset")),
            Ok(Bytes::from_static(b"\n\n")),
        ]);
        let mut events = EventStream::new(chunks);
        assert_eq!(events.next().await.unwrap().unwrap().data(), "a");
        assert!(events.next().await.unwrap().unwrap_err().is_io());
        assert!(events.next().await.is_none());
    }

    #[tokio::test]
    async fn frames_expose_comments_and_retry() {
        let chunks = stream::iter([Ok::<_, std::io::Error>(": ping\nretry: 250\n\n")]);
        let mut frames = EventStream::new(chunks).frames();
        assert_eq!(
            frames.next().await.unwrap().unwrap(),
            Frame::Comment("ping".into())
        );
        assert_eq!(
            frames.next().await.unwrap().unwrap(),
            Frame::Retry(Duration::from_millis(250))
        );
        assert!(frames.next().await.is_none());
        assert_eq!(frames.retry(), Some(Duration::from_millis(250)));
    }
}
