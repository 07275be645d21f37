//! The reconnecting supervisor against a real loopback server with scripted faults.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use everstream::{
    CloseReason, Decision, DelayCause, EventSource, Message, Outcome, SlowSubscriber, State,
    SubscribeOptions,
};
use support::{
    MS, Reply, Server, Step, collect_until, event_count, fast, is_closed, numbered, send,
};

fn events(messages: &[Message]) -> Vec<(String, String)> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Event(e) => Some((e.id().to_owned(), e.data().to_owned())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn drop_mid_line_and_mid_event_discards_partial_and_resumes_with_last_event_id() {
    let server = Server::start(|request, index| match index {
        0 => Reply::sse(vec![
            send("id: 1\ndata: one\n\nid: 2\ndata: tw"),
            Step::Abort,
        ]),
        1 => {
            assert_eq!(request.header("last-event-id"), Some("1"));
            Reply::sse(vec![
                send("id: 2\ndata: two\n\nid: 3\ndata: three\n"),
                Step::Abort,
            ])
        }
        _ => {
            assert_eq!(request.header("last-event-id"), Some("2"));
            Reply::sse(vec![send("id: 3\ndata: three\n\n"), Step::Stall])
        }
    })
    .await;
    let mut subscription = fast(server.url("/events")).subscribe().unwrap();
    let messages = collect_until(&mut subscription, event_count(3)).await;
    assert_eq!(
        events(&messages),
        [
            ("1".into(), "one".into()),
            ("2".into(), "two".into()),
            ("3".into(), "three".into())
        ]
    );
    assert!(messages.iter().any(|m| matches!(
        m,
        Message::Disconnected {
            error: Some(_),
            will_retry: true
        }
    )));
}

#[tokio::test]
async fn clean_end_reconnects_and_id_survives_events_without_id() {
    let server = Server::start(|request, index| match index {
        0 => Reply::sse(vec![send("id: 7\ndata: a\n\n")]),
        1 => {
            assert_eq!(request.header("last-event-id"), Some("7"));
            Reply::sse(vec![send("data: b\n\n")])
        }
        _ => {
            // Two popular clients lose the ID here: the second connection had no id.
            assert_eq!(request.header("last-event-id"), Some("7"));
            Reply::sse(vec![send("data: c\n\n"), Step::Stall])
        }
    })
    .await;
    let mut subscription = fast(server.url("/events")).subscribe().unwrap();
    let messages = collect_until(&mut subscription, event_count(3)).await;
    assert_eq!(
        events(&messages),
        [
            ("7".into(), "a".into()),
            ("7".into(), "b".into()),
            ("7".into(), "c".into())
        ]
    );
    assert!(messages.iter().any(|m| matches!(
        m,
        Message::Disconnected {
            error: None,
            will_retry: true
        }
    )));
    assert_eq!(subscription.source().last_event_id(), "7");
}

#[tokio::test]
async fn empty_id_resets_and_no_header_is_sent() {
    let server = Server::start(|request, index| match index {
        0 => Reply::sse(vec![send("id: 5\ndata: a\n\nid\ndata: b\n\n")]),
        _ => {
            assert_eq!(request.header("last-event-id"), None);
            Reply::sse(vec![send("data: c\n\n"), Step::Stall])
        }
    })
    .await;
    let mut subscription = fast(server.url("/events"))
        .last_event_id("initial")
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, event_count(3)).await;
    assert_eq!(events(&messages)[1], ("".into(), "b".into()));
    let requests = server.requests();
    assert_eq!(requests[0].header("last-event-id"), Some("initial"));
    assert_eq!(requests[1].header("last-event-id"), None);
}

