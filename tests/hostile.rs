//! Hostile and broken servers: each fault gets a clear error, bounded memory and
//! a sane reconnection, never a hang or a hot loop.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use everstream::{CloseReason, EventSource, Limits, Message, SlowSubscriber, SubscribeOptions};
use support::{MS, Reply, Server, Step, collect_until, event_count, fast, numbered, send};

fn data(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Event(e) => Some(e.data().to_owned()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn endless_line_is_reported_memory_stays_bounded_and_the_client_reconnects() {
    // 1 MiB of `data:` without a newline per connection, far past a 16 KiB limit.
    let chunk = vec![b'x'; 8192];
    let server = Server::start(move |_, index| {
        if index == 0 {
            let mut steps = vec![send("id: 1\ndata: before\n\ndata: ")];
            steps.extend((0..128).map(|_| send(chunk.clone())));
            steps.push(Step::Stall);
            Reply::sse(steps)
        } else {
            Reply::sse(vec![send("id: 2\ndata: after\n\n"), Step::Stall])
        }
    })
    .await;
    let mut subscription = fast(server.url("/"))
        .limits(Limits::default().max_line_length(16 * 1024))
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, event_count(2)).await;
    assert_eq!(data(&messages), ["before", "after"]);
    let limit_errors = messages
        .iter()
        .filter(|m| matches!(m, Message::Error(e) if e.is_limit()))
        .count();
    assert_eq!(limit_errors, 1, "reported once");
    assert!(messages.iter().any(|m| matches!(
        m,
        Message::Disconnected { error: Some(e), will_retry: true } if e.is_limit()
    )));
    assert_eq!(server.requests()[1].header("last-event-id"), Some("1"));
}

#[tokio::test]
async fn an_oversized_event_is_skipped_in_place_without_reconnecting() {
    let big = format!("data: {}\n\n", "y".repeat(40_000));
    let server = Server::always(Reply::sse(vec![
        send("data: small\n\n"),
        send(big),
        send("data: next\n\n"),
        Step::Stall,
    ]))
    .await;
    let mut subscription = fast(server.url("/"))
        .limits(
            Limits::default()
                .max_line_length(1 << 20)
                .max_event_size(32 * 1024),
        )
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, event_count(2)).await;
    assert_eq!(data(&messages), ["small", "next"]);
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, Message::Error(e) if e.is_limit()))
    );
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn one_byte_per_write_for_a_long_stream() {
    let body = numbered(0, 300);
    let steps = body.bytes().map(|b| send(vec![b])).collect();
    let server = Server::always(Reply::sse(steps)).await;
    let mut subscription = fast(server.url("/")).subscribe().unwrap();
    let messages = collect_until(&mut subscription, event_count(300)).await;
    let expected: Vec<String> = (0..300).map(|k| format!("event {k}")).collect();
    assert_eq!(data(&messages), expected);
}

#[tokio::test]
async fn a_body_that_is_not_utf8_never_stalls() {
    let mut garbage: Vec<u8> = (0..4096u32).map(|i| 0x80 + (i * 7 % 0x7F) as u8).collect();
    garbage.extend_from_slice(b"\n\ndata: \xC3\x28\xFF\n\ndata: fine\n\n");
    let server = Server::always(Reply::sse(vec![send(garbage), Step::Stall])).await;
    let mut subscription = fast(server.url("/")).subscribe().unwrap();
    let messages = collect_until(&mut subscription, event_count(2)).await;
    assert_eq!(data(&messages), ["\u{FFFD}(\u{FFFD}", "fine"]);
}

#[tokio::test]
async fn huge_retry_values_are_capped_by_the_maximum_delay() {
    let huge = format!("retry: {}\ndata: a\n\n", "9".repeat(200));
    let server = Server::start(move |_, index| match index {
        0 => Reply::sse(vec![
            send(format!("retry: {}\n\n", u64::MAX)),
            send(huge.clone()),
        ]),
        _ => Reply::sse(vec![send("data: b\n\n"), Step::Stall]),
    })
    .await;
    let mut subscription = fast(server.url("/"))
        .max_delay(50 * MS)
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, event_count(2)).await;
    let delay = messages.iter().find_map(|m| match m {
        Message::Retrying { delay, .. } => Some(*delay),
        _ => None,
    });
    assert_eq!(delay, Some(50 * MS));
}

