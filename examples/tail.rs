//! `tail`: a small command-line SSE consumer, like `curl -N` but resilient.
//!
//! ```text
//! cargo run --example tail -- [OPTIONS] URL
//! ```
//!
//! Prints each event on stdout as one JSON object per line:
//! `{"event": "...", "data": "...", "id": "...", "retry": null}`, where `id` is the
//! last event ID in force when the event was dispatched and `retry` the block's
//! `retry:` in milliseconds or null. With `--comments`, comments print as
//! `{"comment": "..."}`. Lifecycle notices go to stderr.
//!
//! Exit status: 0 on a clean end (`--once`, HTTP 204, Ctrl-C), 1 on a fatal error
//! or when `--max-retries` is exhausted, 2 on bad usage.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use everstream::reqwest::Method;
use everstream::{CloseReason, Decision, Event, EventSource, Message, Outcome, Subscription};

#[derive(Debug, Parser)]
#[command(
    name = "tail",
    about = "Print a Server-Sent Events stream as JSON lines, reconnecting as needed"
)]
struct Args {
    /// The event stream URL.
    url: String,
    /// HTTP method (default: GET, or POST with -d).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    method: Option<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// The request body, re-sent on every attempt.
    #[arg(short = 'd', long = "data", value_name = "BODY")]
    body: Option<String>,
    /// Resume after this event ID (sent as Last-Event-ID).
    #[arg(long, value_name = "ID")]
    last_event_id: Option<String>,
    /// Reconnect when no byte arrives for this many seconds.
    #[arg(long, value_name = "SECS")]
    read_timeout: Option<f64>,
    /// Initial reconnection delay, in milliseconds.
    #[arg(long, value_name = "MS")]
    retry_delay: Option<u64>,
    /// Maximum reconnection delay, in milliseconds.
    #[arg(long, value_name = "MS")]
    max_delay: Option<u64>,
    /// Do not reconnect: exit when the first connection ends.
    #[arg(long)]
    once: bool,
    /// Give up after this many consecutive failed reconnection attempts.
    #[arg(long, value_name = "N")]
    max_retries: Option<u64>,
    /// Also print comment lines as {"comment": "..."}.
    #[arg(long)]
    comments: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut subscription = match configure(&args) {
        Ok(subscription) => subscription,
        Err(message) => {
            eprintln!("tail: {message}");
            return ExitCode::from(2);
        }
    };
    let source = subscription.source();
    let mut stdout = std::io::stdout().lock();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    loop {
        let message = tokio::select! {
            message = subscription.recv() => message,
            // Polled only until it fires: a finished future must not be polled again.
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                eprintln!("interrupted");
                source.close().await;
                continue;
            }
        };
        let Some(message) = message else {
            return ExitCode::SUCCESS;
        };
        let line = match &message {
            Message::Event(event) => event_line(event),
            Message::Comment(text) => format!("{{\"comment\": {}}}", json_string(text)),
            Message::Closed(reason) => {
                let _ = stdout.flush();
                return close(reason);
            }
            notice => {
                describe(notice);
                continue;
            }
        };
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // stdout closed (for example piped into `head`): stop quietly.
            source.close().await;
            return ExitCode::SUCCESS;
        }
    }
}

fn configure(args: &Args) -> Result<Subscription, String> {
    let mut builder = EventSource::builder(&args.url);
    let method = match (&args.method, &args.body) {
        (Some(method), _) => Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("invalid method {method:?}"))?,
        (None, Some(_)) => Method::POST,
        (None, None) => Method::GET,
    };
    builder = builder.method(method).comments(args.comments);
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("header {header:?} is not `Name: value`"))?;
        builder = builder.header(name.trim(), value.trim());
    }
    if let Some(body) = &args.body {
        builder = builder.body(body.clone());
    }
    if let Some(id) = &args.last_event_id {
        builder = builder.last_event_id(id.clone());
    }
    if let Some(secs) = args.read_timeout {
        let timeout = Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("invalid --read-timeout {secs}"))?;
        builder = builder.read_timeout(timeout);
    }
    let retry_delay = args.retry_delay.map(Duration::from_millis);
    let max_delay = args.max_delay.map(Duration::from_millis);
    if let Some(delay) = retry_delay {
        builder = builder.retry_delay(delay);
    }
    if let Some(max) = max_delay {
        builder = builder.max_delay(max);
        // A maximum below the default floor lowers the floor with it.
        builder = builder.min_delay(max.min(Duration::from_millis(100)));
    }
    if let Some(retries) = args.max_retries {
        builder = builder.max_attempts(retries.saturating_add(1));
    }
    if args.once {
        builder = builder.classify(|outcome, default| match (outcome, default) {
            (_, Decision::Stop) => Decision::Stop,
            (Outcome::Ended, _) => Decision::Stop,
            _ => Decision::Fail,
        });
    }
    builder.subscribe().map_err(|error| error.to_string())
}

fn event_line(event: &Event) -> String {
    let retry = event
        .retry()
        .map_or_else(|| "null".to_owned(), |retry| retry.as_millis().to_string());
    format!(
        "{{\"event\": {}, \"data\": {}, \"id\": {}, \"retry\": {retry}}}",
        json_string(event.event_type()),
        json_string(event.data()),
        json_string(event.id()),
    )
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn describe(notice: &Message) {
    match notice {
        Message::Connecting { attempt } => eprintln!("connecting (attempt {attempt})"),
        Message::Open { status, .. } => eprintln!("connected ({status})"),
        Message::Disconnected {
            error: Some(error),
            will_retry,
        } => eprintln!(
            "disconnected: {}{}",
            error.display_chain(),
            if *will_retry { "" } else { " (not retrying)" }
        ),
        Message::Disconnected { error: None, .. } => eprintln!("stream ended by the server"),
        Message::Retrying {
            attempt,
            delay,
            cause,
        } => {
            eprintln!("reconnecting in {delay:.1?} (attempt {attempt}, {cause:?})")
        }
        Message::Error(error) => eprintln!("warning: {}", error.display_chain()),
        Message::Missed { count } => eprintln!("warning: {count} messages skipped"),
        other => eprintln!("{other:?}"),
    }
}

fn close(reason: &CloseReason) -> ExitCode {
    match reason {
        CloseReason::ByUser | CloseReason::ServerStopped | CloseReason::Stopped => {
            eprintln!("closed: {reason}");
            ExitCode::SUCCESS
        }
        CloseReason::Fatal(error) => {
            eprintln!("tail: fatal: {}", error.display_chain());
            if let Some(body) = error.body_text().filter(|body| !body.is_empty()) {
                eprintln!("tail: response body: {body}");
            }
            ExitCode::from(1)
        }
        other => {
            eprintln!("tail: {other}");
            ExitCode::from(1)
        }
    }
}