#[tokio::test]
async fn stall_triggers_read_timeout_and_reconnect() {
    let server = Server::start(|_, index| match index {
        0 => Reply::sse(vec![send("id: 1\ndata: a\n\n"), Step::Stall]),
        _ => Reply::sse(vec![send("id: 2\ndata: b\n\n"), Step::Stall]),
    })
    .await;
    let mut subscription = fast(server.url("/events"))
        .read_timeout(200 * MS)
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, event_count(2)).await;
    let timeout = messages.iter().find_map(|m| match m {
        Message::Disconnected {
            error: Some(error), ..
        } => Some(error.clone()),
        _ => None,
    });
    assert!(timeout.expect("a disconnect").is_timeout());
    assert_eq!(server.requests()[1].header("last-event-id"), Some("1"));
}

#[tokio::test]
async fn keep_alive_comments_count_as_bytes_for_the_read_timeout() {
    let mut steps = vec![send("data: a\n\n")];
    for _ in 0..6 {
        steps.push(Step::Sleep(100 * MS));
        steps.push(send(": keep-alive\n"));
    }
    steps.push(send("data: b\n\n"));
    steps.push(Step::Stall);
    let server = Server::always(Reply::sse(steps)).await;
    let mut subscription = fast(server.url("/events"))
        .read_timeout(300 * MS)
        .comments(true)
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, event_count(2)).await;
    assert_eq!(
        server.request_count(),
        1,
        "no reconnect: keep-alives arrived in time"
    );
    let comments = messages
        .iter()
        .filter(|m| matches!(m, Message::Comment(text) if text == "keep-alive"))
        .count();
    assert_eq!(comments, 6);
}

#[tokio::test]
async fn server_errors_are_retried_then_open() {
    let server = Server::start(|_, index| match index {
        0 => Reply::status(500, "boom"),
        1 => Reply::status(502, "bad gateway"),
        2 => Reply::status(429, "slow down"),
        3 => Reply::status(408, "timeout"),
        _ => Reply::sse(vec![send("data: ok\n\n"), Step::Stall]),
    })
    .await;
    let mut subscription = fast(server.url("/events")).subscribe().unwrap();
    let messages = collect_until(&mut subscription, event_count(1)).await;
    let failures: Vec<u16> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Disconnected {
                error: Some(error),
                will_retry: true,
            } => error.status().map(|s| s.as_u16()),
            _ => None,
        })
        .collect();
    assert_eq!(failures, [500, 502, 429, 408]);
    assert_eq!(server.request_count(), 5);
    let stats = subscription.source().stats();
    assert_eq!(stats.attempts, 5);
    assert_eq!(stats.reconnects, 4);
    assert_eq!(stats.events, 1);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = Server::start(|_, index| match index {
        0 => Reply::status(503, "maintenance").header("retry-after", "1"),
        _ => Reply::sse(vec![send("data: back\n\n"), Step::Stall]),
    })
    .await;
    let started = Instant::now();
    let mut subscription = fast(server.url("/events")).subscribe().unwrap();
    let messages = collect_until(&mut subscription, event_count(1)).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(messages.iter().any(|m| matches!(
        m,
        Message::Retrying { delay, cause: DelayCause::RetryAfter, attempt: 2 } if *delay == Duration::from_secs(1)
    )));
}

#[tokio::test]
async fn no_content_stops_for_good() {
    let server = Server::start(|_, index| match index {
        0 => Reply::sse(vec![send("data: a\n\n")]),
        _ => Reply::status(204, ""),
    })
    .await;
    let mut subscription = fast(server.url("/events")).subscribe().unwrap();
    let messages = collect_until(&mut subscription, is_closed).await;
    assert!(matches!(
        messages.last(),
        Some(Message::Closed(CloseReason::ServerStopped))
    ));
    assert!(subscription.recv().await.is_none());
    tokio::time::sleep(50 * MS).await;
    assert_eq!(server.request_count(), 2);
    assert_eq!(subscription.source().state(), State::Closed);
}