#[tokio::test]
async fn a_slow_lossless_subscriber_does_not_trip_the_read_timeout() {
    let server = Server::always(Reply::sse(vec![send(numbered(0, 50)), Step::Stall])).await;
    let mut slow = fast(server.url("/"))
        .read_timeout(100 * MS)
        .channel_capacity(2)
        .subscribe()
        .unwrap();
    let source = slow.source();
    let mut seen = 0;
    while seen < 50 {
        if let Some(Message::Event(_)) = slow.recv().await {
            seen += 1;
            // 50 events x 10 ms: far longer than the read timeout in total.
            tokio::time::sleep(10 * MS).await;
        }
    }
    assert_eq!(server.request_count(), 1, "no spurious stall detection");
    source.close().await;
}

#[tokio::test]
async fn tls_to_a_plain_http_port_is_an_error_not_a_hang() {
    let server = Server::always(Reply::sse(vec![send("data: a\n\n")])).await;
    let url = format!("https://{}/", server.addr);
    let mut subscription = fast(url).max_attempts(2).subscribe().unwrap();
    let messages = collect_until(&mut subscription, |m| matches!(m, Message::Closed(_))).await;
    let Some(Message::Closed(CloseReason::GaveUp { last_error, .. })) = messages.last() else {
        panic!("{messages:#?}");
    };
    assert!(last_error.as_ref().unwrap().is_transport());
}

#[tokio::test]
async fn dns_failure_is_retried_with_growing_backoff() {
    let client = support::client_without_dns();
    let mut subscription = EventSource::builder("http://events.example.invalid/stream")
        .client(client)
        .retry_delay(5 * MS)
        .min_delay(5 * MS)
        .max_delay(Duration::from_secs(1))
        .jitter(0.0)
        .max_attempts(5)
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, |m| matches!(m, Message::Closed(_))).await;
    let delays: Vec<Duration> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Retrying { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [5, 10, 20, 40].map(|ms| ms * MS));
    assert!(matches!(
        messages.last(),
        Some(Message::Closed(CloseReason::GaveUp { attempts: 5, last_error: Some(e), .. })) if e.is_connect() || e.is_transport()
    ));
}

/// Captures everything logged, at every level, while it is the default subscriber.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn credentials_are_never_logged_and_not_sent_to_another_origin() {
    const SECRET: &str = "Bearer super-secret-token-value";
    let other = Server::always(Reply::sse(vec![
        send("id: 1\ndata: elsewhere\n\n"),
        Step::Stall,
    ]))
    .await;
    let other_url = other.url("/landing");
    let origin =
        Server::start(
            move |request, _| match request.path.split('?').next().unwrap_or("") {
                "/same" => Reply::status(302, "").header("location", "/same-target"),
                "/same-target" => Reply::sse(vec![send("data: same\n\n")]),
                _ => Reply::status(307, "").header("location", &other_url),
            },
        )
        .await;

    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // Same origin: the header follows the redirect.
    let mut subscription = EventSource::builder(origin.url("/same?api_key=query-secret"))
        .header("authorization", SECRET)
        .max_attempts(1)
        .subscribe()
        .unwrap();
    collect_until(&mut subscription, event_count(1)).await;
    subscription.source().close().await;
    let same_target = origin
        .requests()
        .into_iter()
        .find(|r| r.path == "/same-target")
        .unwrap();
    assert_eq!(same_target.header("authorization"), Some(SECRET));

    // Another origin (another port): the header is dropped.
    let mut subscription = EventSource::builder(origin.url("/cross"))
        .header("authorization", SECRET)
        .subscribe()
        .unwrap();
    collect_until(&mut subscription, event_count(1)).await;
    subscription.source().close().await;
    assert_eq!(other.requests()[0].header("authorization"), None);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("connecting"),
        "tracing captured nothing: {logs}"
    );
    assert!(
        !logs.contains("super-secret"),
        "a credential was logged:\n{logs}"
    );
    assert!(
        !logs.contains("query-secret"),
        "a query secret was logged:\n{logs}"
    );
}

