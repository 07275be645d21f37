//! Blocking one-shot connect (feature `blocking`) against a real loopback server.

mod support;

use support::{Reply, Server, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_connect_iterates_events() {
    let server = Server::always(Reply::sse(vec![send("data: a\n\n"), send("data: b\n\n")])).await;
    let url = server.url("/");
    let data = tokio::task::spawn_blocking(move || {
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .build()
            .unwrap();
        let response = everstream::blocking::connect(client.get(url)).unwrap();
        assert_eq!(response.status(), 200);
        response
            .events()
            .map(|e| e.unwrap().data().to_owned())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(data, ["a", "b"]);
}

/// Runs a blocking connect to `path` on a blocking-pool thread and returns its error.
async fn blocking_connect_error(server: &Server, path: &str) -> everstream::Error {
    let url = server.url(path);
    tokio::task::spawn_blocking(move || {
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .build()
            .unwrap();
        everstream::blocking::connect(client.get(url))
            .map(|response| response.status())
            .expect_err("the response must be refused")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_connect_refuses_error_status_with_body() {
    let body = "x".repeat(everstream::Rejection::BODY_LIMIT + 100);
    let server = Server::always(
        Reply::status(500, &format!("internal error: {body}")).header("retry-after", "3"),
    )
    .await;
    let error = blocking_connect_error(&server, "/").await;
    assert!(error.is_status(), "{error:?}");
    assert_eq!(
        error.status(),
        Some(reqwest::StatusCode::INTERNAL_SERVER_ERROR)
    );
    assert_eq!(error.headers().unwrap()["retry-after"], "3");
    let kept = error.body_text().unwrap();
    assert!(kept.starts_with("internal error: xxx"), "{kept:.40}");
    assert_eq!(kept.len(), everstream::Rejection::BODY_LIMIT);
    assert!(error.to_string().contains("500"), "{error}");
    assert!(!error.to_string().contains("internal error"), "{error}");
    assert_eq!(
        server.requests()[0].header("accept"),
        Some("text/event-stream")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_connect_refuses_wrong_content_type() {
    let server = Server::always(
        Reply::sse(vec![send("{\"error\": \"use the stream endpoint\"}")])
            .header("content-type", "application/json"),
    )
    .await;
    let error = blocking_connect_error(&server, "/").await;
    assert!(error.is_content_type(), "{error:?}");
    assert!(!error.is_status());
    assert_eq!(error.status(), Some(reqwest::StatusCode::OK));
    assert_eq!(
        error.rejection().unwrap().content_type(),
        Some("application/json")
    );
    assert_eq!(
        error.body_text(),
        Some("{\"error\": \"use the stream endpoint\"}")
    );
    assert!(error.to_string().contains("application/json"), "{error}");
}