#[tokio::test]
async fn unauthorized_is_fatal_with_status_headers_and_body() {
    let server =
        Server::always(Reply::status(401, "token expired").header("www-authenticate", "Bearer"))
            .await;
    let mut subscription = fast(server.url("/events")).subscribe().unwrap();
    let messages = collect_until(&mut subscription, is_closed).await;
    let Some(Message::Closed(CloseReason::Fatal(error))) = messages.last() else {
        panic!("{messages:#?}");
    };
    assert_eq!(error.status().map(|s| s.as_u16()), Some(401));
    assert_eq!(error.body_text(), Some("token expired"));
    assert_eq!(error.headers().unwrap()["www-authenticate"], "Bearer");
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn wrong_content_type_is_fatal() {
    let server = Server::always(Reply::status(200, "<html>")).await;
    let mut subscription = fast(server.url("/events")).subscribe().unwrap();
    let messages = collect_until(&mut subscription, is_closed).await;
    let Some(Message::Closed(CloseReason::Fatal(error))) = messages.last() else {
        panic!("{messages:#?}");
    };
    assert!(error.is_content_type());
    assert_eq!(error.body_text(), Some("<html>"));
}

#[tokio::test]
async fn redirect_chains_are_followed_and_a_redirect_without_location_is_fatal() {
    let server = Server::start(|request, _| match request.path.as_str() {
        "/events" => Reply::status(301, "").header("location", "/hop1"),
        "/hop1" => Reply::status(307, "").header("location", "/hop2"),
        "/hop2" => Reply::status(302, "").header("location", "/final"),
        "/final" => Reply::sse(vec![send("data: arrived\n\n"), Step::Stall]),
        _ => Reply::status(404, ""),
    })
    .await;
    let mut subscription = EventSource::builder(server.url("/events"))
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, event_count(1)).await;
    assert_eq!(events(&messages), [("".into(), "arrived".into())]);

    let broken = Server::always(Reply::status(302, "nowhere")).await;
    let mut subscription = fast(broken.url("/events")).subscribe().unwrap();
    let messages = collect_until(&mut subscription, is_closed).await;
    let Some(Message::Closed(CloseReason::Fatal(error))) = messages.last() else {
        panic!("{messages:#?}");
    };
    assert!(error.is_redirect());
    assert_eq!(broken.request_count(), 1);
}

#[tokio::test]
async fn redirect_loop_is_fatal() {
    let server = Server::start(|request, _| match request.path.as_str() {
        "/events" => Reply::status(302, "").header("location", "/loop"),
        _ => Reply::status(302, "").header("location", "/events"),
    })
    .await;
    let mut subscription = EventSource::builder(server.url("/events"))
        .max_redirects(5)
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, is_closed).await;
    let Some(Message::Closed(CloseReason::Fatal(error))) = messages.last() else {
        panic!("{messages:#?}");
    };
    assert!(error.is_redirect(), "{error:?}");
    assert_eq!(server.request_count(), 6);
}

#[tokio::test]
async fn server_retry_sets_the_base_delay_and_retry_zero_is_floored() {
    let server = Server::start(|_, index| match index {
        0 => Reply::sse(vec![send("retry: 300\ndata: a\n\n")]),
        1 => Reply::sse(vec![send("retry: 0\ndata: b\n\n")]),
        _ => Reply::sse(vec![send("data: c\n\n"), Step::Stall]),
    })
    .await;
    let mut subscription = fast(server.url("/events"))
        .min_delay(20 * MS)
        .max_delay(Duration::from_secs(5))
        .jitter(0.0)
        .stable_period(Duration::ZERO)
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, event_count(3)).await;
    let delays: Vec<(Duration, DelayCause)> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Retrying { delay, cause, .. } => Some((*delay, *cause)),
            _ => None,
        })
        .collect();
    assert_eq!(
        delays,
        [
            (300 * MS, DelayCause::ServerRetry),
            (20 * MS, DelayCause::ServerRetry)
        ]
    );
}

