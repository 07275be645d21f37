//! `EventSource::builder(url) ... subscribe()`: configuration, validated once.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Request, Url};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::classify::{Decision, Outcome};
use crate::error::Error;
use crate::parser::Limits;
use crate::source::{EventSource, Inner, Shared, SlowSubscriber, SubscribeOptions, Subscription};
use crate::supervisor::Supervisor;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The per-attempt request hook, type-erased.
pub(crate) type RequestHook =
    Arc<dyn Fn(u64, Request) -> BoxFuture<'static, Result<Request, BoxError>> + Send + Sync>;

/// The user's override of reconnect decisions, type-erased.
pub(crate) type Classifier = Arc<dyn Fn(Outcome<'_>, Decision) -> Decision + Send + Sync>;

/// Everything the supervisor needs, validated.
pub(crate) struct Config {
    pub(crate) url: Url,
    pub(crate) method: Method,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
    pub(crate) client: Client,
    pub(crate) backoff: Backoff,
    pub(crate) stable_period: Duration,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) max_attempts: Option<u64>,
    pub(crate) max_elapsed: Option<Duration>,
    pub(crate) retry_after_ceiling: Duration,
    pub(crate) limits: Limits,
    pub(crate) jitter_seed: Option<u64>,
    pub(crate) request_hook: Option<RequestHook>,
    pub(crate) classifier: Option<Classifier>,
    #[cfg(feature = "backoff")]
    pub(crate) policy: Option<Box<dyn backoff::backoff::Backoff + Send>>,
}

/// Configures and starts an [`EventSource`]. Each setter documents its default.
///
/// Invalid input (a bad URL, header or delay) is remembered and reported by the
/// terminal call ([`subscribe`](Self::subscribe) or [`start`](Self::start)).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use everstream::EventSource;
///
/// # async fn run() -> Result<(), everstream::Error> {
/// let mut subscription = EventSource::builder("http://127.0.0.1:8080/events")
///     .header("authorization", "Bearer secret")
///     .last_event_id("1041")
///     .retry_delay(Duration::from_millis(500))
///     .max_delay(Duration::from_secs(10))
///     .read_timeout(Duration::from_secs(45))
///     .subscribe()?;
/// while let Some(message) = subscription.recv().await {
///     println!("{message:?}");
/// }
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `subscribe()` or `start()`"]
pub struct EventSourceBuilder {
    error: Option<Error>,
    url: Option<Url>,
    method: Method,
    headers: HeaderMap,
    body: Option<Bytes>,
    client: Option<Client>,
    last_event_id: String,
    backoff: Backoff,
    stable_period: Duration,
    read_timeout: Option<Duration>,
    connect_timeout: Duration,
    max_redirects: usize,
    max_attempts: Option<u64>,
    max_elapsed: Option<Duration>,
    retry_after_ceiling: Duration,
    limits: Limits,
    subscribe: SubscribeOptions,
    jitter_seed: Option<u64>,
    request_hook: Option<RequestHook>,
    classifier: Option<Classifier>,
    #[cfg(feature = "backoff")]
    policy: Option<Box<dyn backoff::backoff::Backoff + Send>>,
}

