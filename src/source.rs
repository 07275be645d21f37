//! The `EventSource` handle and `Subscription`s: what users hold while the
//! supervisor task runs.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::builder::EventSourceBuilder;
use crate::error::Error;
use crate::mailbox::{self, Receiver, Sender};
use crate::message::{Message, State, Stats};
use crate::supervisor::Supervisor;

/// What a slow subscriber does to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowSubscriber {
    /// The supervisor waits until the subscriber has room: nothing is lost, and
    /// the TCP window pushes back on the server. Every subscriber of the source
    /// waits with it.
    #[default]
    Wait,
    /// Messages that do not fit are dropped for this subscriber only, which then
    /// receives [`Message::Missed`] with the count before its next message.
    Skip,
}

/// Per-subscriber settings, for [`EventSource::subscribe_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions {
    pub(crate) capacity: usize,
    pub(crate) slow: SlowSubscriber,
    pub(crate) comments: bool,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            capacity: 256,
            slow: SlowSubscriber::Wait,
            comments: false,
        }
    }
}

impl SubscribeOptions {
    /// How many messages may wait in this subscriber's channel. Default: 256.
    ///
    /// A subscription takes everything queued at once and reads through it, so
    /// a slow subscriber may hold up to twice this many messages in memory.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// What happens when the channel is full. Default: [`SlowSubscriber::Wait`].
    pub fn slow_subscriber(mut self, slow: SlowSubscriber) -> Self {
        self.slow = slow;
        self
    }

    /// Whether comment lines (keep-alives) are delivered as [`Message::Comment`].
    /// Default: false.
    pub fn comments(mut self, comments: bool) -> Self {
        self.comments = comments;
        self
    }
}

/// Requests from handles to the supervisor.
#[derive(Debug)]
pub(crate) enum Command {
    Subscribe(Sender),
    ReconnectNow,
}

/// State the supervisor publishes and handles read.
#[derive(Debug)]
pub(crate) struct Shared {
    state: AtomicU8,
    last_event_id: Mutex<String>,
    pub(crate) attempts: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) bytes: AtomicU64,
    connected: Mutex<(Duration, Option<Instant>)>,
    last_error: Mutex<Option<Error>>,
    pub(crate) closed_by_user: AtomicBool,
    /// Commands not yet taken by the supervisor; `None` once it has ended.
    commands: Mutex<Option<Vec<Command>>>,
    command_sent: Notify,
    finished: AtomicBool,
    finished_notify: Notify,
}

impl Shared {
    pub(crate) fn new(last_event_id: String) -> Self {
        Self {
            state: AtomicU8::new(State::Connecting.to_u8()),
            last_event_id: Mutex::new(last_event_id),
            attempts: AtomicU64::new(0),
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            connected: Mutex::new((Duration::ZERO, None)),
            last_error: Mutex::new(None),
            closed_by_user: AtomicBool::new(false),
            commands: Mutex::new(Some(Vec::new())),
            command_sent: Notify::new(),
            finished: AtomicBool::new(false),
            finished_notify: Notify::new(),
        }
    }

    /// Queues a command for the supervisor; dropped if it has ended.
    fn send(&self, command: Command) {
        let mut commands = self.commands.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(commands) = commands.as_mut() {
            commands.push(command);
            self.command_sent.notify_one();
        }
    }