#[tokio::test]
async fn backoff_grows_on_repeated_failures_and_resets_after_a_stable_connection() {
    let server = Server::start(|_, index| match index {
        0..=2 => Reply::status(500, ""),
        3 => Reply::sse(vec![send("data: up\n\n"), Step::Sleep(150 * MS)]),
        4 => Reply::status(500, ""),
        _ => Reply::sse(vec![send("data: again\n\n"), Step::Stall]),
    })
    .await;
    let mut subscription = fast(server.url("/events"))
        .retry_delay(10 * MS)
        .max_delay(Duration::from_secs(1))
        .jitter(0.0)
        .stable_period(100 * MS)
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, event_count(2)).await;
    let delays: Vec<Duration> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Retrying { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    // 3 failures grow 10, 20, 40; the stable connection resets: 10, then 20.
    assert_eq!(delays, [10, 20, 40, 10, 20].map(|ms| ms * MS));
}

#[tokio::test]
async fn give_up_after_max_attempts() {
    let server = Server::always(Reply::status(503, "down")).await;
    let mut subscription = fast(server.url("/events"))
        .max_attempts(3)
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, is_closed).await;
    let Some(Message::Closed(CloseReason::GaveUp {
        attempts,
        last_error,
        ..
    })) = messages.last()
    else {
        panic!("{messages:#?}");
    };
    assert_eq!(*attempts, 3);
    assert_eq!(
        last_error
            .as_ref()
            .and_then(|e| e.status())
            .map(|s| s.as_u16()),
        Some(503)
    );
    assert_eq!(server.request_count(), 3);
}

#[tokio::test]
async fn give_up_after_max_elapsed() {
    let server = Server::always(Reply::status(503, "down")).await;
    let mut subscription = fast(server.url("/events"))
        .retry_delay(30 * MS)
        .max_delay(30 * MS)
        .max_elapsed(100 * MS)
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, is_closed).await;
    assert!(matches!(
        messages.last(),
        Some(Message::Closed(CloseReason::GaveUp { elapsed, .. })) if *elapsed >= 100 * MS
    ));
}

#[tokio::test]
async fn post_body_and_headers_are_resent_and_the_hook_runs_per_attempt() {
    let server = Server::start(|_, index| match index {
        0 | 1 => Reply::sse(vec![send("id: x\ndata: a\n\n")]),
        _ => Reply::sse(vec![send("data: b\n\n"), Step::Stall]),
    })
    .await;
    let calls = Arc::new(AtomicU64::new(0));
    let seen = calls.clone();
    let mut subscription = fast(server.url("/events"))
        .method(reqwest::Method::POST)
        .header("content-type", "application/json")
        .header("x-static", "yes")
        .body(r#"{"query":"all"}"#)
        .on_request(move |attempt, mut request| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                let token = format!("Bearer token-{attempt}");
                request
                    .headers_mut()
                    .insert("authorization", token.parse()?);
                Ok(request)
            }
        })
        .subscribe()
        .unwrap();
    collect_until(&mut subscription, event_count(3)).await;
    let requests = server.requests();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    for (i, request) in requests.iter().enumerate() {
        assert_eq!(request.method, "POST");
        assert_eq!(&request.body[..], br#"{"query":"all"}"#);
        assert_eq!(request.header("x-static"), Some("yes"));
        assert_eq!(request.header("accept"), Some("text/event-stream"));
        assert_eq!(request.header("cache-control"), Some("no-store"));
        let expected = format!("Bearer token-{}", i + 1);
        assert_eq!(request.header("authorization"), Some(expected.as_str()));
    }
}

