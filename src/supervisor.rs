//! The supervisor task: the only module that drives reqwest, tokio timers and
//! tracing together. A named-state loop: connecting, open, waiting, closed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Request, Response, Url};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, trace, warn};

use crate::backoff::{Failures, Jitter};
use crate::builder::Config;
use crate::classify::{Decision, Outcome, classify};
use crate::connect::{REJECTION_READ_TIMEOUT, check_response, set_stream_headers};
use crate::error::{Error, ErrorKind};
use crate::message::{CloseReason, DelayCause, Message, State};
use crate::parser::{Frame, ParseError, Parser};
use crate::source::{Command, Shared, SlowSubscriber, Subscriber};

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
    Command(Option<Command>),
    Stalled,
    Chunk(Option<reqwest::Result<Bytes>>),
}

pub(crate) struct Supervisor {
    config: Config,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    control: mpsc::UnboundedReceiver<Command>,
    subscribers: Vec<Subscriber>,
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
        control: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let mut parser = Parser::with_limits(config.limits);
        parser.set_last_event_id(last_event_id);
        let jitter = Jitter::new(config.jitter_seed);
        Self {
            config,
            shared,
            cancel,
            control,
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
    pub(crate) fn run(mut self, finished: watch::Sender<bool>) -> impl Future<Output = ()> {
        let span = tracing::debug_span!("everstream", url = %redacted_url(&self.config.url));
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
                    let _ = subscriber.tx.try_send(message.clone());
                }
            } else {
                // Subscribers are still there to hear why; a close or drop ends the wait.
                let _ = self.broadcast(message).await;
            }
            self.subscribers.clear();
            let _ = finished.send(true);
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
            let (error, requested, open_for) = match self.connect(attempt).await? {
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
                    let ended = self.read(response).await;
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
    async fn read(&mut self, response: Response) -> Result<Ended, Cancelled> {
        let mut body = response.bytes_stream();
        let read_timeout = self.config.read_timeout;
        let stall = tokio::time::sleep(read_timeout.unwrap_or(Duration::from_secs(86_400)));
        tokio::pin!(stall);
        let cancel = self.cancel.clone();
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
                command = self.control.recv() => Wake::Command(command),
                // Data that is ready wins over a deadline that passed meanwhile.
                chunk = body.next() => Wake::Chunk(chunk),
                () = &mut stall, if read_timeout.is_some() => Wake::Stalled,
            };
            match wake {
                Wake::Cancelled | Wake::Command(None) => return Err(Cancelled),
                Wake::Command(Some(command)) => self.handle(command),
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
        while let Some(frame) = self.parser.next_frame() {
            match frame {
                Ok(Frame::Event(event)) => {
                    self.shared.events.fetch_add(1, Ordering::Relaxed);
                    trace!(event_type = event.event_type(), "event");
                    self.broadcast(Message::Event(event)).await?;
                }
                Ok(Frame::Comment(text)) => {
                    if self.subscribers.iter().any(|s| s.options.comments) {
                        self.broadcast(Message::Comment(text)).await?;
                    }
                }
                Ok(Frame::Retry(delay)) => {
                    debug!(retry_ms = delay.as_millis() as u64, "server set retry");
                    self.server_retry = Some(delay);
                }
                Err(error) => {
                    let error = Error::from(error);
                    warn!(error = %error, "event skipped");
                    self.shared.set_last_error(&error);
                    self.broadcast(Message::Error(error)).await?;
                }
            }
        }
        // Also covers id-only blocks, which change the ID without an event.
        self.shared.set_last_event_id(self.parser.last_event_id());
        Ok(())
    }

    /// Sleeps before the next attempt; a reconnect request cuts the wait short.
    async fn wait(&mut self, delay: Duration) -> Result<(), Cancelled> {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        let cancel = self.cancel.clone();
        while !self.reconnect_requested {
            let command = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(Cancelled),
                () = &mut sleep => return Ok(()),
                command = self.control.recv() => command,
            };
            match command {
                Some(command) => self.handle(command),
                None => return Err(Cancelled),
            }
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
            Command::Subscribe(subscriber) => self.subscribers.push(subscriber),
            Command::ReconnectNow => self.reconnect_requested = true,
        }
    }

    fn accept_commands(&mut self) {
        while let Ok(command) = self.control.try_recv() {
            self.handle(command);
        }
    }

    /// Sends `message` to every subscriber, honouring each one's slow mode.
    async fn broadcast(&mut self, mut message: Message) -> Result<(), Cancelled> {
        self.accept_commands();
        let comment = matches!(message, Message::Comment(_));
        let mut index = 0;
        while index < self.subscribers.len() {
            let is_last = index + 1 == self.subscribers.len();
            let subscriber = &mut self.subscribers[index];
            if comment && !subscriber.options.comments {
                index += 1;
                continue;
            }
            // The last subscriber takes the message itself: one clone fewer.
            let copy = if is_last {
                std::mem::replace(&mut message, Message::Connecting { attempt: 0 })
            } else {
                message.clone()
            };
            if deliver(subscriber, copy, &self.cancel).await? {
                index += 1;
            } else {
                // Its receiver was dropped.
                self.subscribers.remove(index);
            }
        }
        Ok(())
    }
}

/// Delivers to one subscriber; false when it has gone away.
async fn deliver(
    subscriber: &mut Subscriber,
    message: Message,
    cancel: &CancellationToken,
) -> Result<bool, Cancelled> {
    match subscriber.options.slow {
        SlowSubscriber::Skip => {
            // Swap, not load: the subscription may report the count concurrently.
            let missed = subscriber.missed.swap(0, Ordering::AcqRel);
            if missed > 0 {
                match subscriber.tx.try_send(Message::Missed { count: missed }) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        subscriber.missed.fetch_add(missed + 1, Ordering::AcqRel);
                        return Ok(true);
                    }
                    Err(TrySendError::Closed(_)) => return Ok(false),
                }
            }
            match subscriber.tx.try_send(message) {
                Ok(()) => Ok(true),
                Err(TrySendError::Full(_)) => {
                    subscriber.missed.fetch_add(1, Ordering::AcqRel);
                    Ok(true)
                }
                Err(TrySendError::Closed(_)) => Ok(false),
            }
        }
        _ => match subscriber.tx.try_send(message) {
            Ok(()) => Ok(true),
            Err(TrySendError::Closed(_)) => Ok(false),
            // The slow path is boxed so its large state does not grow every
            // await point of the task that uses `deliver`.
            Err(TrySendError::Full(message)) => {
                Box::pin(async {
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => Err(Cancelled),
                        sent = subscriber.tx.send(message) => Ok(sent.is_ok()),
                    }
                })
                .await
            }
        },
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
