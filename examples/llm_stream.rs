//! Stream tokens from an OpenAI-style chat-completions endpoint.
//!
//! By default it starts a fake endpoint on 127.0.0.1 that streams a canned answer
//! token by token, so it runs anywhere:
//!
//! ```text
//! cargo run --example llm_stream
//! ```
//!
//! Against a real endpoint, set `LLM_URL` (the full chat-completions URL),
//! `LLM_API_KEY`, and optionally `LLM_MODEL`.

use std::io::Write;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use axum::routing::post;
use everstream::reqwest;
use futures::{StreamExt, stream};
use serde::Deserialize;

/// The part of a `chat.completion.chunk` this example reads.
#[derive(Deserialize)]
struct Chunk {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    delta: Delta,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, api_key) = match std::env::var("LLM_URL") {
        Ok(url) => (url, std::env::var("LLM_API_KEY").unwrap_or_default()),
        Err(_) => (start_fake_endpoint().await?, "not-needed".to_owned()),
    };
    let model = std::env::var("LLM_MODEL").unwrap_or_else(|_| "gpt-4o-mini".to_owned());
    let body = serde_json::json!({
        "model": model,
        "stream": true,
        "messages": [{"role": "user", "content": "Why do SSE clients need Last-Event-ID?"}],
    });

    let request = reqwest::Client::new()
        .post(&url)
        .bearer_auth(api_key)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    let response = everstream::connect(request).await?;
    eprintln!("connected: {}", response.status());
    let mut events = response.events();
    let mut stdout = std::io::stdout();
    let mut tokens = 0;
    while let Some(event) = events.next().await {
        let event = event?;
        if event.data() == "[DONE]" {
            break;
        }
        let chunk: Chunk = event.json()?;
        if let Some(text) = chunk
            .choices
            .first()
            .and_then(|c| c.delta.content.as_deref())
        {
            print!("{text}");
            stdout.flush()?;
            tokens += 1;
        }
    }
    println!();
    eprintln!("done: {tokens} tokens");
    Ok(())
}

/// A loopback stand-in for a chat-completions endpoint.
async fn start_fake_endpoint() -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/chat/completions", listener.local_addr()?);
    let app = Router::new().route("/v1/chat/completions", post(fake_completion));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

async fn fake_completion() -> Response {
    const ANSWER: &str = "Because connections drop. With Last-Event-ID the server resumes \
                          right after the last event the client saw, so nothing is lost \
                          and nothing is repeated.";
    let mut chunks: Vec<String> = ANSWER
        .split_inclusive(' ')
        .enumerate()
        .map(|(i, token)| {
            let chunk = serde_json::json!({
                "id": "chatcmpl-demo",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": null}],
            });
            // Keep-alive comments now and then, as real endpoints send.
            let ping = if i % 8 == 7 { ": ping\n\n" } else { "" };
            format!("{ping}data: {chunk}\n\n")
        })
        .collect();
    chunks.push("data: [DONE]\n\n".to_owned());
    let body = stream::iter(chunks).then(|chunk| async move {
        tokio::time::sleep(Duration::from_millis(15)).await;
        Ok::<_, std::convert::Infallible>(chunk)
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .body(Body::from_stream(body))
        .unwrap_or_default()
}
