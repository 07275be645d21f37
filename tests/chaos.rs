//! Chaos soak: a seeded, misbehaving loopback SSE server against the
//! reconnecting supervisor. Checks that no event is lost, duplicated or
//! corrupted, that no reconnection beats the configured floor, and that memory
//! stays flat.
//!
//! `cargo test --test chaos -- --nocapture` runs the CI-sized soak (2,000
//! faults) and prints its figures. `CHAOS_FAULTS=100000` runs a long soak;
//! `CHAOS_SEED=<n>` (decimal or `0x` hex) plays another fault schedule. See the
//! "Chaos soak" section of `docs/reliability.md`.
//!
//! Why not hyper for the server: a hyper body cannot learn when its bytes were
//! flushed, so an abort after "half a UTF-8 character" would cut at whatever
//! earlier point hyper last flushed. Writing HTTP/1.1 by hand on a `TcpStream`
//! makes every cut land on the exact byte chosen, which is what lets the test
//! predict, per connection, the exact `Last-Event-ID` of the next request.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use everstream::reqwest::header::HeaderValue;
use everstream::{
    DelayCause, Error, Event, EventSource, Limits, Message, SlowSubscriber, SubscribeOptions,
    Subscription,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const MS: Duration = Duration::from_millis(1);
/// The reconnection floor (`min_delay`): no reconnection may come sooner.
const FLOOR: Duration = MS;
const RETRY_DELAY: Duration = MS;
const MAX_DELAY: Duration = Duration::from_millis(5);
const READ_TIMEOUT: Duration = Duration::from_millis(100);
const STABLE_PERIOD: Duration = Duration::from_millis(2);
const MAX_EVENT_SIZE: usize = 64 * 1024;
const MAX_LINE_LENGTH: usize = 16 * 1024;
const KEEP_ALIVE_EVERY: Duration = Duration::from_millis(20);
/// How long the lossy subscriber must stay quiet before its count is final.
const DRAIN_SILENCE: Duration = Duration::from_millis(300);

const DEFAULT_SEED: u64 = 0x5EED_CA05;
const DEFAULT_FAULTS: u64 = 2_000;

// ---------------------------------------------------------------------------
// Randomness and checksums.

/// SplitMix64: tiny, fast, and plenty to schedule faults reproducibly.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; the modulo bias is irrelevant here.
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `low..=high`.
    fn range(&mut self, low: usize, high: usize) -> usize {
        low + self.below((high - low + 1) as u64) as usize
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// FNV-1a, 64 bits.
fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;

/// What an event must look like on arrival: its type and data.
fn checksum(event_type: &str, data: &str) -> u64 {
    fnv(fnv(FNV_OFFSET, event_type.as_bytes()), &[0xFF]) ^ fnv(FNV_OFFSET, data.as_bytes())
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => {
            let value = value.trim().replace('_', "");
            let parsed = match value.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => value.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name} must be a number, got {value:?}"))
        }
        Err(_) => default,
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// The numbered event stream.

const WORDS: &[&str] = &[
    "alpha",
    "é€😀",
    "β",
    "γάμμα",
    "日本語",
    "naïve",
    "ß",
    "🚀",
    "Ω",
    "x",
    "0",
    "-",
    "über",
];

/// Exactly `len` bytes of mixed one- to four-byte characters (ASCII padding at
/// the end), never starting with a space.
fn text(rng: &mut Rng, len: usize) -> String {
    let mut text = String::with_capacity(len);
    loop {
        let word = rng.pick(WORDS);
        let separator = usize::from(!text.is_empty());
        if text.len() + separator + word.len() > len {
            break;
        }
        if separator == 1 {
            text.push(' ');
        }
        text.push_str(word);
    }
    while text.len() < len {
        text.push('.');
    }
    text
}

/// One event of the numbered stream: a pure function of the seed and its id, so
/// a replay after `Last-Event-ID` sends the very same event.
struct EventSpec {
    id: u64,
    event_type: Option<&'static str>,
    lines: Vec<String>,
    id_first: bool,
    compact: bool,
    big: bool,
}

impl EventSpec {
    fn new(seed: u64, id: u64, done: bool) -> Self {
        let mut rng = Rng::new(seed ^ id.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        rng.next_u64();
        let event_type = if done {
            Some("done")
        } else if rng.one_in(5) {
            Some("tick")
        } else {
            None
        };
        let id_first = rng.one_in(2);
        let compact = rng.one_in(4);
        let big = !done && rng.one_in(64);
        let head = format!("{id} é€😀 ");
        let mut lines = Vec::new();
        if big {
            // Right at or just under the configured event size: the data buffer
            // counts each line plus one newline. One big event in three also has
            // a line exactly at the line length limit.
            let mut remaining = if rng.one_in(4) {
                MAX_EVENT_SIZE
            } else {
                MAX_EVENT_SIZE - rng.range(1, 2048)
            };
            let prefix = if compact { "data:" } else { "data: " };
            let longest = MAX_LINE_LENGTH - prefix.len();
            let exact_line = rng.one_in(3);
            while remaining > 0 {
                let want = if lines.is_empty() && exact_line {
                    longest
                } else {
                    rng.range(1_000, 8_000)
                };
                let len = want.min(remaining - 1);
                let line = if lines.is_empty() {
                    let mut line = head.clone();
                    line.push_str(&text(&mut rng, len - head.len()));
                    line
                } else {
                    text(&mut rng, len)
                };
                remaining -= len + 1;
                lines.push(line);
            }
        } else {
            let count = rng.range(1, 3);
            let mut first = head;
            let len = rng.range(0, 120);
            first.push_str(&text(&mut rng, len));
            lines.push(first);
            for _ in 1..count {
                let len = rng.range(0, 80);
                lines.push(text(&mut rng, len));
            }
        }
        Self {
            id,
            event_type,
            lines,
            id_first,
            compact,
            big,
        }
    }

    fn checksum(&self) -> u64 {
        checksum(self.event_type.unwrap_or("message"), &self.lines.join("\n"))
    }

    fn data_size(&self) -> usize {
        self.lines.iter().map(|line| line.len() + 1).sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Lf,
    CrLf,
    Cr,
}

impl Ending {
    fn bytes(self) -> &'static [u8] {
        match self {
            Self::Lf => b"\n",
            Self::CrLf => b"\r\n",
            Self::Cr => b"\r",
        }
    }
}

/// Where a line sits in a body.
struct LineMark {
    start: usize,
    content_end: usize,
    end: usize,
    /// The event block it belongs to.
    event: Option<usize>,
}

/// A response body under construction, with the positions the cuts need.
struct BodyBuilder {
    bytes: Vec<u8>,
    ending: Ending,
    lines: Vec<LineMark>,
    /// Each event's id and the offset at which it is dispatched: one past the
    /// first byte of its blank line's ending (a lone CR already ends a line).
    events: Vec<(u64, usize)>,
}

impl BodyBuilder {
    fn new(ending: Ending) -> Self {
        Self {
            bytes: Vec::new(),
            ending,
            lines: Vec::new(),
            events: Vec::new(),
        }
    }

    fn line(&mut self, content: &str, event: Option<usize>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(content.as_bytes());
        let content_end = self.bytes.len();
        self.bytes.extend_from_slice(self.ending.bytes());
        self.lines.push(LineMark {
            start,
            content_end,
            end: self.bytes.len(),
            event,
        });
    }

    fn event(&mut self, spec: &EventSpec, interleave: Option<&str>) {
        let index = self.events.len();
        let (id_line, data) = if spec.compact {
            (format!("id:{}", spec.id), "data:")
        } else {
            (format!("id: {}", spec.id), "data: ")
        };
        if let Some(event_type) = spec.event_type {
            self.line(&format!("event: {event_type}"), Some(index));
        }
        if spec.id_first {
            self.line(&id_line, Some(index));
        }
        for (n, line) in spec.lines.iter().enumerate() {
            self.line(&format!("{data}{line}"), Some(index));
            if n == 0
                && let Some(extra) = interleave
            {
                self.line(extra, Some(index));
            }
        }
        if !spec.id_first {
            self.line(&id_line, Some(index));
        }
        let blank = self.bytes.len();
        self.line("", Some(index));
        self.events.push((spec.id, blank + 1));
    }

    /// The lines of the last event block.
    fn last_event_lines(&self) -> impl Iterator<Item = &LineMark> {
        let last = self.events.len().checked_sub(1);
        self.lines
            .iter()
            .filter(move |line| last.is_some() && line.event == last)
    }
}

// ---------------------------------------------------------------------------
// Faults and the server's plan for each request.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Close inside a line of the last event (on a character boundary).
    CutMidLine,
    /// Close after a complete field line, before the event's blank line.
    CutMidEvent,
    /// Close inside a multibyte UTF-8 character of the last event.
    CutMidUtf8,
    /// CRLF endings; close between the CR and the LF of a line of the last event.
    CutCrLf,
    /// Close (without a final chunk) right after a complete event.
    CutBetweenEvents,
    /// End the body properly after a few events.
    CleanEnd,
    /// Reset the connection (RST) at a random byte; bytes in flight may be lost.
    Reset,
    /// Send some bytes, then nothing, past the read timeout.
    Stall,
    /// Read the request and never answer.
    HeaderStall,
    /// An error status, with an optional `Retry-After` in seconds.
    Status(u16, Option<u64>),
}

impl Fault {
    fn name(self) -> String {
        match self {
            Self::CutMidLine => "close mid-line".into(),
            Self::CutMidEvent => "close mid-event".into(),
            Self::CutMidUtf8 => "close mid UTF-8 character".into(),
            Self::CutCrLf => "close between CR and LF".into(),
            Self::CutBetweenEvents => "close between events".into(),
            Self::CleanEnd => "clean end of body".into(),
            Self::Reset => "connection reset (RST)".into(),
            Self::Stall => "stall past the read timeout".into(),
            Self::HeaderStall => "no response headers".into(),
            Self::Status(code, None) => format!("status {code}"),
            Self::Status(code, Some(secs)) => format!("status {code}, Retry-After: {secs}"),
        }
    }

    /// Faults that cut into the last event, which must therefore exist.
    fn cuts_last_event(self) -> bool {
        matches!(
            self,
            Self::CutMidLine | Self::CutMidEvent | Self::CutMidUtf8 | Self::CutCrLf
        )
    }

    fn pick(rng: &mut Rng, number: u64, target: u64) -> Self {
        // One `Retry-After: 1` per run for sure (it costs a second), more by chance.
        if number == target / 2 {
            return Self::Status(503, Some(1));
        }
        let roll = rng.below(1000);
        let retry_after = |rng: &mut Rng| match rng.below(2000) {
            0 => Some(1),
            n if n < 900 => Some(0),
            _ => None,
        };
        match roll {
            0..130 => Self::CutMidLine,
            130..250 => Self::CutMidEvent,
            250..370 => Self::CutMidUtf8,
            370..480 => Self::CutCrLf,
            480..560 => Self::CutBetweenEvents,
            560..650 => Self::CleanEnd,
            650..708 => Self::Reset,
            708..723 => Self::Stall,
            723..728 => Self::HeaderStall,
            728..805 => Self::Status(500, retry_after(rng)),
            805..875 => Self::Status(502, retry_after(rng)),
            875..948 => Self::Status(503, retry_after(rng)),
            _ => Self::Status(429, retry_after(rng)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Close the socket (FIN); with chunked framing the final chunk is missing.
    Close,
    /// Final chunk (if chunked), then close.
    Clean,
    /// Close with `SO_LINGER` 0: the peer gets a RST.
    Reset,
    /// Keep the socket open and silent until the client gives up.
    Stall,
    /// The end of the soak: keep-alive comments until the client closes.
    Finale,
}

enum Reply {
    Status {
        code: u16,
        retry_after: Option<u64>,
        keep_alive: bool,
    },
    HeaderStall,
    Stream {
        chunked: bool,
        bytes: Vec<u8>,
        splits: Vec<usize>,
        end: End,
    },
}

/// One request as the server saw it and answered it.
#[derive(Debug, Clone)]
struct Conn {
    /// Requests served before this one.
    index: u64,
    /// The client's attempt number (the `x-attempt` header).
    attempt: u64,
    arrived: Instant,
    last_event_id: u64,
    fault: Option<Fault>,
    chunked: bool,
    /// The `Last-Event-ID` the next request must carry if the client read every
    /// byte sent: the last event whose blank line began, or the current one.
    resume: u64,
    /// No reply can have reached the client before this instant, which is taken
    /// just before the server's last move: the status written, the body closed
    /// or reset, or (for a stall) the last write begun. For a request never
    /// answered, its arrival.
    ended: Option<Instant>,
}

/// What the server-side gap before attempt n leaves for the client's announced
/// delay, checked against the `Retrying` messages at the end.
#[derive(Debug, Clone, Copy, Default)]
struct Budget {
    known: bool,
    /// The gap minus the read timeout the client had to wait out first (after
    /// a stall), in nanoseconds.
    slack_ns: i64,
    /// `Retry-After` of the previous reply, in seconds.
    retry_after: u64,
}

/// The server's running checks. Each request is compared with the previous
/// one as it arrives and only a few bytes per attempt are kept, so the memory
/// figures measure the client rather than the soak's bookkeeping.
#[derive(Debug, Default)]
struct Checks {
    requests: u64,
    duplicate_attempts: u64,
    unmatched: u64,
    gaps_checked: u64,
    min_gap: Option<Duration>,
    after_stall_min: Option<Duration>,
    after_retry_after_min: Option<Duration>,
    gap_violations: Vec<String>,
    resumed_exactly: u64,
    resumed_behind_after_reset: u64,
    resume_violations: Vec<String>,
    /// By attempt number.
    budgets: Vec<Budget>,
    /// How the client must report the failures, by class.
    expect_status: BTreeMap<u16, u64>,
    expect_timeouts: u64,
    expect_transport: u64,
    expect_clean: u64,
    /// Transport error or clean end, depending on what the RST overtook.
    resets: u64,
    retry_after_secs: u64,
}

fn push_capped(list: &mut Vec<String>, text: String) {
    if list.len() < 20 {
        list.push(text);
    }
}

impl Checks {
    /// What the client must report for the failure `fault` injects.
    fn expect(&mut self, fault: Fault, chunked: bool) {
        match fault {
            Fault::Status(code, retry_after) => {
                *self.expect_status.entry(code).or_default() += 1;
                if retry_after.is_some_and(|secs| secs > 0) {
                    self.retry_after_secs += 1;
                }
            }
            Fault::Stall | Fault::HeaderStall => self.expect_timeouts += 1,
            Fault::Reset => self.resets += 1,
            Fault::CleanEnd => self.expect_clean += 1,
            // Without a final chunk a chunked body is broken; a close-delimited
            // body simply ends.
            _ if chunked => self.expect_transport += 1,
            _ => self.expect_clean += 1,
        }
    }

    /// Compares a request with the one before it.
    fn follow(&mut self, prev: &Conn, conn: &Conn) {
        let attempt = conn.attempt;
        if prev.attempt + 1 != attempt {
            self.unmatched += 1;
            return;
        }
        // Resumption: the request names exactly the last event whose blank line
        // was sent (after a RST it may be behind: bytes in flight can be lost).
        if conn.last_event_id == prev.resume {
            self.resumed_exactly += 1;
        } else if prev.fault == Some(Fault::Reset)
            && (prev.last_event_id..prev.resume).contains(&conn.last_event_id)
        {
            self.resumed_behind_after_reset += 1;
        } else {
            push_capped(
                &mut self.resume_violations,
                format!(
                    "attempt {attempt} resumed from {} after {:?} (chunked {}) that completed \
                     up to {} (previous request from {})",
                    conn.last_event_id, prev.fault, prev.chunked, prev.resume, prev.last_event_id,
                ),
            );
        }
        let Some(ended) = prev.ended else {
            self.unmatched += 1;
            return;
        };
        let gap = conn.arrived.saturating_duration_since(ended);
        self.gaps_checked += 1;
        min_of(&mut self.min_gap, gap);
        if gap < FLOOR {
            push_capped(
                &mut self.gap_violations,
                format!(
                    "attempt {attempt}: gap {gap:?} < floor after {:?}",
                    prev.fault
                ),
            );
        }
        let silence = if prev.fault == Some(Fault::Stall) {
            min_of(&mut self.after_stall_min, gap);
            READ_TIMEOUT
        } else {
            Duration::ZERO
        };
        let retry_after = match prev.fault {
            Some(Fault::Status(_, Some(secs))) => secs,
            _ => 0,
        };
        if retry_after > 0 {
            min_of(&mut self.after_retry_after_min, gap);
            if gap < Duration::from_secs(retry_after) {
                push_capped(
                    &mut self.gap_violations,
                    format!("attempt {attempt}: gap {gap:?} < Retry-After: {retry_after}"),
                );
            }
        }
        let index = attempt as usize;
        if self.budgets.len() <= index {
            self.budgets.resize(index + 1, Budget::default());
        }
        self.budgets[index] = Budget {
            known: true,
            slack_ns: gap.as_nanos() as i64 - silence.as_nanos() as i64,
            retry_after,
        };
    }
}

#[derive(Default)]
struct ServerState {
    rng: Option<Rng>,
    faults: u64,
    kinds: BTreeMap<String, u64>,
    features: BTreeMap<&'static str, u64>,
    /// The latest request.
    last: Option<Conn>,
    /// Attempt numbers seen, by attempt (to catch one reaching the server twice).
    seen: Vec<bool>,
    checks: Checks,
    anomalies: Vec<String>,
    /// Highest id of a complete event ever written.
    sent_up_to: u64,
    /// Highest id ever generated (complete or not).
    generated_up_to: u64,
    final_id: Option<u64>,
    /// VmRSS (KiB) at 0, 25, 50, 75 and 100 % of the fault target.
    rss: Vec<(u64, u64)>,
}

impl ServerState {
    fn feature(&mut self, name: &'static str) {
        *self.features.entry(name).or_default() += 1;
    }

    fn anomaly(&mut self, text: String) {
        if self.anomalies.len() < 20 {
            self.anomalies.push(text);
        }
    }
}

/// The chaos server's brain: plans each reply and keeps the record.
struct Chaos {
    seed: u64,
    target: u64,
    state: Mutex<ServerState>,
    /// Checksum of every event generated, by id (0: never generated).
    checksums: Mutex<Vec<u64>>,
}

impl Chaos {
    fn new(seed: u64, target: u64) -> Self {
        Self {
            seed,
            target,
            state: Mutex::new(ServerState {
                rng: Some(Rng::new(seed)),
                rss: vec![(0, rss_kib())],
                ..ServerState::default()
            }),
            checksums: Mutex::new(vec![0]),
        }
    }

    fn register(&self, spec: &EventSpec) {
        let sum = spec.checksum();
        let mut checksums = lock(&self.checksums);
        let index = spec.id as usize;
        if checksums.len() <= index {
            checksums.resize(index + 1, 0);
        }
        assert!(
            checksums[index] == 0 || checksums[index] == sum,
            "event {} is not deterministic",
            spec.id
        );
        checksums[index] = sum;
    }

    fn expected_checksum(&self, id: u64) -> Option<u64> {
        lock(&self.checksums)
            .get(id as usize)
            .copied()
            .filter(|sum| *sum != 0)
    }

    /// Records when the server made its last move on request `conn`.
    fn ended(&self, conn: u64, at: Instant) {
        let mut state = lock(&self.state);
        match &mut state.last {
            Some(last) if last.index == conn => last.ended = Some(at),
            // A later request already arrived: too late to count.
            _ => state.checks.unmatched += 1,
        }
    }

    /// Decides the reply to one request and records it.
    fn plan(&self, head: &Head, arrived: Instant) -> (u64, Reply) {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let mut rng = state.rng.take().expect("rng");
        let last = match head.last_event_id.as_deref() {
            None => 0,
            Some(text) => text.parse().unwrap_or_else(|_| {
                state.anomaly(format!("unparsable Last-Event-ID {text:?}"));
                0
            }),
        };
        if last > state.sent_up_to {
            state.anomaly(format!(
                "Last-Event-ID {last} is ahead of the last complete event sent ({})",
                state.sent_up_to
            ));
        }
        if head.request_line != "GET /events HTTP/1.1" || !head.accepts_event_stream {
            state.anomaly(format!("unexpected request {:?}", head.request_line));
        }
        let attempt = head.attempt.unwrap_or_else(|| {
            state.anomaly("request without x-attempt".into());
            0
        });
        let (reply, fault, resume, chunked) = if state.faults >= self.target {
            let (reply, resume) = self.finale(state, last);
            (reply, None, resume, true)
        } else {
            state.faults += 1;
            let fault = Fault::pick(&mut rng, state.faults, self.target);
            *state.kinds.entry(fault.name()).or_default() += 1;
            let (reply, resume, chunked) = self.fault_reply(state, &mut rng, fault, last);
            state.checks.expect(fault, chunked);
            let quarter = self.target.div_ceil(4).max(1);
            if state.faults.is_multiple_of(quarter) || state.faults == self.target {
                let percent = (state.faults * 100 / self.target).min(100);
                if state.rss.last().is_none_or(|(p, _)| *p != percent) {
                    state.rss.push((percent, rss_kib()));
                }
            }
            (reply, Some(fault), resume, chunked)
        };
        state.rng = Some(rng);
        state.sent_up_to = state.sent_up_to.max(resume);
        let attempt_index = attempt as usize;
        if state.seen.len() <= attempt_index {
            state.seen.resize(attempt_index + 1, false);
        }
        if std::mem::replace(&mut state.seen[attempt_index], true) {
            state.checks.duplicate_attempts += 1;
        }
        let index = state.checks.requests;
        state.checks.requests += 1;
        let conn = Conn {
            index,
            attempt,
            arrived,
            last_event_id: last,
            fault,
            chunked,
            resume,
            ended: None,
        };
        if let Some(prev) = state.last.take() {
            state.checks.follow(&prev, &conn);
        }
        state.last = Some(conn);
        (index, reply)
    }

    /// Events from `last + 1` to a final `done` event, then keep-alives.
    fn finale(&self, state: &mut ServerState, last: u64) -> (Reply, u64) {
        let final_id = *state
            .final_id
            .get_or_insert(state.generated_up_to.max(last) + 3);
        let mut body = BodyBuilder::new(Ending::Lf);
        for id in last + 1..=final_id {
            let spec = EventSpec::new(self.seed, id, id == final_id);
            self.register(&spec);
            body.event(&spec, None);
        }
        state.generated_up_to = state.generated_up_to.max(final_id);
        let reply = Reply::Stream {
            chunked: true,
            bytes: body.bytes,
            splits: Vec::new(),
            end: End::Finale,
        };
        (reply, final_id.max(last))
    }

    /// The reply that injects `fault`; also returns the resume id and framing.
    fn fault_reply(
        &self,
        state: &mut ServerState,
        rng: &mut Rng,
        fault: Fault,
        last: u64,
    ) -> (Reply, u64, bool) {
        match fault {
            Fault::Status(code, retry_after) => {
                let keep_alive = rng.one_in(2);
                if keep_alive {
                    state.feature("status kept the connection alive");
                }
                let reply = Reply::Status {
                    code,
                    retry_after,
                    keep_alive,
                };
                return (reply, last, false);
            }
            Fault::HeaderStall => return (Reply::HeaderStall, last, false),
            _ => {}
        }
        let ending = if fault == Fault::CutCrLf {
            Ending::CrLf
        } else {
            *rng.pick(&[Ending::Lf, Ending::Lf, Ending::CrLf, Ending::Cr])
        };
        state.feature(match ending {
            Ending::Lf => "connections with LF endings",
            Ending::CrLf => "connections with CRLF endings",
            Ending::Cr => "connections with CR endings",
        });
        let chunked = !rng.one_in(4);
        state.feature(if chunked {
            "chunked bodies"
        } else {
            "close-delimited bodies"
        });
        let mut body = BodyBuilder::new(ending);
        if rng.one_in(10) {
            body.bytes.extend_from_slice("\u{FEFF}".as_bytes());
            state.feature("bodies starting with a BOM");
        }
        let count = if fault.cuts_last_event() {
            rng.range(1, 8)
        } else {
            rng.range(0, 8)
        };
        for k in 0..count as u64 {
            if rng.one_in(8) {
                let retry = rng.below(6);
                body.line(&format!("retry: {retry}"), None);
                state.feature("retry: lines");
                if retry == 0 {
                    state.feature("retry: 0 lines");
                }
            }
            if rng.one_in(6) {
                body.line(": keep-alive", None);
                state.feature("keep-alive comments");
            }
            let spec = EventSpec::new(self.seed, last + 1 + k, false);
            self.register(&spec);
            if spec.big {
                state.feature("big events (60-64 KiB)");
                if spec.data_size() == MAX_EVENT_SIZE {
                    state.feature("events exactly at the size limit");
                }
            }
            let interleave = if rng.one_in(20) {
                state.feature("comments inside an event");
                Some(": inside".to_owned())
            } else if rng.one_in(30) {
                state.feature("retry: lines inside an event");
                Some(format!("retry: {}", rng.below(6)))
            } else {
                None
            };
            body.event(&spec, interleave.as_deref());
        }
        state.generated_up_to = state.generated_up_to.max(last + count as u64);
        let len = body.bytes.len();
        let in_last_event = |rng: &mut Rng, body: &BodyBuilder| -> usize {
            let lines: Vec<&LineMark> = body.last_event_lines().collect();
            if lines.is_empty() {
                return len;
            }
            let start = lines[0].start;
            let end = lines[lines.len() - 1].end;
            rng.range(start, end - 1)
        };
        let (cut, end) = match fault {
            Fault::CutMidLine => {
                let lines: Vec<&LineMark> = body
                    .last_event_lines()
                    .filter(|line| line.content_end - line.start >= 2)
                    .collect();
                let line = rng.pick(&lines);
                let mut cut = rng.range(line.start + 1, line.content_end - 1);
                while body.bytes[cut] & 0xC0 == 0x80 {
                    cut -= 1;
                }
                (cut, End::Close)
            }
            Fault::CutMidEvent => {
                let lines: Vec<&LineMark> = body
                    .last_event_lines()
                    .filter(|line| line.content_end > line.start)
                    .collect();
                (rng.pick(&lines).end, End::Close)
            }
            Fault::CutMidUtf8 => {
                let inside: Vec<usize> = body
                    .last_event_lines()
                    .flat_map(|line| line.start..line.content_end)
                    .filter(|&at| body.bytes[at] & 0xC0 == 0x80)
                    .collect();
                (*rng.pick(&inside), End::Close)
            }
            Fault::CutCrLf => {
                let lines: Vec<&LineMark> = body.last_event_lines().collect();
                (rng.pick(&lines).content_end + 1, End::Close)
            }
            Fault::CutBetweenEvents => (len, End::Close),
            Fault::CleanEnd => (len, End::Clean),
            Fault::Reset => (in_last_event(rng, &body), End::Reset),
            Fault::Stall if rng.one_in(2) => (in_last_event(rng, &body), End::Stall),
            Fault::Stall => (len, End::Stall),
            Fault::Status(..) | Fault::HeaderStall => unreachable!(),
        };
        let resume = body
            .events
            .iter()
            .filter(|(_, dispatch)| *dispatch <= cut)
            .map(|(id, _)| *id)
            .max()
            .unwrap_or(last);
        // Split the bytes into several writes: random points, plus, often, one
        // between a CR and its LF and one inside a character, where parsers slip.
        let mut splits: Vec<usize> = (0..rng.range(0, 3))
            .filter(|_| cut > 1)
            .map(|_| rng.range(1, cut - 1))
            .collect();
        if ending == Ending::CrLf && rng.one_in(2) {
            let crs: Vec<usize> = body
                .lines
                .iter()
                .map(|line| line.content_end + 1)
                .filter(|&at| at < cut)
                .collect();
            if !crs.is_empty() {
                splits.push(*rng.pick(&crs));
                state.feature("writes split between CR and LF");
            }
        }
        if rng.one_in(3) {
            let inside: Vec<usize> = (1..cut)
                .filter(|&at| body.bytes[at] & 0xC0 == 0x80)
                .collect();
            if !inside.is_empty() {
                splits.push(*rng.pick(&inside));
                state.feature("writes split inside a character");
            }
        }
        splits.sort_unstable();
        splits.dedup();
        let mut bytes = body.bytes;
        bytes.truncate(cut);
        let reply = Reply::Stream {
            chunked,
            bytes,
            splits,
            end,
        };
        (reply, resume, chunked)
    }
}

// ---------------------------------------------------------------------------
// The HTTP/1.1 side.

struct Head {
    request_line: String,
    accepts_event_stream: bool,
    last_event_id: Option<String>,
    attempt: Option<u64>,
}

/// Reads one request head (requests have no body); `None` at end of stream.
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Head> {
    let end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > 16 * 1024 {
            return None;
        }
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk));
        match read.await {
            Ok(Ok(n)) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    };
    let text = String::from_utf8_lossy(&buffer[..end]).into_owned();
    buffer.drain(..end + 4);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut head = Head {
        request_line,
        accepts_event_stream: false,
        last_event_id: None,
        attempt: None,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "accept" => head.accepts_event_stream = value == "text/event-stream",
            "last-event-id" => head.last_event_id = Some(value.to_owned()),
            "x-attempt" => head.attempt = value.parse().ok(),
            _ => {}
        }
    }
    Some(head)
}

/// Waits (bounded) until the client closes its end.
async fn wait_closed(stream: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

fn chunk(bytes: &[u8]) -> Vec<u8> {
    let mut framed = format!("{:x}\r\n", bytes.len()).into_bytes();
    framed.extend_from_slice(bytes);
    framed.extend_from_slice(b"\r\n");
    framed
}

async fn serve(mut stream: TcpStream, chaos: Arc<Chaos>) {
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::new();
    while let Some(head) = read_head(&mut stream, &mut buffer).await {
        let arrived = Instant::now();
        let (conn, reply) = chaos.plan(&head, arrived);
        match reply {
            Reply::Status {
                code,
                retry_after,
                keep_alive,
            } => {
                let reason = match code {
                    429 => "Too Many Requests",
                    500 => "Internal Server Error",
                    502 => "Bad Gateway",
                    _ => "Service Unavailable",
                };
                let body = "chaos";
                let mut response = format!(
                    "HTTP/1.1 {code} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n",
                    body.len()
                );
                if let Some(secs) = retry_after {
                    let _ = write!(response, "retry-after: {secs}\r\n");
                }
                if !keep_alive {
                    response.push_str("connection: close\r\n");
                }
                response.push_str("\r\n");
                response.push_str(body);
                chaos.ended(conn, Instant::now());
                if stream.write_all(response.as_bytes()).await.is_err() || !keep_alive {
                    let _ = stream.shutdown().await;
                    return;
                }
            }
            Reply::HeaderStall => {
                chaos.ended(conn, arrived);
                wait_closed(&mut stream).await;
                return;
            }
            Reply::Stream {
                chunked,
                bytes,
                splits,
                end,
            } => {
                let _ =
                    stream_reply(&mut stream, &chaos, conn, chunked, &bytes, &splits, end).await;
                return;
            }
        }
    }
}

async fn stream_reply(
    stream: &mut TcpStream,
    chaos: &Chaos,
    conn: u64,
    chunked: bool,
    bytes: &[u8],
    splits: &[usize],
    end: End,
) -> std::io::Result<()> {
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\nconnection: close\r\n",
    );
    if chunked {
        head.push_str("transfer-encoding: chunked\r\n");
    }
    head.push_str("\r\n");
    // The client cannot have the last bytes before they are written.
    let mut last_write = Instant::now();
    stream.write_all(head.as_bytes()).await?;
    let mut from = 0;
    for &to in splits.iter().chain(std::iter::once(&bytes.len())) {
        let piece = &bytes[from..to];
        from = to;
        if piece.is_empty() {
            continue;
        }
        last_write = Instant::now();
        if chunked {
            stream.write_all(&chunk(piece)).await?;
        } else {
            stream.write_all(piece).await?;
        }
        // Give the client a chance to read each piece on its own.
        tokio::task::yield_now().await;
    }
    match end {
        End::Close => {
            chaos.ended(conn, Instant::now());
            stream.shutdown().await?;
        }
        End::Clean => {
            chaos.ended(conn, Instant::now());
            if chunked {
                stream.write_all(b"0\r\n\r\n").await?;
            }
            stream.shutdown().await?;
        }
        End::Reset => {
            chaos.ended(conn, Instant::now());
            // A zero linger never blocks on drop; it turns the close into a RST.
            #[allow(deprecated)]
            stream.set_linger(Some(Duration::ZERO))?;
        }
        End::Stall => {
            // The client's read timeout runs from the last bytes it got.
            chaos.ended(conn, last_write);
            wait_closed(stream).await;
        }
        End::Finale => {
            chaos.ended(conn, Instant::now());
            let keep_alive = chunk(b": keep-alive\n");
            for _ in 0..6_000 {
                tokio::time::sleep(KEEP_ALIVE_EVERY).await;
                stream.write_all(&keep_alive).await?;
            }
        }
    }
    Ok(())
}

/// The listening side; stops accepting when dropped.
struct ChaosServer {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl ChaosServer {
    async fn start(chaos: Arc<Chaos>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url = format!("http://{}/events", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, Arc::clone(&chaos)));
                }
            }
        });
        Self { url, task }
    }
}