async fn rss_kib() -> Option<u64> {
    let status = tokio::fs::read_to_string("/proc/self/status").await.ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn close_ends_the_task_and_ten_thousand_sources_keep_memory_flat() {
    let server = Server::always(Reply::sse(vec![send("data: a\n\n"), Step::Stall])).await;
    let client = support::client();
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline_tasks = metrics.num_alive_tasks();

    // One open source: closing it ends its task and its TCP connection.
    let mut subscription = fast(server.url("/"))
        .client(client.clone())
        .subscribe()
        .unwrap();
    collect_until(&mut subscription, event_count(1)).await;
    subscription.source().close().await;
    drop(subscription);
    assert!(server.wait_open_connections(0).await);
    // The server's own per-connection task is gone too once the socket closed.
    tokio::time::sleep(20 * MS).await;
    assert_eq!(metrics.num_alive_tasks(), baseline_tasks);

    // Start and close many sources (closed while connecting to a silent port).
    let (addr, _listener): (SocketAddr, _) = support::silent_listener().await;
    let url = format!("http://{addr}/");
    let mut rss_after_warmup = 0;
    for i in 0..10_000 {
        let source = EventSource::builder(&url)
            .client(client.clone())
            .start()
            .unwrap();
        source.close().await;
        if i == 1_000 {
            rss_after_warmup = rss_kib().await.unwrap_or(0);
        }
    }
    let rss_end = rss_kib().await.unwrap_or(0);
    assert_eq!(
        metrics.num_alive_tasks(),
        baseline_tasks + 1,
        "only the silent listener remains"
    );
    let growth = rss_end.saturating_sub(rss_after_warmup);
    println!("RSS after 1,000 sources: {rss_after_warmup} KiB; after 10,000: {rss_end} KiB");
    assert!(
        growth < 16 * 1024,
        "memory grew by {growth} KiB over 9,000 sources"
    );
}

#[tokio::test]
async fn lossy_subscriber_is_told_what_it_missed_even_on_a_quiet_stream() {
    let server = Server::always(Reply::sse(vec![send(numbered(0, 100)), Step::Stall])).await;
    let source = fast(server.url("/")).build().unwrap();
    let mut lossy = source.subscribe_with(
        SubscribeOptions::default()
            .capacity(1)
            .slow_subscriber(SlowSubscriber::Skip),
    );
    let mut lossless = source.subscribe();
    source.start();
    collect_until(&mut lossless, event_count(100)).await;
    // The stream is now quiet; the lossy subscriber still learns its count.
    let messages = collect_until(&mut lossy, |m| matches!(m, Message::Missed { .. })).await;
    let Some(Message::Missed { count }) = messages.last() else {
        unreachable!()
    };
    assert!(*count >= 90, "{count}");
    source.close().await;
}

#[tokio::test]
async fn a_stalled_error_body_does_not_delay_the_retry_past_the_read_timeout() {
    let server = Server::start(|_, index| match index {
        0 => Reply {
            status: 503,
            headers: vec![
                ("content-type".into(), "text/plain".into()),
                ("content-length".into(), "100".into()),
            ],
            body: vec![send("parti"), Step::Stall],
        },
        _ => Reply::sse(vec![send("id: 1\ndata: a\n\n"), Step::Stall]),
    })
    .await;
    let mut subscription = fast(server.url("/events"))
        .read_timeout(100 * MS)
        .subscribe()
        .unwrap();
    let started = std::time::Instant::now();
    let messages = collect_until(&mut subscription, |m| {
        matches!(m, Message::Disconnected { .. })
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
    let Some(Message::Disconnected {
        error: Some(error), ..
    }) = messages.last()
    else {
        unreachable!()
    };
    assert_eq!(error.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(error.body_text(), Some("parti"));
}

#[test]
fn dropping_the_runtime_stops_the_source_and_closes_its_connection() {
    let server_runtime = tokio::runtime::Runtime::new().unwrap();
    let server = server_runtime.block_on(Server::always(Reply::sse(vec![
        send("data: a\n\n"),
        Step::Stall,
    ])));
    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut subscription = client_runtime.block_on(async {
        let mut subscription = fast(server.url("/")).subscribe().unwrap();
        collect_until(&mut subscription, event_count(1)).await;
        subscription
    });
    assert_eq!(server.open_connections(), 1);
    drop(client_runtime);
    assert!(server_runtime.block_on(server.wait_open_connections(0)));
    // The subscription outlives its runtime and simply ends.
    let next = futures::executor::block_on(subscription.recv());
    assert!(next.is_none(), "{next:?}");
}
