//! The supervisor task: the only module that drives reqwest, tokio timers and
//! tracing together. A named-state loop: connecting, open, waiting, closed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Request, Response, Url};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, trace, warn};

use crate::backoff::{Failures, Jitter};
use crate::builder::Config;
use crate::classify::{Decision, Outcome, classify};
use crate::connect::{REJECTION_READ_TIMEOUT, check_response, set_stream_headers};
use crate::error::{Error, ErrorKind};
use crate::mailbox::{Gone, Sender};
use crate::message::{CloseReason, DelayCause, Message, State};
use crate::parser::{Frame, ParseError, Parser};
use crate::source::{Command, Shared};

/// At most this many messages are parsed before they are delivered: bounds the
/// latency batching adds and the memory of the batch.
const BATCH: usize = 32;

const NO_CONTENT: reqwest::StatusCode = reqwest::StatusCode::NO_CONTENT;
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The task was cancelled: by `close()` or by dropping every handle.
#[derive(Debug)]
struct Cancelled;

/// How an open connection ended.
struct Ended {
    /// `None` for a clean end of body.
    error: Option<Error>,
    /// The user asked for an immediate reconnection.
    requested: bool,
}

/// What woke the read loop.
enum Wake {
    Cancelled,
    Commands,
    Stalled,
    Chunk(Option<reqwest::Result<Bytes>>),
}

pub(crate) struct Supervisor {
    config: Config,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    subscribers: Vec<Sender>,
    /// One parser for the source's whole life: it carries the last event ID
    /// across connections.
    parser: Parser,
    jitter: Jitter,
    /// The server's latest `retry:`, the base delay from then on.
    server_retry: Option<Duration>,
    reconnect_requested: bool,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("url", &redacted_url(&self.config.url))
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    pub(crate) fn new(
        config: Config,
        last_event_id: String,
        shared: Arc<Shared>,
        cancel: CancellationToken,
    ) -> Self {
        let mut parser = Parser::with_limits(config.limits);
        parser.set_last_event_id(last_event_id);
        let jitter = Jitter::new(config.jitter_seed);
        Self {
            config,
            shared,
            cancel,
            subscribers: Vec::new(),
            parser,
            jitter,
            server_retry: None,
            reconnect_requested: false,
        }
    }

    /// Runs until closed, then tells every subscriber why and marks the task done.
    ///
    /// A plain `fn` returning the future, so the task stores the supervisor once
    /// (an `async fn` would keep it both as its argument and as the block's capture).
    pub(crate) fn run(mut self) -> impl Future<Output = ()> {
        let span = tracing::debug_span!("everstream", url = %redacted_url(&self.config.url));
        // Marks the task done however it ends, even dropped by its runtime unpolled.
        let finished = Finished(Arc::clone(&self.shared));
        async move {
            let reason = match self.lifecycle().await {
                Ok(reason) => reason,
                Err(Cancelled) if self.shared.closed_by_user.load(Ordering::Relaxed) => {
                    CloseReason::ByUser
                }
                Err(Cancelled) => CloseReason::Dropped,
            };
            self.shared.set_state(State::Closed);
            debug!(reason = %reason, "closed");
            let cancelled = matches!(reason, CloseReason::ByUser | CloseReason::Dropped);
            let message = Message::Closed(reason);
            if cancelled {
                // Shutting down must not wait for a slow subscriber.
                self.accept_commands();
                for subscriber in &self.subscribers {
                    let _ = subscriber.push(&mut vec![message.clone()], &mut 0, true);
                }
            } else {
                // Subscribers are still there to hear why; a close or drop ends the wait.
                let _ = self.broadcast(message).await;
            }
            self.subscribers.clear();
            drop(finished);
        }
        .instrument(span)
    }