impl Drop for ChaosServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------
// Subscribers.

/// How the client reported each ended connection.
#[derive(Debug, Default, Clone)]
struct Disconnects {
    clean: u64,
    timeout: u64,
    transport: u64,
    status: BTreeMap<u16, u64>,
    other: u64,
}

impl Disconnects {
    fn count(&mut self, error: Option<&Error>) -> &'static str {
        match error {
            None => {
                self.clean += 1;
                "clean"
            }
            Some(error) if error.is_timeout() => {
                self.timeout += 1;
                "timeout"
            }
            Some(error) if error.is_status() => {
                let code = error.status().map_or(0, |status| status.as_u16());
                *self.status.entry(code).or_default() += 1;
                "status"
            }
            Some(error) if error.is_transport() => {
                self.transport += 1;
                "transport"
            }
            Some(_) => {
                self.other += 1;
                "other"
            }
        }
    }
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Tally {
    name: &'static str,
    lossless: bool,
    /// Distinct events delivered, in order.
    events: u64,
    next: u64,
    lost: u64,
    duplicated: u64,
    corrupt: u64,
    /// Every message except comments and `Missed`.
    messages: u64,
    /// FNV over those messages, to compare the lossless subscribers' sequences.
    sequence: u64,
    first: Option<String>,
    comments: u64,
    missed: u64,
    missed_notices: u64,
    retrying: u64,
    /// The announced delay before each attempt, in nanoseconds, by attempt
    /// number (kept by subscriber A only, for the gap check).
    delays: Vec<u64>,
    min_delay: Option<Duration>,
    max_delay: Duration,
    retry_after_delays: u64,
    /// Count and total of the announced delays, by cause.
    by_cause: BTreeMap<String, (u64, Duration)>,
    bad_delays: Vec<String>,
    disconnects: Disconnects,
    unexpected: Vec<String>,
    done: bool,
}

