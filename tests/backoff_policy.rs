//! The optional `backoff` feature: a user's `backoff::backoff::Backoff` policy
//! drives the reconnection delays.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use everstream::{CloseReason, DelayCause, EventSource, Message};
use support::{Reply, Server, Step, send};

/// Hands out scripted delays, then gives up; records resets.
struct Scripted {
    delays: Vec<Duration>,
    resets: Arc<Mutex<u32>>,
}

impl backoff::backoff::Backoff for Scripted {
    fn reset(&mut self) {
        *self.resets.lock().unwrap() += 1;
    }

    fn next_backoff(&mut self) -> Option<Duration> {
        (!self.delays.is_empty()).then(|| self.delays.remove(0))
    }
}

#[tokio::test]
async fn a_backoff_policy_sets_the_delays_and_can_give_up() {
    let server = Server::always(Reply::status(503, "down")).await;
    let resets = Arc::new(Mutex::new(0));
    let policy = Scripted {
        delays: vec![
            Duration::from_millis(3),
            Duration::ZERO,
            Duration::from_millis(7),
        ],
        resets: resets.clone(),
    };
    let mut subscription = EventSource::builder(server.url("/"))
        .client(support::client())
        .min_delay(Duration::from_millis(2))
        .backoff_policy(policy)
        .subscribe()
        .unwrap();
    let mut delays = Vec::new();
    let reason = loop {
        match subscription.recv().await.unwrap() {
            Message::Retrying { delay, cause, .. } => {
                assert_eq!(cause, DelayCause::Policy);
                delays.push(delay.as_millis());
            }
            Message::Closed(reason) => break reason,
            _ => {}
        }
    };
    // The floor still applies to the policy's zero.
    assert_eq!(delays, [3, 2, 7]);
    assert!(matches!(reason, CloseReason::GaveUp { attempts: 4, .. }));
    assert_eq!(server.request_count(), 4);
    assert_eq!(*resets.lock().unwrap(), 0);
}

#[tokio::test]
async fn the_policy_is_reset_after_a_stable_connection() {
    let server = Server::start(|_, index| match index {
        0 => Reply::sse(vec![
            send("data: a\n\n"),
            Step::Sleep(Duration::from_millis(30)),
        ]),
        _ => Reply::sse(vec![send("data: b\n\n"), Step::Stall]),
    })
    .await;
    let resets = Arc::new(Mutex::new(0));
    let policy = Scripted {
        delays: vec![Duration::from_millis(1); 10],
        resets: resets.clone(),
    };
    let mut subscription = EventSource::builder(server.url("/"))
        .client(support::client())
        .stable_period(Duration::from_millis(10))
        .backoff_policy(policy)
        .subscribe()
        .unwrap();
    let mut events = 0;
    while events < 2 {
        if let Some(Message::Event(_)) = subscription.recv().await {
            events += 1;
        }
    }
    assert_eq!(*resets.lock().unwrap(), 1);
}