    /// The commands sent since the last call, oldest first.
    pub(crate) fn take_commands(&self) -> Vec<Command> {
        self.commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Completes when a command may be waiting.
    pub(crate) async fn command_sent(&self) {
        self.command_sent.notified().await;
    }

    /// The supervisor has ended: later commands are dropped (a late subscriber's
    /// subscription ends at once) and `close()` returns.
    pub(crate) fn finish(&self) {
        let pending = self
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(pending);
        self.finished.store(true, Ordering::Release);
        self.finished_notify.notify_waiters();
    }

    async fn wait_finished(&self) {
        loop {
            let notified = self.finished_notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a `finish` in between still wakes it.
            notified.as_mut().enable();
            if self.finished.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn set_state(&self, state: State) {
        self.state.store(state.to_u8(), Ordering::Relaxed);
        let mut connected = self
            .connected
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match (state, connected.1) {
            (State::Open, None) => connected.1 = Some(Instant::now()),
            (State::Open, Some(_)) => {}
            (_, Some(since)) => {
                connected.0 += since.elapsed();
                connected.1 = None;
            }
            (_, None) => {}
        }
    }

    pub(crate) fn set_last_event_id(&self, id: &str) {
        let mut current = self
            .last_event_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *current != id {
            id.clone_into(&mut current);
        }
    }

    pub(crate) fn set_last_error(&self, error: &Error) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error.clone());
    }

    fn stats(&self) -> Stats {
        let attempts = self.attempts.load(Ordering::Relaxed);
        let connected = *self
            .connected
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Stats {
            attempts,
            reconnects: attempts.saturating_sub(1),
            events: self.events.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            connected: connected.0 + connected.1.map_or(Duration::ZERO, |since| since.elapsed()),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// Owned by every handle and subscription; dropping the last one stops the task.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) cancel: CancellationToken,
    pub(crate) defaults: SubscribeOptions,
    /// The supervisor until [`EventSource::start`] spawns it.
    /// Boxed: once started, an empty slot costs a pointer, not a supervisor.
    pub(crate) unstarted: Mutex<Option<Box<Supervisor>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A handle to a running source: a supervisor task that connects, reconnects and
/// fans messages out to its [`Subscription`]s.
///
/// Cheap to clone. The task runs while any handle or subscription exists; when
/// the last one is dropped, the task stops and its connection is closed.
///
/// # Examples
///
/// ```no_run
/// use everstream::{EventSource, Message};
///
/// # async fn run() -> Result<(), everstream::Error> {
/// let source = EventSource::builder("http://127.0.0.1:8080/events").start()?;
/// let mut first = source.subscribe();
/// let mut second = source.subscribe(); // same connection, no second request
/// tokio::spawn(async move { while let Some(_message) = second.recv().await {} });
/// while let Some(message) = first.recv().await {
///     if let Message::Event(event) = message {
///         println!("{} (last id {:?})", event.data(), source.last_event_id());
///     }
/// }
/// source.close().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct EventSource {
    pub(crate) inner: Arc<Inner>,
}

impl EventSource {
    /// Starts configuring a source for `url`.
    pub fn builder(url: impl AsRef<str>) -> EventSourceBuilder {
        EventSourceBuilder::new(url.as_ref())
    }

    /// Adds a subscriber to the same connection, with the builder's defaults.
    ///
    /// It receives the messages from now on. If the source has already stopped,
    /// the subscription ends at once.
    pub fn subscribe(&self) -> Subscription {
        self.subscribe_with(self.inner.defaults)
    }

    /// Adds a subscriber with its own channel capacity, slow-subscriber mode and
    /// comment setting.
    pub fn subscribe_with(&self, options: SubscribeOptions) -> Subscription {
        let (sender, receiver) = mailbox::mailbox(options);
        // If the supervisor is gone the sender is dropped and `receiver` ends at once.
        self.inner.shared.send(Command::Subscribe(sender));
        Subscription {
            receiver,
            inner: Arc::clone(&self.inner),
        }
    }

    /// The last event ID: sent as `Last-Event-ID` on the next reconnection.
    pub fn last_event_id(&self) -> String {
        self.inner
            .shared
            .last_event_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Where the source is in its lifecycle.
    pub fn state(&self) -> State {
        State::from_u8(self.inner.shared.state.load(Ordering::Relaxed))
    }

    /// Counters for monitoring.
    pub fn stats(&self) -> Stats {
        self.inner.shared.stats()
    }

    /// Starts the supervisor task, if it has not started yet: the first
    /// connection attempt begins. Sources from
    /// [`EventSourceBuilder::start`] and [`EventSourceBuilder::subscribe`] are
    /// already started; this is for [`EventSourceBuilder::build`].
    ///
    /// # Panics
    ///
    /// Panics when called outside a tokio runtime.
    pub fn start(&self) {
        let unstarted = self
            .inner
            .unstarted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(supervisor) = unstarted {
            tokio::spawn(supervisor.run());
        }
    }

    /// Drops the current connection (or skips the current wait) and reconnects at
    /// once, with `Last-Event-ID`.
    pub fn reconnect_now(&self) {
        self.inner.shared.send(Command::ReconnectNow);
    }

    /// Stops the supervisor and waits until it has ended: its connection closed,
    /// its timers gone, every subscriber sent [`Message::Closed`] (when its
    /// channel has room).
    ///
    /// # Cancellation safety
    ///
    /// Cancelling this future does not undo the stop: the task still ends.
    pub async fn close(&self) {
        self.inner
            .shared
            .closed_by_user
            .store(true, Ordering::Relaxed);
        self.inner.cancel.cancel();
        // A source never started still tells its subscribers it closed.
        self.start();
        // Also done when the task is gone because its runtime was dropped.
        self.inner.shared.wait_finished().await;
    }
}

/// One subscriber's stream of [`Message`]s. A `futures::Stream`; or call
/// [`recv`](Self::recv).
///
/// Holding a subscription keeps its source running.
#[derive(Debug)]
pub struct Subscription {
    receiver: Receiver,
    inner: Arc<Inner>,
}

impl Subscription {
    /// The next message, or `None` after the source has stopped.
    ///
    /// # Cancellation safety
    ///
    /// Cancel-safe: a message is never lost when the future is dropped unfinished.
    pub async fn recv(&mut self) -> Option<Message> {
        std::future::poll_fn(|cx| self.poll_message(cx)).await
    }

    /// A handle to the source this subscription belongs to.
    pub fn source(&self) -> EventSource {
        EventSource {
            inner: Arc::clone(&self.inner),
        }
    }

    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.receiver.poll_recv(cx)
    }
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.poll_message(cx)
    }
}
