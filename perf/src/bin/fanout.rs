//! Fan-out cost: one `EventSource` on one loopback upstream, with 1 and then 100
//! subscribers, each a task draining its own channel. The channels hold a whole
//! body, so the supervisor never waits for room: the time is delivery, not
//! back-pressure.
//!
//! `cargo run --release --bin fanout -- [--rounds 7] [--subscribers 100] [--client-threads 0]`

use std::time::{Duration, Instant};

use everstream::{EventSource, SubscribeOptions};
use everstream_perf::{
    Server, Summary, arg, client_runtime, loopback_client, receive_events, runtime_name, small,
};

/// Starts a source with `subscribers` draining tasks and returns the seconds from
/// `start()` until every subscriber has received `events` events.
async fn run(client: &reqwest::Client, url: &str, subscribers: usize, events: usize) -> f64 {
    let source = EventSource::builder(url)
        .client(client.clone())
        .read_timeout(None)
        .build()
        .expect("a valid source");
    // Room for every event of the body: a full channel is impossible, so the
    // supervisor's `try_send` always succeeds.
    let options = SubscribeOptions::default().capacity(events + 64);
    let tasks: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut subscription = source.subscribe_with(options);
            tokio::spawn(async move { receive_events(&mut subscription, events).await })
        })
        .collect();
    let start = Instant::now();
    source.start();
    for task in tasks {
        let count = tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("delivery takes less than 120 s")
            .expect("the subscriber task succeeds");
        assert_eq!(count, events);
    }
    let elapsed = start.elapsed().as_secs_f64();
    source.close().await;
    elapsed
}

fn main() {
    let rounds: usize = arg("--rounds", 7);
    let many: usize = arg("--subscribers", 100);
    let threads: usize = arg("--client-threads", 0);

    let workload = small();
    let server = Server::start(everstream_perf::workload_router(std::slice::from_ref(
        &workload,
    )));
    let url = server.url("/small");
    let runtime = client_runtime(threads);
    let client = loopback_client();
    let events = workload.events;
    println!(
        "client runtime: {}; {} events of {:.0} bytes per run; 1 vs {many} subscribers; {rounds} rounds",
        runtime_name(threads),
        events,
        workload.bytes_per_event()
    );

    runtime.block_on(async {
        run(&client, &url, 1, events).await;
        run(&client, &url, many, events).await;
        let mut one = Vec::new();
        let mut all = Vec::new();
        let mut per_delivery = Vec::new();
        for _ in 0..rounds {
            let t1 = run(&client, &url, 1, events).await;
            let tn = run(&client, &url, many, events).await;
            one.push(t1 * 1e3);
            all.push(tn * 1e3);
            per_delivery.push((tn - t1) / (events as f64 * (many - 1) as f64) * 1e9);
        }
        let per_event_one: Vec<f64> = one.iter().map(|ms| ms * 1e6 / events as f64).collect();
        let per_delivery_all: Vec<f64> = all
            .iter()
            .map(|ms| ms * 1e6 / (events * many) as f64)
            .collect();
        println!("\n| measure | min / median / max |");
        println!("|---|---:|");
        println!(
            "| 1 subscriber, ms per run | {} |",
            Summary::of(&one).show(1)
        );
        println!(
            "| {many} subscribers, ms per run | {} |",
            Summary::of(&all).show(1)
        );
        println!(
            "| 1 subscriber, ns per event | {} |",
            Summary::of(&per_event_one).show(0)
        );
        println!(
            "| {many} subscribers, ns per delivery (total / (events x {many})) | {} |",
            Summary::of(&per_delivery_all).show(0)
        );
        println!(
            "| cost per extra delivery, ns: (t{many} - t1) / (events x {}) | {} |",
            many - 1,
            Summary::of(&per_delivery).show(1)
        );
    });
}
