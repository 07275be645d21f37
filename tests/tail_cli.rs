//! The `tail` example's command-line contract, run as a real process.

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use support::{Reply, Server, Step, send};

fn tail_binary() -> PathBuf {
    // `cargo test` builds examples next to the test binaries' parent directory.
    let mut path = std::env::current_exe().expect("test binary path");
    path.pop();
    if path.ends_with("deps") {
        path.pop();
    }
    let path = path
        .join("examples")
        .join(format!("tail{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds it; with a test filter, run `cargo build --example tail` first",
        path.display()
    );
    path
}

async fn tail(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(tail_binary())
        .args(args)
        .env("NO_PROXY", "127.0.0.1")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("tail did not exit")
        .expect("tail runs")
}

fn stdout_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

#[tokio::test]
async fn prints_events_as_json_lines_and_exits_zero_with_once() {
    let server = Server::always(Reply::sse(vec![
        send("id: 1\nevent: greet\ndata: hello\ndata: world\n\n"),
        send(": ping\nretry: 1500\ndata: \"quoted\" \u{e9}\n\n"),
        send("id\ndata: x\n\n"),
    ]))
    .await;
    let output = tail(&["--once", &server.url("/s")]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let lines = stdout_lines(&output);
    assert_eq!(
        lines,
        [
            serde_json::json!({"event": "greet", "data": "hello\nworld", "id": "1", "retry": null}),
            serde_json::json!({"event": "message", "data": "\"quoted\" \u{e9}", "id": "1", "retry": 1500}),
            serde_json::json!({"event": "message", "data": "x", "id": "", "retry": null}),
        ]
    );
    let raw = String::from_utf8(output.stdout).unwrap();
    assert!(
        raw.starts_with("{\"event\": \"greet\", \"data\": "),
        "{raw}"
    );
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn comments_flag_prints_comments() {
    let server = Server::always(Reply::sse(vec![send(": keep-alive\ndata: a\n\n")])).await;
    let output = tail(&["--once", "--comments", &server.url("/")]).await;
    assert_eq!(output.status.code(), Some(0));
    let lines = stdout_lines(&output);
    assert_eq!(lines[0], serde_json::json!({"comment": "keep-alive"}));
    assert_eq!(lines[1]["data"], "a");
}

#[tokio::test]
async fn method_headers_body_and_last_event_id_are_sent() {
    let server = Server::always(Reply::sse(vec![send("data: ok\n\n")])).await;
    let output = tail(&[
        "-X",
        "PUT",
        "-H",
        "X-One: 1",
        "-H",
        "Authorization: Bearer s3cret",
        "-d",
        "{\"q\":1}",
        "--last-event-id",
        "41",
        "--once",
        &server.url("/put"),
    ])
    .await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let request = &server.requests()[0];
    assert_eq!(request.method, "PUT");
    assert_eq!(request.header("x-one"), Some("1"));
    assert_eq!(request.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(request.header("last-event-id"), Some("41"));
    assert_eq!(&request.body[..], b"{\"q\":1}");
    // Secrets never reach the terminal.
    assert!(!String::from_utf8_lossy(&output.stderr).contains("s3cret"));
}

#[tokio::test]
async fn data_without_method_posts() {
    let server = Server::always(Reply::sse(vec![send("data: ok\n\n")])).await;
    let output = tail(&["-d", "body", "--once", &server.url("/")]).await;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(server.requests()[0].method, "POST");
}

#[tokio::test]
async fn reconnects_with_last_event_id_until_the_server_says_204() {
    let server = Server::start(|_, index| match index {
        0 => Reply::sse(vec![send("id: 1\ndata: a\n\n"), Step::Abort]),
        1 => Reply::sse(vec![send("data: b\n\n")]),
        _ => Reply::status(204, ""),
    })
    .await;
    let output = tail(&["--retry-delay", "5", "--max-delay", "20", &server.url("/")]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let data: Vec<_> = stdout_lines(&output)
        .iter()
        .map(|l| l["data"].clone())
        .collect();
    assert_eq!(data, ["a", "b"]);
    let requests = server.requests();
    assert_eq!(requests[1].header("last-event-id"), Some("1"));
    assert_eq!(requests[2].header("last-event-id"), Some("1"));
    assert!(!output.stderr.is_empty(), "lifecycle notices go to stderr");
}

#[tokio::test]
async fn fatal_status_exits_one_with_the_reason_on_stderr() {
    let server = Server::always(Reply::status(401, "bad token")).await;
    let output = tail(&[&server.url("/")]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    assert!(stderr.contains("bad token"), "{output:?}");
}

#[tokio::test]
async fn max_retries_gives_up_with_exit_one() {
    let server = Server::always(Reply::status(503, "down")).await;
    let output = tail(&[
        "--max-retries",
        "2",
        "--retry-delay",
        "1",
        "--max-delay",
        "5",
        &server.url("/"),
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(server.request_count(), 3);
}

#[tokio::test]
async fn once_does_not_reconnect_after_an_error() {
    let server = Server::always(Reply::sse(vec![send("data: a\n\n"), Step::Abort])).await;
    let output = tail(&["--once", &server.url("/")]).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout_lines(&output).len(), 1);
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn read_timeout_reconnects_a_stalled_stream() {
    let server = Server::start(|_, index| match index {
        0 => Reply::sse(vec![send("id: 1\ndata: a\n\n"), Step::Stall]),
        1 => Reply::sse(vec![send("data: b\n\n")]),
        _ => Reply::status(204, ""),
    })
    .await;
    let output = tail(&[
        "--read-timeout",
        "0.2",
        "--retry-delay",
        "1",
        "--max-retries",
        "3",
        &server.url("/"),
    ])
    .await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let data: Vec<_> = stdout_lines(&output)
        .iter()
        .map(|l| l["data"].clone())
        .collect();
    assert_eq!(data, ["a", "b"], "{output:?}");
    assert_eq!(server.requests()[1].header("last-event-id"), Some("1"));
}

#[tokio::test]
async fn bad_usage_exits_two() {
    for args in [
        &[][..],
        &["--max-retries", "many", "http://127.0.0.1:1/"],
        &["-H", "no-colon", "http://127.0.0.1:1/"],
        &["not a url"],
        &["--bogus", "http://127.0.0.1:1/"],
    ] {
        let output = tail(args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }
}

#[tokio::test]
async fn ctrl_c_exits_zero() {
    let server = Server::always(Reply::sse(vec![send("data: a\n\n"), Step::Stall])).await;
    let mut child = tokio::process::Command::new(tail_binary())
        .arg(server.url("/"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("tail runs");
    for _ in 0..500 {
        if server.request_count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("tail exits after SIGINT")
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}