#[tokio::test]
async fn a_failing_hook_fails_the_attempt_and_is_retried() {
    let server = Server::always(Reply::sse(vec![send("data: a\n\n"), Step::Stall])).await;
    let mut subscription = fast(server.url("/events"))
        .on_request(|attempt, request| async move {
            if attempt == 1 {
                Err("token service unavailable".into())
            } else {
                Ok(request)
            }
        })
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, event_count(1)).await;
    assert!(messages.iter().any(|m| matches!(
        m,
        Message::Disconnected {
            error: Some(_),
            will_retry: true
        }
    )));
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn two_subscribers_share_one_connection() {
    let server = Server::always(Reply::sse(vec![send(numbered(0, 50)), Step::Stall])).await;
    let source = fast(server.url("/events")).build().unwrap();
    let mut first = source.subscribe();
    let mut second = source.subscribe();
    source.start();
    let a = collect_until(&mut first, event_count(50)).await;
    let b = collect_until(&mut second, event_count(50)).await;
    assert_eq!(events(&a), events(&b));
    assert_eq!(events(&a).len(), 50);
    assert_eq!(server.request_count(), 1);
    assert_eq!(source.last_event_id(), "49");
    assert_eq!(source.state(), State::Open);
    source.close().await;
}

#[tokio::test]
async fn slow_lossless_subscriber_loses_nothing_and_lossy_one_counts_misses() {
    let total = 2000;
    let server = Server::always(Reply::sse(vec![send(numbered(0, total)), Step::Stall])).await;
    let source = fast(server.url("/events"))
        .channel_capacity(8)
        .build()
        .unwrap();
    let mut lossless = source.subscribe();
    let mut lossy = source.subscribe_with(
        SubscribeOptions::default()
            .capacity(4)
            .slow_subscriber(SlowSubscriber::Skip),
    );
    source.start();
    // The lossless subscriber is slow, but reads everything.
    let slow = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < total as usize {
            match lossless.recv().await {
                Some(Message::Event(e)) => {
                    seen.push(e.id().parse::<u64>().unwrap());
                    if seen.len() % 100 == 0 {
                        tokio::time::sleep(MS).await;
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        seen
    });
    // The lossy subscriber does not read until the stream is over.
    let seen = slow.await.unwrap();
    assert_eq!(seen, (0..total).collect::<Vec<_>>());
    let mut received = 0;
    let mut missed = 0;
    while received + missed < total {
        match tokio::time::timeout(Duration::from_secs(5), lossy.recv()).await {
            Ok(Some(Message::Event(_))) => received += 1,
            Ok(Some(Message::Missed { count })) => missed += count,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert!(
        missed > 0,
        "the lossy subscriber should have missed messages"
    );
    // Only events came after its queue filled, so they add up exactly.
    assert_eq!(received + missed, total, "{received} + {missed}");
    source.close().await;
}

#[tokio::test]
async fn a_full_subscriber_mid_batch_delays_but_never_reorders_or_drops_for_the_others() {
    let total = 500;
    let server = Server::always(Reply::sse(vec![send(numbered(0, total)), Step::Stall])).await;
    let source = fast(server.url("/events")).build().unwrap();
    let first = source.subscribe();
    // In the middle: full after every message, so each batch stops there and resumes.
    let slow = source.subscribe_with(SubscribeOptions::default().capacity(1));
    let quitter = source.subscribe();
    // Last: receives the messages themselves, after the others' copies.
    let last = source.subscribe_with(SubscribeOptions::default().capacity(3));
    source.start();
    let read = |mut subscription: everstream::Subscription, pause_every: u64| {
        tokio::spawn(async move {
            let mut ids = Vec::new();
            while ids.len() < total as usize {
                match subscription.recv().await {
                    Some(Message::Event(event)) => {
                        ids.push(event.id().parse::<u64>().unwrap());
                        if pause_every > 0 && (ids.len() as u64).is_multiple_of(pause_every) {
                            tokio::time::sleep(MS).await;
                        }
                    }
                    Some(Message::Missed { .. }) => panic!("a lossless subscriber missed messages"),
                    Some(_) => {}
                    None => break,
                }
            }
            ids
        })
    };
    let readers = [read(first, 0), read(slow, 50), read(last, 0)];
    // A subscriber that goes away mid-stream is dropped without disturbing the rest.
    let mut quitter = quitter;
    collect_until(&mut quitter, event_count(10)).await;
    drop(quitter);
    for reader in readers {
        assert_eq!(reader.await.unwrap(), (0..total).collect::<Vec<_>>());
    }
    assert_eq!(server.request_count(), 1);
    source.close().await;
}

#[tokio::test]
async fn reconnect_now_drops_the_connection_and_resumes() {
    let server = Server::start(|_, index| match index {
        0 => Reply::sse(vec![send("id: 1\ndata: a\n\n"), Step::Stall]),
        _ => Reply::sse(vec![send("id: 2\ndata: b\n\n"), Step::Stall]),
    })
    .await;
    let mut subscription = fast(server.url("/events")).subscribe().unwrap();
    collect_until(&mut subscription, event_count(1)).await;
    subscription.source().reconnect_now();
    collect_until(&mut subscription, event_count(1)).await;
    assert_eq!(server.requests()[1].header("last-event-id"), Some("1"));
    assert!(server.wait_open_connections(1).await);
}

#[tokio::test]
async fn close_while_open_closes_the_tcp_connection() {
    let server = Server::always(Reply::sse(vec![send("data: a\n\n"), Step::Stall])).await;
    let mut subscription = fast(server.url("/events")).subscribe().unwrap();
    collect_until(&mut subscription, event_count(1)).await;
    assert_eq!(server.open_connections(), 1);
    subscription.source().close().await;
    let rest = collect_until(&mut subscription, is_closed).await;
    assert!(matches!(
        rest.last(),
        Some(Message::Closed(CloseReason::ByUser))
    ));
    assert!(subscription.recv().await.is_none());
    assert!(
        server.wait_open_connections(0).await,
        "the server still sees the connection"
    );
}

#[tokio::test]
async fn dropping_every_handle_while_open_stops_the_task_and_closes_tcp() {
    let server = Server::always(Reply::sse(vec![send("data: a\n\n"), Step::Stall])).await;
    let mut subscription = fast(server.url("/events")).subscribe().unwrap();
    collect_until(&mut subscription, event_count(1)).await;
    drop(subscription);
    assert!(server.wait_open_connections(0).await);
}

#[tokio::test]
async fn close_while_connecting_does_not_hang() {
    let (addr, _listener) = support::silent_listener().await;
    let source = EventSource::builder(format!("http://{addr}/"))
        .client(support::client())
        .start()
        .unwrap();
    let mut subscription = source.subscribe();
    tokio::time::sleep(50 * MS).await;
    assert_eq!(source.state(), State::Connecting);
    tokio::time::timeout(Duration::from_secs(5), source.close())
        .await
        .expect("close hangs");
    let rest = collect_until(&mut subscription, is_closed).await;
    assert!(matches!(
        rest.last(),
        Some(Message::Closed(CloseReason::ByUser))
    ));
}

#[tokio::test]
async fn header_wait_is_bounded_by_the_read_timeout() {
    let (addr, _listener) = support::silent_listener().await;
    let mut subscription = EventSource::builder(format!("http://{addr}/"))
        .client(support::client())
        .read_timeout(100 * MS)
        .retry_delay(MS)
        .min_delay(MS)
        .max_attempts(2)
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, is_closed).await;
    let Some(Message::Closed(CloseReason::GaveUp { last_error, .. })) = messages.last() else {
        panic!("{messages:#?}");
    };
    assert!(last_error.as_ref().unwrap().is_timeout());
}

#[tokio::test]
async fn close_and_drop_while_waiting_to_retry() {
    let server = Server::always(Reply::status(503, "")).await;
    let source = fast(server.url("/events"))
        .retry_delay(Duration::from_secs(60))
        .max_delay(Duration::from_secs(60))
        .start()
        .unwrap();
    let mut subscription = source.subscribe();
    collect_until(&mut subscription, |m| matches!(m, Message::Retrying { .. })).await;
    assert_eq!(source.state(), State::Waiting);
    let started = Instant::now();
    source.close().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let rest = collect_until(&mut subscription, is_closed).await;
    assert!(matches!(
        rest.last(),
        Some(Message::Closed(CloseReason::ByUser))
    ));

    // Dropping instead of closing, while waiting.
    let source = fast(server.url("/events"))
        .retry_delay(Duration::from_secs(60))
        .max_delay(Duration::from_secs(60))
        .start()
        .unwrap();
    let mut subscription = source.subscribe();
    collect_until(&mut subscription, |m| matches!(m, Message::Retrying { .. })).await;
    let probe = subscription.source();
    drop(source);
    drop(subscription);
    // `probe` is a handle too: the task keeps running until it goes.
    assert_eq!(probe.state(), State::Waiting);
    drop(probe);
    assert!(server.wait_open_connections(0).await);
}

#[tokio::test]
async fn control_characters_in_an_id_neither_crash_nor_stall() {
    let server = Server::start(|request, index| match index {
        0 => Reply::sse(vec![send("id: a\x01b\ndata: one\n\n")]),
        1 => {
            assert_eq!(request.header("last-event-id"), None);
            Reply::sse(vec![send("id: caf\u{e9}\tok\ndata: two\n\n")])
        }
        _ => {
            let raw = request.headers.get("last-event-id").unwrap().as_bytes();
            assert_eq!(raw, "caf\u{e9}\tok".as_bytes());
            Reply::sse(vec![send("data: three\n\n"), Step::Stall])
        }
    })
    .await;
    let mut subscription = fast(server.url("/events")).subscribe().unwrap();
    let messages = collect_until(&mut subscription, event_count(3)).await;
    assert_eq!(events(&messages)[0].0, "a\u{1}b");
}

#[tokio::test]
async fn resumes_exactly_once_across_a_thousand_forced_disconnects() {
    const TOTAL: u64 = 5000;
    let body: Arc<String> = Arc::new(numbered(0, TOTAL));
    // Each connection replays from Last-Event-ID and drops at a pseudo-random byte,
    // mid-line and mid-event included.
    let server = Server::start({
        let body = body.clone();
        move |request, index| {
            let next: u64 = request
                .header("last-event-id")
                .map_or(0, |id| id.parse::<u64>().unwrap() + 1);
            let start = body.find(&format!("id: {next}\n")).unwrap_or(body.len());
            let rest = &body.as_bytes()[start..];
            let mut x = (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            x ^= x >> 29;
            let cut = (x % 120) as usize;
            if index >= 1000 || rest.len() <= cut {
                Reply::sse(vec![send(rest.to_vec()), Step::Stall])
            } else {
                let (head, tail) = rest.split_at(cut.max(1));
                let half = head.len() / 2;
                Reply::sse(vec![
                    send(head[..half].to_vec()),
                    send(head[half..].to_vec()),
                    Step::Abort,
                    send(tail.to_vec()),
                ])
            }
        }
    })
    .await;
    let mut subscription = fast(server.url("/events"))
        .retry_delay(MS)
        .max_delay(MS)
        .min_delay(Duration::ZERO)
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, event_count(TOTAL as usize)).await;
    let ids: Vec<u64> = events(&messages)
        .iter()
        .map(|(id, _)| id.parse().unwrap())
        .collect();
    assert_eq!(ids, (0..TOTAL).collect::<Vec<_>>());
    assert!(server.request_count() > 1000, "{}", server.request_count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_source_waits_for_start_so_every_subscriber_sees_everything() {
    let server = Server::always(Reply::sse(vec![send(numbered(0, 20)), Step::Stall])).await;
    let source = fast(server.url("/events")).build().unwrap();
    let mut subscriptions: Vec<_> = (0..4).map(|_| source.subscribe()).collect();
    tokio::time::sleep(20 * MS).await;
    assert_eq!(server.request_count(), 0, "nothing happens before start()");
    source.start();
    source.start(); // idempotent
    for subscription in &mut subscriptions {
        let messages = collect_until(subscription, event_count(20)).await;
        assert!(matches!(messages[0], Message::Connecting { attempt: 1 }));
        assert_eq!(events(&messages).len(), 20);
    }
    assert_eq!(server.request_count(), 1);
    source.close().await;
}

#[tokio::test]
async fn closing_or_dropping_a_source_that_never_started() {
    let source = EventSource::builder("http://127.0.0.1:9/").build().unwrap();
    let mut subscription = source.subscribe();
    source.close().await;
    let messages = collect_until(&mut subscription, is_closed).await;
    assert!(matches!(
        messages[..],
        [Message::Closed(CloseReason::ByUser)]
    ));

    let source = EventSource::builder("http://127.0.0.1:9/").build().unwrap();
    let mut subscription = source.subscribe();
    drop(source);
    // The subscription still holds the source: it has not started, nothing arrives.
    assert!(
        tokio::time::timeout(50 * MS, subscription.recv())
            .await
            .is_err(),
        "an unstarted source sends nothing"
    );
    let handle = subscription.source();
    drop(subscription);
    handle.close().await;
}

#[tokio::test(start_paused = true)]
async fn backoff_schedule_under_a_paused_clock() {
    let client = support::client_without_dns();
    let mut subscription = EventSource::builder("http://stream.example.invalid/")
        .client(client)
        .jitter(0.0)
        .max_attempts(8)
        .subscribe()
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut attempts_at = Vec::new();
    let reason = loop {
        match subscription.recv().await.unwrap() {
            Message::Connecting { .. } => attempts_at.push(started.elapsed()),
            Message::Closed(reason) => break reason,
            _ => {}
        }
    };
    let gaps: Vec<u64> = attempts_at
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    // Defaults: 1 s base, doubling, capped at 30 s; minutes pass in no real time.
    assert_eq!(gaps, [1, 2, 4, 8, 16, 30, 30]);
    assert!(matches!(reason, CloseReason::GaveUp { attempts: 8, .. }));
}

#[tokio::test]
async fn a_custom_classifier_turns_401_into_a_retry_with_a_fresh_token() {
    let server = Server::start(|request, _| match request.header("authorization") {
        Some("Bearer fresh") => Reply::sse(vec![send("data: welcome back\n\n"), Step::Stall]),
        _ => Reply::status(401, "token expired"),
    })
    .await;
    let mut subscription = fast(server.url("/events"))
        .on_request(|attempt, mut request| async move {
            let token = if attempt == 1 {
                "Bearer stale"
            } else {
                "Bearer fresh"
            };
            request
                .headers_mut()
                .insert("authorization", token.parse()?);
            Ok(request)
        })
        .classify(|outcome, default| match outcome {
            Outcome::Failed(error) if error.status().is_some_and(|s| s == 401) => {
                Decision::Reconnect { at_least: None }
            }
            _ => default,
        })
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, event_count(1)).await;
    assert_eq!(events(&messages), [("".into(), "welcome back".into())]);
    assert!(messages.iter().any(|m| matches!(
        m,
        Message::Disconnected { error: Some(e), will_retry: true } if e.status().is_some_and(|s| s == 401)
    )));
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn a_custom_classifier_can_stop_after_a_clean_end() {
    let server = Server::always(Reply::sse(vec![send("data: once\n\n")])).await;
    let mut subscription = fast(server.url("/events"))
        .classify(|outcome, default| match outcome {
            Outcome::Ended => Decision::Stop,
            _ => default,
        })
        .subscribe()
        .unwrap();
    let messages = collect_until(&mut subscription, is_closed).await;
    assert!(matches!(
        messages.last(),
        Some(Message::Closed(CloseReason::Stopped))
    ));
    assert_eq!(server.request_count(), 1);
}