    async fn lifecycle(&mut self) -> Result<CloseReason, Cancelled> {
        let mut attempt: u64 = 0;
        let mut failures = Failures::default();
        let mut unhealthy_since = Instant::now();
        loop {
            if self.cancel.is_cancelled() {
                return Err(Cancelled);
            }
            // Connecting.
            attempt += 1;
            self.shared.attempts.fetch_add(1, Ordering::Relaxed);
            self.shared.set_state(State::Connecting);
            debug!(attempt, "connecting");
            self.broadcast(Message::Connecting { attempt }).await?;
            // Boxed: the connecting state is large and lasts only until the response,
            // so an open (idle) stream does not carry its space.
            let connected = Box::pin(self.connect(attempt)).await?;
            let (error, requested, open_for) = match connected {
                Ok(response) => {
                    // Open.
                    let opened_at = Instant::now();
                    self.shared.set_state(State::Open);
                    let status = response.status();
                    debug!(attempt, status = status.as_u16(), "open");
                    let headers = Arc::new(response.headers().clone());
                    self.broadcast(Message::Open {
                        attempt,
                        status,
                        headers,
                    })
                    .await?;
                    self.reconnect_requested = false;
                    let ended = self.read(response.bytes_stream()).await;
                    // A partial event in flight is discarded; the last event ID stays.
                    self.parser.finish();
                    let ended = ended?;
                    (ended.error, ended.requested, Some(opened_at.elapsed()))
                }
                Err(error) => (Some(error), false, None),
            };
            self.shared.set_state(State::Waiting);
            if let Some(error) = &error {
                self.shared.set_last_error(error);
            }
            if requested {
                debug!(attempt, "reconnecting at once, as requested");
                self.broadcast(Message::Disconnected {
                    error: None,
                    will_retry: true,
                })
                .await?;
                continue;
            }

            // Decide.
            if failures.record(open_for, self.config.stable_period) {
                unhealthy_since = Instant::now();
                self.reset_policy();
            }
            let consecutive = failures.count();
            let outcome = match &error {
                Some(error) => Outcome::Failed(error),
                None => Outcome::Ended,
            };
            let mut decision =
                classify(outcome, SystemTime::now(), self.config.retry_after_ceiling);
            if let Some(classifier) = &self.config.classifier {
                decision = classifier(outcome, decision);
            }
            let will_retry = matches!(decision, Decision::Reconnect { .. });
            match &error {
                Some(error) => debug!(attempt, will_retry, error = %error, "disconnected"),
                None => debug!(attempt, will_retry, "stream ended"),
            }
            self.broadcast(Message::Disconnected {
                error: error.clone(),
                will_retry,
            })
            .await?;
            let at_least = match decision {
                Decision::Reconnect { at_least } => at_least,
                Decision::Stop if error.as_ref().and_then(Error::status) == Some(NO_CONTENT) => {
                    return Ok(CloseReason::ServerStopped);
                }
                Decision::Stop => return Ok(CloseReason::Stopped),
                Decision::Fail => {
                    return Ok(CloseReason::Fatal(error.unwrap_or_else(|| {
                        Error::config("the classifier failed a cleanly ended stream")
                    })));
                }
            };
            let elapsed = unhealthy_since.elapsed();
            let out_of_attempts = self
                .config
                .max_attempts
                .is_some_and(|max| u64::from(consecutive) >= max);
            let out_of_time = self.config.max_elapsed.is_some_and(|max| elapsed >= max);
            let Some((delay, cause)) = self
                .next_delay(consecutive, at_least)
                .filter(|_| !out_of_attempts && !out_of_time)
            else {
                return Ok(CloseReason::GaveUp {
                    attempts: u64::from(consecutive),
                    elapsed,
                    last_error: error,
                });
            };

            // Waiting.
            debug!(attempt = attempt + 1, delay_ms = delay.as_millis() as u64, cause = ?cause, "retrying");
            self.broadcast(Message::Retrying {
                attempt: attempt + 1,
                delay,
                cause,
            })
            .await?;
            self.wait(delay).await?;
        }
    }