impl Tally {
    fn new(name: &'static str, lossless: bool) -> Self {
        Self {
            name,
            lossless,
            next: 1,
            sequence: FNV_OFFSET,
            ..Self::default()
        }
    }

    fn unexpected(&mut self, text: String) {
        if self.unexpected.len() < 20 {
            self.unexpected.push(text);
        }
    }

    fn event(&mut self, event: &Event, chaos: &Chaos) {
        let Ok(id) = event.id().parse::<u64>() else {
            self.unexpected(format!("event with id {:?}", event.id()));
            self.corrupt += 1;
            return;
        };
        let sum = checksum(event.event_type(), event.data());
        if chaos.expected_checksum(id) != Some(sum) {
            self.corrupt += 1;
            self.unexpected(format!("event {id} does not match what the server sent"));
        }
        if id < self.next {
            self.duplicated += 1;
            self.unexpected(format!("event {id} again (expected {})", self.next));
            return;
        }
        if id > self.next && self.lossless {
            self.lost += id - self.next;
            self.unexpected(format!("events {}..={} lost", self.next, id - 1));
        }
        self.next = id + 1;
        self.events += 1;
        if event.event_type() == "done" {
            self.done = true;
        }
    }

    fn observe(&mut self, message: &Message, chaos: &Chaos) {
        let key = match message {
            Message::Event(event) => {
                self.event(event, chaos);
                format!("E{}", event.id())
            }
            Message::Connecting { attempt } => format!("C{attempt}"),
            Message::Open {
                attempt, status, ..
            } => format!("O{attempt}/{status}"),
            Message::Disconnected { error, will_retry } => {
                let class = self.disconnects.count(error.as_ref());
                if !will_retry {
                    self.unexpected(format!("gives up after {error:?}"));
                }
                format!("D{will_retry}/{class}")
            }
            Message::Retrying {
                attempt,
                delay,
                cause,
            } => {
                self.retrying += 1;
                self.min_delay = Some(self.min_delay.map_or(*delay, |min| min.min(*delay)));
                self.max_delay = self.max_delay.max(*delay);
                if *cause == DelayCause::RetryAfter {
                    self.retry_after_delays += 1;
                }
                let entry = self.by_cause.entry(format!("{cause:?}")).or_default();
                entry.0 += 1;
                entry.1 += *delay;
                let within = *delay <= MAX_DELAY || *cause == DelayCause::RetryAfter;
                if (*delay < FLOOR || !within) && self.bad_delays.len() < 20 {
                    self.bad_delays
                        .push(format!("attempt {attempt}: {delay:?} ({cause:?})"));
                }
                if self.name == "A" {
                    let index = *attempt as usize;
                    if self.delays.len() <= index {
                        self.delays.resize(index + 1, 0);
                    }
                    self.delays[index] = delay.as_nanos() as u64;
                }
                format!("R{attempt}/{delay:?}/{cause:?}")
            }
            Message::Missed { count } => {
                self.missed += count;
                self.missed_notices += 1;
                if self.lossless {
                    self.unexpected(format!("missed {count} on a lossless subscriber"));
                }
                return;
            }
            Message::Comment(_) => {
                self.comments += 1;
                return;
            }
            Message::Error(error) => {
                self.unexpected(format!("error message: {error}"));
                "X".to_owned()
            }
            Message::Closed(reason) => {
                self.unexpected(format!("closed before the end: {reason}"));
                "Z".to_owned()
            }
            other => {
                self.unexpected(format!("unknown message {other:?}"));
                "?".to_owned()
            }
        };
        self.first.get_or_insert_with(|| key.clone());
        self.messages += 1;
        self.sequence = fnv(self.sequence, key.as_bytes());
        self.sequence = fnv(self.sequence, &[0]);
    }
}

