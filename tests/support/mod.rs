//! A loopback SSE server with scripted faults and a request log, for tests.
//!
//! Each request is answered by a script: a status, headers and a body made of
//! steps (bytes, pauses, an abrupt abort, a stall). The server counts open TCP
//! connections, so tests can check that a client really closed its socket, and
//! shuts down when dropped.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One step of a response body.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send these bytes as one write.
    Send(Bytes),
    /// Pause.
    Sleep(Duration),
    /// Drop the connection abruptly (the client sees a broken body).
    Abort,
    /// Never send anything again.
    Stall,
}

pub fn send(bytes: impl Into<Bytes>) -> Step {
    Step::Send(bytes.into())
}

/// A scripted response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<Step>,
}

impl Reply {
    /// 200 `text/event-stream` with the given body steps; the body then ends cleanly.
    pub fn sse(body: Vec<Step>) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body,
        }
    }

    /// A plain response with a text body.
    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: vec![send(body.to_owned())],
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Script = dyn Fn(&Recorded, usize) -> Reply + Send + Sync;

/// A running server; shuts down when dropped.
pub struct Server {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
    open: Arc<AtomicUsize>,
    _shutdown: oneshot::Sender<()>,
}

impl Server {
    /// Starts a server on 127.0.0.1 with a random port. `script` gets each request
    /// and its 0-based index and returns the reply.
    pub async fn start(script: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let (shutdown, mut stopped) = oneshot::channel::<()>();
        let (log2, open2) = (log.clone(), open.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else { continue };
                let (log, open, script) = (log2.clone(), open2.clone(), script.clone());
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        handle(request, log.clone(), script.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            log,
            open,
            _shutdown: shutdown,
        }
    }

    /// Serves the same body to every request.
    pub async fn always(reply: Reply) -> Self {
        Self::start(move |_, _| reply.clone()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// TCP connections currently open.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits (real time, bounded) until the number of open connections is `n`.
    pub async fn wait_open_connections(&self, n: usize) -> bool {
        for _ in 0..500 {
            if self.open_connections() == n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

async fn handle(
    request: Request<Incoming>,
    log: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Script>,
) -> Result<Response<BoxBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    let index = {
        let mut log = log.lock().unwrap();
        log.push(recorded.clone());
        log.len() - 1
    };
    let reply = script(&recorded, index);
    let steps = futures::stream::iter(reply.body).then(|step| async move {
        match step {
            Step::Send(bytes) => Some(Ok(Frame::data(bytes))),
            Step::Sleep(duration) => {
                tokio::time::sleep(duration).await;
                None
            }
            Step::Abort => {
                // Let hyper flush what was sent before the connection is cut.
                tokio::task::yield_now().await;
                Some(Err(std::io::Error::other("scripted abort")))
            }
            Step::Stall => futures::future::pending().await,
        }
    });
    let frames = steps.filter_map(|frame| async move { frame });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    *response.status_mut() = StatusCode::from_u16(reply.status).expect("valid status");
    for (name, value) in reply.headers {
        response.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(&value).expect("header value"),
        );
    }
    Ok(response)
}

/// A listener that accepts TCP connections and never answers. Returns its
/// address and a guard that keeps it (and its accepted sockets) alive.
pub async fn silent_listener() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

/// A resolver for which every name fails, like a DNS outage. No network traffic
/// at all, so tests using it can run under tokio's paused clock.
pub struct NoDns;

impl reqwest::dns::Resolve for NoDns {
    fn resolve(&self, _: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async { Err("simulated DNS failure".into()) })
    }
}

/// A client whose every name lookup fails.
pub fn client_without_dns() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(NoDns)
        .build()
        .expect("client")
}

/// One millisecond: test delays are written as multiples of it.
pub const MS: Duration = Duration::from_millis(1);

/// A source builder tuned for fast tests: tiny delays, loopback client, a fixed
/// jitter seed.
pub fn fast(url: impl AsRef<str>) -> everstream::EventSourceBuilder {
    everstream::EventSource::builder(url)
        .client(client())
        .retry_delay(MS)
        .min_delay(MS)
        .max_delay(10 * MS)
        .jitter_seed(1)
}

/// Receives until `stop` matches a message, with a real-time bound.
pub async fn collect_until(
    subscription: &mut everstream::Subscription,
    mut stop: impl FnMut(&everstream::Message) -> bool,
) -> Vec<everstream::Message> {
    let mut messages = Vec::new();
    let result = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(message) = subscription.recv().await {
            let done = stop(&message);
            messages.push(message);
            if done {
                return;
            }
        }
    })
    .await;
    assert!(result.is_ok(), "timed out; got {messages:#?}");
    messages
}

/// Stops at the `n`th event.
pub fn event_count(n: usize) -> impl FnMut(&everstream::Message) -> bool {
    let mut seen = 0;
    move |message| {
        if matches!(message, everstream::Message::Event(_)) {
            seen += 1;
        }
        seen >= n
    }
}

/// Stops at the final message.
pub fn is_closed(message: &everstream::Message) -> bool {
    matches!(message, everstream::Message::Closed(_))
}

/// A client for tests: loopback only, no proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// The first `n` ids of a numbered stream: `id: k` + `data: event k`.
pub fn numbered(from: u64, to: u64) -> String {
    (from..to)
        .map(|k| format!("id: {k}\ndata: event {k}\n\n"))
        .collect()
}