    /// Sends one request and checks the response; bounded by the read timeout.
    async fn connect(&mut self, attempt: u64) -> Result<Result<Response, Error>, Cancelled> {
        let request = self.build_request();
        let hook = self.config.request_hook.clone();
        let client = self.config.client.clone();
        let read_timeout = self.config.read_timeout;
        let attempt = async move {
            let request = match hook {
                Some(hook) => hook(attempt, request)
                    .await
                    .map_err(|error| Error::new(ErrorKind::Hook(error)))?,
                None => request,
            };
            let send = client.execute(request);
            let response = match read_timeout {
                Some(timeout) => tokio::time::timeout(timeout, send)
                    .await
                    .map_err(|_| Error::new(ErrorKind::ReadTimeout(timeout)))??,
                None => send.await?,
            };
            // A stalled error body must not delay the retry past the read timeout.
            let body_timeout = read_timeout.map_or(REJECTION_READ_TIMEOUT, |timeout| {
                timeout.min(REJECTION_READ_TIMEOUT)
            });
            check_response(response, body_timeout).await
        };
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(Cancelled),
            result = attempt => Ok(result),
        }
    }

    fn build_request(&self) -> Request {
        let mut request = Request::new(self.config.method.clone(), self.config.url.clone());
        *request.headers_mut() = self.config.headers.clone();
        set_stream_headers(request.headers_mut());
        let id = self.parser.last_event_id();
        if !id.is_empty() {
            match HeaderValue::from_bytes(id.as_bytes()) {
                Ok(value) => {
                    request.headers_mut().insert(LAST_EVENT_ID, value);
                }
                // Control characters cannot travel in a header. Resuming without the
                // ID beats never reconnecting; the ID is kept for the next event.
                Err(_) => warn!(
                    id_len = id.len(),
                    "last event ID is not a valid header value; reconnecting without Last-Event-ID"
                ),
            }
        }
        if let Some(body) = &self.config.body {
            *request.body_mut() = Some(body.clone().into());
        }
        request
    }

    /// Reads the body, dispatching frames, until it ends, stalls or fails.
    async fn read(
        &mut self,
        body: impl futures_core::Stream<Item = reqwest::Result<Bytes>>,
    ) -> Result<Ended, Cancelled> {
        tokio::pin!(body);
        let read_timeout = self.config.read_timeout;
        let stall = tokio::time::sleep(read_timeout.unwrap_or(Duration::from_secs(86_400)));
        tokio::pin!(stall);
        let cancel = self.cancel.clone();
        let shared = Arc::clone(&self.shared);
        loop {
            if self.reconnect_requested {
                return Ok(Ended {
                    error: None,
                    requested: true,
                });
            }
            let wake = tokio::select! {
                biased;
                () = cancel.cancelled() => Wake::Cancelled,
                () = shared.command_sent() => Wake::Commands,
                // Data that is ready wins over a deadline that passed meanwhile.
                chunk = body.next() => Wake::Chunk(chunk),
                () = &mut stall, if read_timeout.is_some() => Wake::Stalled,
            };
            match wake {
                Wake::Cancelled => return Err(Cancelled),
                Wake::Commands => self.accept_commands(),
                Wake::Stalled => {
                    let timeout = read_timeout.unwrap_or_default();
                    return Ok(Ended {
                        error: Some(Error::new(ErrorKind::ReadTimeout(timeout))),
                        requested: false,
                    });
                }
                Wake::Chunk(Some(Ok(chunk))) => {
                    let len = chunk.len();
                    self.shared.bytes.fetch_add(len as u64, Ordering::Relaxed);
                    trace!(bytes = len, "chunk");
                    self.parser.feed(chunk);
                    self.dispatch_frames().await?;
                    // A line twice the limit long may never end: stop reading
                    // garbage and reconnect. A shorter one is skipped in place, so
                    // the stream makes progress even if the server replays it.
                    let limit = self.config.limits.line_length();
                    if self.parser.overlong_line_length() > limit.saturating_mul(2) {
                        return Ok(Ended {
                            error: Some(Error::from(ParseError::LineTooLong { limit })),
                            requested: false,
                        });
                    }
                    // Time spent waiting for slow subscribers is not a stall.
                    if let Some(timeout) = read_timeout {
                        stall.as_mut().reset(Instant::now() + timeout);
                    }
                }
                Wake::Chunk(Some(Err(error))) => {
                    return Ok(Ended {
                        error: Some(error.into()),
                        requested: false,
                    });
                }
                Wake::Chunk(None) => {
                    return Ok(Ended {
                        error: None,
                        requested: false,
                    });
                }
            }
        }
    }

    /// Broadcasts the frames parsed so far. Never fails on bad input: limit
    /// errors are sent to subscribers and parsing goes on.
    async fn dispatch_frames(&mut self) -> Result<(), Cancelled> {
        // Only a full lossless subscriber makes this wait; the waiting part is
        // allocated then, so its state does not enlarge the read loop.
        while let Some((mut batch, stopped)) = self.dispatch_ready() {
            Box::pin(self.offer_when_room(&mut batch, stopped)).await?;
        }
        Ok(())
    }

    /// Parses frames and delivers them in batches until the input runs out, or
    /// until a full lossless subscriber stops delivery: then returns the batch
    /// and where it stopped.
    fn dispatch_ready(&mut self) -> Option<(Vec<Message>, Position)> {
        let mut batch = Vec::new();
        let mut events = 0;
        loop {
            let frame = self.parser.next_frame();
            let message = match frame {
                None => break,
                Some(Ok(Frame::Event(event))) => {
                    events += 1;
                    trace!(event_type = event.event_type(), "event");
                    Message::Event(event)
                }
                Some(Ok(Frame::Comment(text))) => {
                    if !self.subscribers.iter().any(Sender::wants_comments) {
                        continue;
                    }
                    Message::Comment(text)
                }
                Some(Ok(Frame::Retry(delay))) => {
                    debug!(retry_ms = delay.as_millis() as u64, "server set retry");
                    self.server_retry = Some(delay);
                    continue;
                }
                Some(Err(error)) => {
                    let error = Error::from(error);
                    warn!(error = %error, "event skipped");
                    self.shared.set_last_error(&error);
                    Message::Error(error)
                }
            };
            if batch.capacity() == 0 {
                batch.reserve_exact(BATCH);
            }
            batch.push(message);
            if batch.len() == BATCH {
                if let Some(stopped) = self.offer_batch(&mut batch, std::mem::take(&mut events)) {
                    return Some((batch, stopped));
                }
                batch.clear();
            }
        }
        if !batch.is_empty()
            && let Some(stopped) = self.offer_batch(&mut batch, events)
        {
            return Some((batch, stopped));
        }
        // Also covers id-only blocks, which change the ID without an event.
        self.shared.set_last_event_id(self.parser.last_event_id());
        None
    }

    /// Counts the batch's events and offers it to every subscriber.
    fn offer_batch(&mut self, batch: &mut Vec<Message>, events: u64) -> Option<Position> {
        self.shared.events.fetch_add(events, Ordering::Relaxed);
        self.accept_commands();
        self.offer(batch, Position::default())
    }

    /// Sleeps before the next attempt; a reconnect request cuts the wait short.
    async fn wait(&mut self, delay: Duration) -> Result<(), Cancelled> {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        let cancel = self.cancel.clone();
        let shared = Arc::clone(&self.shared);
        while !self.reconnect_requested {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(Cancelled),
                () = &mut sleep => return Ok(()),
                () = shared.command_sent() => self.accept_commands(),
            };
        }
        Ok(())
    }

    fn next_delay(
        &mut self,
        failures: u32,
        at_least: Option<Duration>,
    ) -> Option<(Duration, DelayCause)> {
        let (mut delay, mut cause) = self.policy_delay().unwrap_or_else(|| {
            let base = self.server_retry.unwrap_or(self.config.backoff.initial);
            let delay = self
                .config
                .backoff
                .delay(base, failures, self.jitter.next_f64());
            let cause = match (self.server_retry.is_some(), failures) {
                (true, 1) => DelayCause::ServerRetry,
                (true, _) => DelayCause::ServerRetryBackoff,
                (false, _) => DelayCause::Backoff,
            };
            Some((delay, cause))
        })?;
        if let Some(at_least) = at_least.filter(|at_least| *at_least > delay) {
            delay = at_least;
            cause = DelayCause::RetryAfter;
        }
        Some((delay, cause))
    }

    /// The custom policy's delay: `None` when there is no policy,
    /// `Some(None)` when the policy gave up.
    #[cfg(feature = "backoff")]
    fn policy_delay(&mut self) -> Option<Option<(Duration, DelayCause)>> {
        let policy = self.config.policy.as_mut()?;
        let floor = self.config.backoff.floor;
        Some(
            policy
                .next_backoff()
                .map(|delay| (delay.max(floor), DelayCause::Policy)),
        )
    }

    #[cfg(not(feature = "backoff"))]
    fn policy_delay(&mut self) -> Option<Option<(Duration, DelayCause)>> {
        None
    }

    fn reset_policy(&mut self) {
        #[cfg(feature = "backoff")]
        if let Some(policy) = self.config.policy.as_mut() {
            policy.reset();
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Subscribe(subscriber) => {
                // Usually one or two subscribers: no room for four up front.
                self.subscribers.reserve_exact(1);
                self.subscribers.push(subscriber);
            }
            Command::ReconnectNow => self.reconnect_requested = true,
        }
    }

    fn accept_commands(&mut self) {
        for command in self.shared.take_commands() {
            self.handle(command);
        }
    }

    /// Sends `message` to every subscriber, honouring each one's slow mode.
    async fn broadcast(&mut self, message: Message) -> Result<(), Cancelled> {
        let mut batch = vec![message];
        match self.offer_batch(&mut batch, 0) {
            None => Ok(()),
            Some(stopped) => Box::pin(self.offer_when_room(&mut batch, stopped)).await,
        }
    }

    /// Delivers as much of `batch` as fits without waiting, from `at` on.
    /// Returns where it stopped: at a full lossless subscriber.
    fn offer(&mut self, batch: &mut Vec<Message>, mut at: Position) -> Option<Position> {
        while at.subscriber < self.subscribers.len() {
            // The last subscriber takes the messages themselves: no clones.
            let take = at.subscriber + 1 == self.subscribers.len();
            match self.subscribers[at.subscriber].push(batch, &mut at.message, take) {
                Ok(()) if at.message < batch.len() => return Some(at),
                Ok(()) => at.subscriber += 1,
                // Its subscription was dropped.
                Err(Gone) => {
                    self.subscribers.remove(at.subscriber);
                }
            }
            at.message = 0;
        }
        None
    }

    /// Waits for room at each full subscriber in turn and delivers the rest.
    async fn offer_when_room(
        &mut self,
        batch: &mut Vec<Message>,
        mut stopped: Position,
    ) -> Result<(), Cancelled> {
        loop {
            let subscriber = &self.subscribers[stopped.subscriber];
            // A subscription dropped meanwhile is found and removed by `offer`.
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Err(Cancelled),
                _ = std::future::poll_fn(|cx| subscriber.poll_room(cx)) => {}
            }
            match self.offer(batch, stopped) {
                None => return Ok(()),
                Some(at) => stopped = at,
            }
        }
    }
}

/// How far delivering a batch has got: the subscriber, and the next message
/// of the batch for it.
#[derive(Debug, Default, Clone, Copy)]
struct Position {
    subscriber: usize,
    message: usize,
}

/// Marks the supervisor finished when dropped.
struct Finished(Arc<Shared>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// The URL without credentials, query or fragment: safe to log.
pub(crate) fn redacted_url(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}