/// Reads every message until the `done` event. `pause_every`: sleep 1 ms after
/// that many messages, so the supervisor sometimes waits for this subscriber.
async fn lossless(
    mut subscription: Subscription,
    chaos: Arc<Chaos>,
    name: &'static str,
    pause_every: u64,
    progress: Arc<AtomicU64>,
) -> Tally {
    let mut tally = Tally::new(name, true);
    let mut seen = 0u64;
    while let Some(message) = subscription.recv().await {
        tally.observe(&message, &chaos);
        progress.store(tally.next, Ordering::Relaxed);
        if tally.done || matches!(message, Message::Closed(_)) {
            break;
        }
        seen += 1;
        if pause_every > 0 && seen.is_multiple_of(pause_every) {
            tokio::time::sleep(MS).await;
        }
    }
    tally
}

/// Reads slowly until told the stream is over, then drains until quiet.
async fn lossy(
    mut subscription: Subscription,
    chaos: Arc<Chaos>,
    mut finished: watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally::new("lossy", false);
    let mut seen = 0u64;
    loop {
        if *finished.borrow_and_update() {
            while let Ok(Some(message)) =
                tokio::time::timeout(DRAIN_SILENCE, subscription.recv()).await
            {
                tally.observe(&message, &chaos);
            }
            return tally;
        }
        tokio::select! {
            message = subscription.recv() => {
                let Some(message) = message else { return tally };
                tally.observe(&message, &chaos);
                seen += 1;
                if seen.is_multiple_of(2) {
                    tokio::time::sleep(2 * MS).await;
                }
            }
            _ = finished.changed() => {}
        }
    }
}