impl fmt::Debug for EventSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may carry secrets: list names only.
        f.debug_struct("EventSourceBuilder")
            .field(
                "url",
                &self.url.as_ref().map(crate::supervisor::redacted_url),
            )
            .field("method", &self.method)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("backoff", &self.backoff)
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl EventSourceBuilder {
    pub(crate) fn new(url: &str) -> Self {
        let (url, error) = match Url::parse(url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => (Some(url), None),
            Ok(url) => (
                None,
                Some(Error::config(format!(
                    "unsupported URL scheme {:?}",
                    url.scheme()
                ))),
            ),
            Err(error) => (None, Some(Error::config(format!("invalid URL: {error}")))),
        };
        Self {
            error,
            url,
            method: Method::GET,
            headers: HeaderMap::new(),
            body: None,
            client: None,
            last_event_id: String::new(),
            backoff: Backoff::default(),
            stable_period: Duration::from_secs(5),
            read_timeout: Some(Duration::from_secs(60)),
            connect_timeout: Duration::from_secs(10),
            max_redirects: 10,
            max_attempts: None,
            max_elapsed: None,
            retry_after_ceiling: Duration::from_secs(300),
            limits: Limits::default(),
            subscribe: SubscribeOptions::default(),
            jitter_seed: None,
            request_hook: None,
            classifier: None,
            #[cfg(feature = "backoff")]
            policy: None,
        }
    }

    fn fail(mut self, error: Error) -> Self {
        self.error.get_or_insert(error);
        self
    }

    /// The HTTP method. Default: `GET`.
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Adds a request header, sent on every attempt. An invalid name or value is
    /// reported by the terminal call. Default: only `Accept: text/event-stream`
    /// and `Cache-Control: no-store`, unless set here.
    pub fn header(self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let name = match HeaderName::from_bytes(name.as_ref().as_bytes()) {
            Ok(name) => name,
            Err(_) => return self.fail(Error::config("invalid header name")),
        };
        let mut value = match HeaderValue::from_str(value.as_ref()) {
            Ok(value) => value,
            // The value is never echoed: it may be a secret.
            Err(_) => return self.fail(Error::config(format!("invalid value for header {name}"))),
        };
        value.set_sensitive(is_sensitive(&name));
        let mut this = self;
        this.headers.append(name, value);
        this
    }

    /// Adds all of `headers`, sent on every attempt. Default: none.
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        for (name, mut value) in headers {
            if let Some(name) = name {
                value.set_sensitive(value.is_sensitive() || is_sensitive(&name));
                self.headers.append(name, value);
            }
        }
        self
    }

    /// The request body, re-sent on every attempt (shared, not copied).
    /// Default: none.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// The `reqwest::Client` to use. Its own timeouts, proxy and redirect policy
    /// apply; give it no overall `timeout`, which would cut every stream.
    /// Default: a client built for streaming (10 s connect timeout, no overall
    /// timeout, up to [`max_redirects`](Self::max_redirects) redirects). Each
    /// default client costs about 140 KiB: pass one shared client when running
    /// many sources.
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The last event ID to resume from: sent as `Last-Event-ID` on the first
    /// attempt. Default: empty (no header).
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = id.into();
        self
    }

    /// The initial reconnection delay, used until the server sends `retry:`.
    /// Never below [`min_delay`](Self::min_delay). Default: 1 s.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.backoff.initial = delay;
        self
    }

    /// The maximum reconnection delay (backoff and server `retry:` alike; a
    /// `Retry-After` has its own [`retry_after_ceiling`](Self::retry_after_ceiling)).
    /// Default: 30 s.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.backoff.max = delay;
        self
    }

    /// The shortest reconnection delay, so `retry: 0` cannot cause a busy loop.
    /// Default: 100 ms.
    pub fn min_delay(mut self, delay: Duration) -> Self {
        self.backoff.floor = delay;
        self
    }

    /// Growth of the delay per consecutive failure (at least 1). Default: 2.
    pub fn backoff_factor(mut self, factor: f64) -> Self {
        self.backoff.factor = factor;
        self
    }

    /// Up to this fraction of each delay is added at random, so many clients do
    /// not reconnect in step (in `[0, 1]`; jitter only adds, so a server's
    /// `retry:` is never undercut, and the result never exceeds the maximum).
    /// Default: 0.5.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.backoff.jitter = jitter;
        self
    }

    /// Seeds the jitter's random numbers, for reproducible runs.
    /// Default: a random seed.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// How long a connection must stay open before the backoff resets to the base
    /// delay. Default: 5 s.
    pub fn stable_period(mut self, period: Duration) -> Self {
        self.stable_period = period;
        self
    }

    /// If no byte arrives for this long (keep-alive comments count), the
    /// connection is dropped and the source reconnects. Also bounds the wait for
    /// response headers. `None` disables it. Default: 60 s.
    pub fn read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.read_timeout = timeout.into();
        self
    }

    /// TCP connect timeout of the default client. Default: 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Redirects the default client follows per attempt; a longer chain (or a
    /// loop) is a fatal error. Default: 10.
    pub fn max_redirects(mut self, redirects: usize) -> Self {
        self.max_redirects = redirects;
        self
    }

    /// Give up after this many consecutive failed attempts without a healthy
    /// connection. Default: never.
    pub fn max_attempts(mut self, attempts: u64) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Give up when no connection has been healthy for this long.
    /// Default: never.
    pub fn max_elapsed(mut self, elapsed: Duration) -> Self {
        self.max_elapsed = Some(elapsed);
        self
    }

    /// The longest `Retry-After` honoured; longer ones are capped to it.
    /// Default: 5 minutes.
    pub fn retry_after_ceiling(mut self, ceiling: Duration) -> Self {
        self.retry_after_ceiling = ceiling;
        self
    }

    /// Line and event size limits. Default: [`Limits::default`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Each subscriber's channel capacity, for subscribers without their own
    /// [`SubscribeOptions`]. Default: 256.
    pub fn channel_capacity(mut self, capacity: usize) -> Self {
        self.subscribe = self.subscribe.capacity(capacity);
        self
    }

    /// What a slow subscriber does to the others. Default: [`SlowSubscriber::Wait`].
    pub fn slow_subscriber(mut self, slow: SlowSubscriber) -> Self {
        self.subscribe = self.subscribe.slow_subscriber(slow);
        self
    }

    /// Deliver comment lines (keep-alives) to subscribers. Default: false.
    pub fn comments(mut self, comments: bool) -> Self {
        self.subscribe = self.subscribe.comments(comments);
        self
    }

    /// Called before every connection attempt with the attempt number (from 1)
    /// and the request about to be sent, which it returns, changed as it likes:
    /// refresh an expiring token, re-sign. An error fails the attempt (retried by
    /// default). Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// use everstream::EventSource;
    /// use everstream::reqwest::header::{AUTHORIZATION, HeaderValue};
    ///
    /// let builder = EventSource::builder("http://127.0.0.1:8080/events")
    ///     .on_request(|attempt, mut request| async move {
    ///         let token = format!("Bearer token-{attempt}");
    ///         request.headers_mut().insert(AUTHORIZATION, HeaderValue::from_str(&token)?);
    ///         Ok(request)
    ///     });
    /// ```
    pub fn on_request<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(u64, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Request, BoxError>> + Send + 'static,
    {
        self.request_hook = Some(Arc::new(move |attempt, request| {
            hook(attempt, request).boxed()
        }));
        self
    }

    /// Overrides reconnect decisions: called with every [`Outcome`] and the
    /// default [`Decision`], it returns the decision to apply.
    /// Default: the built-in rules (see `docs/reconnection.md`).
    ///
    /// # Examples
    ///
    /// ```
    /// use everstream::{Decision, EventSource, Outcome};
    ///
    /// // Treat 401 as retryable: the request hook refreshes the token.
    /// let builder = EventSource::builder("http://127.0.0.1:8080/events")
    ///     .classify(|outcome, default| match outcome {
    ///         Outcome::Failed(error) if error.status().is_some_and(|s| s == 401) => {
    ///             Decision::Reconnect { at_least: None }
    ///         }
    ///         _ => default,
    ///     });
    /// ```
    pub fn classify<F>(mut self, classifier: F) -> Self
    where
        F: Fn(Outcome<'_>, Decision) -> Decision + Send + Sync + 'static,
    {
        self.classifier = Some(Arc::new(classifier));
        self
    }

    /// Uses a `backoff` crate policy for reconnection delays instead of the
    /// built-in jittered exponential backoff. It is `reset()` after a stable
    /// connection; when it returns `None` the source gives up. The minimum delay
    /// and `Retry-After` still apply. Default: the built-in backoff.
    #[cfg(feature = "backoff")]
    pub fn backoff_policy(
        mut self,
        policy: impl backoff::backoff::Backoff + Send + 'static,
    ) -> Self {
        self.policy = Some(Box::new(policy));
        self
    }

    /// Creates the source without starting it: add subscribers with
    /// [`EventSource::subscribe`], then call [`EventSource::start`]. Every
    /// subscriber added before the start sees every message, which matters when
    /// fanning one stream out to several consumers.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), everstream::Error> {
    /// let source = everstream::EventSource::builder("http://127.0.0.1:8080/events").build()?;
    /// let dashboard = source.subscribe();
    /// let audit_log = source.subscribe();
    /// source.start(); // both see the first event
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// Returns the first invalid setting ([`Error::is_config`]): URL, header,
    /// delays, or a default client that cannot be built.
    pub fn build(self) -> Result<EventSource, Error> {
        let (config, last_event_id, defaults) = self.into_config()?;
        let shared = Arc::new(Shared::new(last_event_id.clone()));
        let cancel = CancellationToken::new();
        let supervisor =
            Supervisor::new(config, last_event_id, Arc::clone(&shared), cancel.clone());
        Ok(EventSource {
            inner: Arc::new(Inner {
                shared,
                cancel,
                defaults,
                unstarted: Mutex::new(Some(Box::new(supervisor))),
            }),
        })
    }

    /// Starts the supervisor and returns its first subscription, which sees
    /// every message from the first connection attempt on.
    ///
    /// # Errors
    ///
    /// Returns the first invalid setting ([`Error::is_config`]): URL, header,
    /// delays, or a default client that cannot be built.
    ///
    /// # Panics
    ///
    /// Panics when called outside a tokio runtime.
    pub fn subscribe(self) -> Result<Subscription, Error> {
        let source = self.build()?;
        let subscription = source.subscribe();
        source.start();
        Ok(subscription)
    }

    /// Starts the supervisor and returns the handle. Subscribers added later see
    /// the messages from then on; use [`build`](Self::build) to add them first.
    ///
    /// # Errors
    ///
    /// Returns the first invalid setting ([`Error::is_config`]): URL, header,
    /// delays, or a default client that cannot be built.
    ///
    /// # Panics
    ///
    /// Panics when called outside a tokio runtime.
    pub fn start(self) -> Result<EventSource, Error> {
        let source = self.build()?;
        source.start();
        Ok(source)
    }

    fn into_config(self) -> Result<(Config, String, SubscribeOptions), Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let url = self.url.ok_or_else(|| Error::config("missing URL"))?;
        self.backoff.validate().map_err(Error::config)?;
        let client = match self.client {
            Some(client) => client,
            None => Client::builder()
                .connect_timeout(self.connect_timeout)
                .redirect(reqwest::redirect::Policy::limited(self.max_redirects))
                .build()
                .map_err(|error| Error::config(format!("cannot build the HTTP client: {error}")))?,
        };
        let config = Config {
            url,
            method: self.method,
            headers: self.headers,
            body: self.body,
            client,
            backoff: self.backoff,
            stable_period: self.stable_period,
            read_timeout: self.read_timeout,
            max_attempts: self.max_attempts,
            max_elapsed: self.max_elapsed,
            retry_after_ceiling: self.retry_after_ceiling,
            limits: self.limits,
            jitter_seed: self.jitter_seed,
            request_hook: self.request_hook,
            classifier: self.classifier,
            #[cfg(feature = "backoff")]
            policy: self.policy,
        };
        Ok((config, self.last_event_id, self.subscribe))
    }
}

/// Headers whose values must never appear in logs or `Debug` output.
fn is_sensitive(name: &HeaderName) -> bool {
    use reqwest::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
    name == AUTHORIZATION
        || name == PROXY_AUTHORIZATION
        || name == COOKIE
        || name.as_str().contains("token")
        || name.as_str().contains("key")
        || name.as_str().contains("secret")
}
