//! The generated event streams every benchmark uses, shared by `benches/` and
//! the `perf/` crate (which includes this file by path), so both measure the
//! same bytes. Standard library only.

use std::fmt::Write as _;

/// Each workload is generated until it is at least this large.
const TARGET_SIZE: usize = 4 << 20;

/// One generated event stream.
pub struct Workload {
    /// Short name used in benchmark IDs and tables.
    pub name: &'static str,
    /// The whole body.
    pub body: Vec<u8>,
    /// How many events a spec-following parser dispatches from `body`.
    pub events: usize,
}

/// All workloads, in table order.
pub fn workloads() -> Vec<Workload> {
    vec![small(), large(), multiline(), crlf(), llm()]
}

/// ~53-byte JSON events (a 52-byte data line; every eighth event adds an `id:` line).
pub fn small() -> Workload {
    json_events("small", "\n")
}

/// One 64 KiB `data:` line per event.
pub fn large() -> Workload {
    let line: String = (0..64 << 10)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    build("large", |body, n| {
        let _ = write!(body, "id: {n}\ndata: {line}\n\n");
    })
}

/// Events of 5 to 10 `data:` lines, some with an `event:` type.
pub fn multiline() -> Workload {
    build("multiline", |body, n| {
        if n % 4 == 0 {
            body.push_str("event: update\n");
        }
        for line in 0..5 + n % 6 {
            let _ = writeln!(body, "data: line {line} of event {n}: lorem ipsum dolor");
        }
        body.push('\n');
    })
}

/// The `small` events with CRLF line endings.
pub fn crlf() -> Workload {
    json_events("crlf", "\r\n")
}

/// The events of `small` and `crlf`, each line ended with `eol`.
fn json_events(name: &'static str, eol: &'static str) -> Workload {
    build(name, move |body, n| {
        if n % 8 == 0 {
            let _ = write!(body, "id: {n}{eol}");
        }
        let _ = write!(
            body,
            "data: {{\"n\":{},\"msg\":\"hello, world\",\"ok\":true}}{eol}{eol}",
            1_000_000 + n % 1_000_000
        );
    })
}

/// OpenAI-style chat-completion chunks, ending with `data: [DONE]`.
pub fn llm() -> Workload {
    const TOKENS: [&str; 12] = [
        "The",
        " quick",
        " brown",
        " fox",
        " jumps",
        " over",
        " the",
        " lazy",
        " dog",
        ".",
        " caf\u{e9}",
        " \u{65e5}\u{672c}",
    ];
    let mut workload = build("llm", |body, n| {
        let _ = write!(
            body,
            "data: {{\"id\":\"chatcmpl-9x2KqZ7bV4nLmT0aYcR8sPdE1fGh\",\
             \"object\":\"chat.completion.chunk\",\"created\":1718000000,\
             \"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\
             \"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}},\
             \"logprobs\":null,\"finish_reason\":null}}]}}\n\n",
            TOKENS[n % TOKENS.len()]
        );
    });
    workload.body.extend_from_slice(b"data: [DONE]\n\n");
    workload.events += 1;
    workload
}

/// Appends events with `event` until the body reaches `TARGET_SIZE`.
fn build(name: &'static str, mut event: impl FnMut(&mut String, usize)) -> Workload {
    let mut body = String::with_capacity(TARGET_SIZE + (128 << 10));
    let mut events = 0;
    while body.len() < TARGET_SIZE {
        event(&mut body, events);
        events += 1;
    }
    Workload {
        name,
        body: body.into_bytes(),
        events,
    }
}