// ---------------------------------------------------------------------------
// The soak.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_soak() {
    let seed = env_u64("CHAOS_SEED", DEFAULT_SEED);
    let target = env_u64("CHAOS_FAULTS", DEFAULT_FAULTS).max(4);
    let chaos = Arc::new(Chaos::new(seed, target));
    let server = ChaosServer::start(Arc::clone(&chaos)).await;
    let started = Instant::now();

    let source = EventSource::builder(&server.url)
        .client(support::client())
        .retry_delay(RETRY_DELAY)
        .min_delay(FLOOR)
        .max_delay(MAX_DELAY)
        .jitter_seed(seed)
        .read_timeout(READ_TIMEOUT)
        .stable_period(STABLE_PERIOD)
        .limits(
            Limits::default()
                .max_event_size(MAX_EVENT_SIZE)
                .max_line_length(MAX_LINE_LENGTH),
        )
        .on_request(|attempt, mut request| async move {
            // Lets the server match each request to the client's attempt number.
            request
                .headers_mut()
                .insert("x-attempt", HeaderValue::from(attempt));
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(request)
        })
        .build()
        .expect("valid configuration");
    // Subscribed before the start: every subscriber sees every message.
    let first = source.subscribe();
    let second = source.subscribe_with(SubscribeOptions::default().capacity(16).comments(true));
    let slow = source.subscribe_with(
        SubscribeOptions::default()
            .capacity(8)
            .slow_subscriber(SlowSubscriber::Skip),
    );
    let (finished_tx, finished_rx) = watch::channel(false);
    let progress_a = Arc::new(AtomicU64::new(0));
    let progress_b = Arc::new(AtomicU64::new(0));
    let a = tokio::spawn(lossless(
        first,
        Arc::clone(&chaos),
        "A",
        0,
        Arc::clone(&progress_a),
    ));
    let b = tokio::spawn(lossless(
        second,
        Arc::clone(&chaos),
        "B",
        64,
        Arc::clone(&progress_b),
    ));
    let l = tokio::spawn(lossy(slow, Arc::clone(&chaos), finished_rx));
    source.start();

    let budget = Duration::from_secs(120) + Duration::from_millis(60) * target as u32;
    let joined = tokio::time::timeout(budget, async { (a.await, b.await) }).await;
    let Ok((a, b)) = joined else {
        let state = lock(&chaos.state);
        panic!(
            "no end after {budget:?}: {} faults of {target}, {} requests, A at {}, B at {}, \
             source {:?}, {:?}, anomalies {:?}",
            state.faults,
            state.checks.requests,
            progress_a.load(Ordering::Relaxed),
            progress_b.load(Ordering::Relaxed),
            source.state(),
            source.stats(),
            state.anomalies,
        );
    };
    let wall = started.elapsed();
    let (a, b) = (a.expect("subscriber A"), b.expect("subscriber B"));
    finished_tx.send_replace(true);
    let l = l.await.expect("lossy subscriber");
    let stats = source.stats();
    source.close().await;
    let rss_end = rss_kib();
    drop(server);

    let state = lock(&chaos.state);
    let final_id = state.final_id.expect("the finale was served");
    let report = Report {
        seed,
        target,
        state: &state,
        a: &a,
        b: &b,
        l: &l,
        final_id,
        wall,
        rss_end,
        stats: &stats,
        delays: DelayCheck::new(&state.checks, &a),
    };
    println!("{}", report.render());
    report.check();
}

fn min_of(slot: &mut Option<Duration>, value: Duration) {
    *slot = Some(slot.map_or(value, |min| min.min(value)));
}

/// The client's announced delays against the server-side gaps.
#[derive(Debug, Default)]
struct DelayCheck {
    checked: u64,
    /// Smallest gap left over after the announced delay (and read timeout).
    min_slack: Option<Duration>,
    violations: Vec<String>,
    unmatched: u64,
}

impl DelayCheck {
    fn new(checks: &Checks, a: &Tally) -> Self {
        let mut result = Self::default();
        for (attempt, &delay_ns) in a.delays.iter().enumerate().skip(2) {
            let budget = checks.budgets.get(attempt).copied().unwrap_or_default();
            if delay_ns == 0 || !budget.known {
                result.unmatched += 1;
                continue;
            }
            result.checked += 1;
            let slack = budget.slack_ns - delay_ns as i64;
            let delay = Duration::from_nanos(delay_ns);
            if slack < 0 {
                push_capped(
                    &mut result.violations,
                    format!(
                        "attempt {attempt}: announced delay {delay:?} but the server saw the \
                         request after {:?} (read timeout included)",
                        Duration::from_nanos(budget.slack_ns.max(0) as u64)
                    ),
                );
            } else {
                min_of(&mut result.min_slack, Duration::from_nanos(slack as u64));
            }
            if delay < Duration::from_secs(budget.retry_after) {
                push_capped(
                    &mut result.violations,
                    format!(
                        "attempt {attempt}: delay {delay:?} < Retry-After: {}",
                        budget.retry_after
                    ),
                );
            }
        }
        result
    }
}

struct Report<'a> {
    seed: u64,
    target: u64,
    state: &'a ServerState,
    a: &'a Tally,
    b: &'a Tally,
    l: &'a Tally,
    final_id: u64,
    wall: Duration,
    rss_end: u64,
    stats: &'a everstream::Stats,
    delays: DelayCheck,
}

impl Report<'_> {
    fn render(&self) -> String {
        let Self { state, a, b, l, .. } = self;
        let checks = &state.checks;
        let mut out = String::new();
        let secs = self.wall.as_secs_f64();
        let _ = writeln!(
            out,
            "chaos soak: seed {:#x}, target {} faults",
            self.seed, self.target
        );
        let _ = writeln!(
            out,
            "faults injected: {} in {secs:.1} s ({:.0}/s), {} requests",
            state.faults,
            state.faults as f64 / secs,
            checks.requests
        );
        for (kind, count) in &state.kinds {
            let _ = writeln!(out, "  {count:>7}  {kind}");
        }
        let _ = writeln!(out, "also sent:");
        for (feature, count) in &state.features {
            let _ = writeln!(out, "  {count:>7}  {feature}");
        }
        for tally in [a, b] {
            let _ = writeln!(
                out,
                "lossless {}: {} events delivered (ids 1..={}), lost {}, duplicated {}, \
                 corrupt {}, {} messages, {} comments",
                tally.name,
                tally.events,
                tally.next - 1,
                tally.lost,
                tally.duplicated,
                tally.corrupt,
                tally.messages,
                tally.comments
            );
        }
        let _ = writeln!(
            out,
            "lossy: {} events + {} other messages received, Missed total {} in {} notices, \
             duplicated {}, corrupt {}",
            l.events,
            l.messages - l.events,
            l.missed,
            l.missed_notices,
            l.duplicated,
            l.corrupt
        );
        let d = &a.disconnects;
        let _ = writeln!(
            out,
            "client saw {} disconnects: clean end {}, read timeout {}, transport error {}, \
             status {:?}, other {} (RSTs sent: {})",
            d.clean + d.timeout + d.transport + d.status.values().sum::<u64>() + d.other,
            d.clean,
            d.timeout,
            d.transport,
            d.status,
            d.other,
            checks.resets
        );
        let _ = writeln!(
            out,
            "reconnects: {} Retrying, delays {:?}..={:?} (floor {FLOOR:?}, max {MAX_DELAY:?}), \
             {} set by Retry-After",
            a.retrying, a.min_delay, a.max_delay, a.retry_after_delays
        );
        for (cause, (count, total)) in &a.by_cause {
            let mean = *total / (*count).max(1) as u32;
            let _ = writeln!(out, "  {count:>7}  {cause}, mean {mean:?}");
        }
        let _ = writeln!(
            out,
            "server-side gaps: {} checked, min {:?}, min after a stall {:?} (read timeout \
             {READ_TIMEOUT:?}), min after Retry-After: 1 {:?}; announced delays checked {}, \
             min slack {:?}; unmatched {}",
            checks.gaps_checked,
            checks.min_gap,
            checks.after_stall_min,
            checks.after_retry_after_min,
            self.delays.checked,
            self.delays.min_slack,
            checks.unmatched + self.delays.unmatched
        );
        let _ = writeln!(
            out,
            "resumption: {} exact, {} behind after a RST, {} wrong",
            checks.resumed_exactly,
            checks.resumed_behind_after_reset,
            checks.resume_violations.len()
        );
        let rss: Vec<String> = state
            .rss
            .iter()
            .map(|(percent, kib)| format!("{percent}%: {kib} KiB"))
            .collect();
        let _ = writeln!(
            out,
            "VmRSS: {}, after close: {} KiB",
            rss.join(", "),
            self.rss_end
        );
        let _ = writeln!(
            out,
            "stats: {} attempts, {} events, {} bytes, connected {:?}",
            self.stats.attempts, self.stats.events, self.stats.bytes, self.stats.connected
        );
        out
    }

    fn check(&self) {
        let Self {
            state,
            a,
            b,
            l,
            final_id,
            ..
        } = *self;
        let checks = &state.checks;
        assert!(state.anomalies.is_empty(), "server: {:?}", state.anomalies);
        assert_eq!(state.faults, self.target);
        assert_eq!(
            checks.duplicate_attempts, 0,
            "an attempt reached the server twice"
        );
        // Every event exactly once, in order, intact, to every lossless subscriber.
        for tally in [a, b] {
            assert!(
                tally.unexpected.is_empty(),
                "{}: {:?}",
                tally.name,
                tally.unexpected
            );
            assert!(tally.done, "{} never saw the final event", tally.name);
            assert_eq!(
                (tally.events, tally.lost, tally.duplicated, tally.corrupt),
                (final_id, 0, 0, 0),
                "{}: (delivered, lost, duplicated, corrupt)",
                tally.name
            );
        }
        // Both lossless subscribers saw the same messages in the same order.
        assert_eq!(a.first.as_deref(), Some("C1"));
        assert_eq!(
            (&a.first, a.messages, a.sequence),
            (&b.first, b.messages, b.sequence)
        );
        assert!(b.comments > 0, "keep-alive comments reach B");
        // The lossy one: never a duplicate or a corrupt event, and every message
        // it did not receive is counted in a `Missed`.
        assert!(l.unexpected.is_empty(), "lossy: {:?}", l.unexpected);
        assert_eq!((l.duplicated, l.corrupt), (0, 0), "lossy");
        assert_eq!(l.first, a.first, "the lossy subscriber's first message");
        assert!(
            l.missed > 0,
            "the lossy subscriber should have missed messages"
        );
        assert!(
            l.events + l.missed >= final_id,
            "lossy: {} events + {} missed < {final_id}",
            l.events,
            l.missed
        );
        assert_eq!(
            l.messages + l.missed,
            a.messages,
            "lossy: received + missed == what A received"
        );
        // Resumption from exactly the last complete event.
        assert!(
            checks.resume_violations.is_empty(),
            "resumption: {:?}",
            checks.resume_violations
        );
        // No reconnection sooner than the floor, or than announced.
        assert!(
            a.bad_delays.is_empty(),
            "Retrying delays: {:?}",
            a.bad_delays
        );
        assert!(
            checks.gap_violations.is_empty(),
            "gaps: {:?}",
            checks.gap_violations
        );
        assert!(
            self.delays.violations.is_empty(),
            "announced delays: {:?}",
            self.delays.violations
        );
        assert_eq!(
            (checks.unmatched, self.delays.unmatched),
            (0, 0),
            "requests without a matching attempt"
        );
        assert_eq!(
            a.retrying,
            checks.requests - 1,
            "one Retrying per failed attempt"
        );
        // The client classified every fault as the server injected it.
        let d = &a.disconnects;
        assert_eq!(a.retry_after_delays, checks.retry_after_secs, "Retry-After");
        assert_eq!(d.status, checks.expect_status, "statuses");
        assert_eq!(d.timeout, checks.expect_timeouts, "read timeouts");
        assert!(
            d.transport >= checks.expect_transport
                && d.clean >= checks.expect_clean
                && d.transport + d.clean
                    == checks.expect_transport + checks.expect_clean + checks.resets,
            "transport errors {} and clean ends {}: expected {} and {}, plus {} RSTs",
            d.transport,
            d.clean,
            checks.expect_transport,
            checks.expect_clean,
            checks.resets
        );
        assert_eq!(d.other, 0);
        // Memory stays flat between a quarter of the run and its end.
        let at = |percent: u64| {
            state
                .rss
                .iter()
                .find(|(p, _)| *p == percent)
                .map(|(_, kib)| *kib)
        };
        if let (Some(quarter), Some(end)) = (at(25), at(100)) {
            assert!(
                end.saturating_sub(quarter) < 64 * 1024,
                "VmRSS grew from {quarter} KiB to {end} KiB"
            );
        }
    }
}
