//! The one place that decides, for every way a connection ends, whether to
//! reconnect or stop. Pure: the caller passes the current time.

use std::time::{Duration, SystemTime};

use http::StatusCode;
use http::header::{HeaderMap, RETRY_AFTER};

use crate::error::{Error, ErrorKind};

/// How a connection attempt or an open connection ended.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Outcome<'a> {
    /// The attempt failed, or the open stream failed (transport error, read
    /// timeout, refused status or content type, request hook error).
    Failed(&'a Error),
    /// The server ended the body cleanly.
    Ended,
}

/// What the supervisor does after an [`Outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Reconnect after the backoff delay, and after at least `at_least` when set
    /// (a `Retry-After`, already capped by the configured ceiling).
    Reconnect {
        /// A lower bound on the delay, from `Retry-After`.
        at_least: Option<Duration>,
    },
    /// Stop cleanly: the server asked for it (HTTP 204) or the user's classifier did.
    Stop,
    /// Stop with the error: retrying cannot help.
    Fail,
}

/// The default decision for `outcome`, following the HTML spec and HTTP semantics:
///
/// | outcome | decision |
/// |---|---|
/// | clean end of body | reconnect |
/// | transport error, read timeout, request hook error | reconnect |
/// | 204 No Content | stop (the server says "no more") |
/// | 408, 429, 5xx | reconnect, waiting at least `Retry-After` (capped at `retry_after_ceiling`) |
/// | other 4xx, other 2xx, 1xx | fail |
/// | 3xx that could not be followed, redirect loop | fail |
/// | 200 with a content type other than `text/event-stream` | fail |
/// | invalid configuration (URL, header) | fail |
pub(crate) fn classify(
    outcome: Outcome<'_>,
    now: SystemTime,
    retry_after_ceiling: Duration,
) -> Decision {
    let error = match outcome {
        Outcome::Ended => return Decision::Reconnect { at_least: None },
        Outcome::Failed(error) => error,
    };
    match error.kind() {
        ErrorKind::Status(rejection) => match rejection.status {
            StatusCode::NO_CONTENT => Decision::Stop,
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => Decision::Reconnect {
                at_least: retry_after(&rejection.headers, now, retry_after_ceiling),
            },
            status if status.is_server_error() => Decision::Reconnect {
                at_least: retry_after(&rejection.headers, now, retry_after_ceiling),
            },
            _ => Decision::Fail,
        },
        ErrorKind::ContentType(_) | ErrorKind::Redirect(_) | ErrorKind::Config(_) => Decision::Fail,
        ErrorKind::Transport(_) if error.is_redirect() || error.is_builder() => Decision::Fail,
        _ => Decision::Reconnect { at_least: None },
    }
}

/// Parses `Retry-After` as delta-seconds or an HTTP date, capped at `ceiling`.
/// A date in the past means no extra wait; an unparsable value is ignored.
pub(crate) fn retry_after(
    headers: &HeaderMap,
    now: SystemTime,
    ceiling: Duration,
) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let when = httpdate::parse_http_date(value).ok()?;
        when.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Rejection;
    use http::header::HeaderValue;

    const CEILING: Duration = Duration::from_secs(300);

    fn status(code: u16, retry_after: Option<&str>) -> Error {
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        }
        Error::new(ErrorKind::Status(Box::new(Rejection {
            status: StatusCode::from_u16(code).unwrap(),
            headers,
            body: String::new(),
        })))
    }

    fn decide(error: &Error) -> Decision {
        classify(Outcome::Failed(error), SystemTime::UNIX_EPOCH, CEILING)
    }

    fn reconnect(at_least: Option<u64>) -> Decision {
        Decision::Reconnect {
            at_least: at_least.map(Duration::from_secs),
        }
    }

    #[test]
    fn status_table() {
        for (code, expected) in [
            (204, Decision::Stop),
            (201, Decision::Fail),
            (206, Decision::Fail),
            (101, Decision::Fail),
            (400, Decision::Fail),
            (401, Decision::Fail),
            (403, Decision::Fail),
            (404, Decision::Fail),
            (410, Decision::Fail),
            (408, reconnect(None)),
            (429, reconnect(None)),
            (500, reconnect(None)),
            (502, reconnect(None)),
            (503, reconnect(None)),
            (504, reconnect(None)),
            (599, reconnect(None)),
        ] {
            assert_eq!(decide(&status(code, None)), expected, "{code}");
        }
    }

    #[test]
    fn other_outcomes() {
        assert_eq!(
            classify(Outcome::Ended, SystemTime::UNIX_EPOCH, CEILING),
            reconnect(None)
        );
        let timeout = Error::new(ErrorKind::ReadTimeout(Duration::from_secs(1)));
        assert_eq!(decide(&timeout), reconnect(None));
        assert_eq!(decide(&Error::config("bad url")), Decision::Fail);
        let wrong_type = Error::new(ErrorKind::ContentType(Box::new(Rejection {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: String::new(),
        })));
        assert_eq!(decide(&wrong_type), Decision::Fail);
        let hook = Error::new(ErrorKind::Hook("token service down".into()));
        assert_eq!(decide(&hook), reconnect(None));
    }

    #[test]
    fn retry_after_seconds_date_and_ceiling() {
        assert_eq!(decide(&status(503, Some("7"))), reconnect(Some(7)));
        assert_eq!(decide(&status(429, Some(" 2 "))), reconnect(Some(2)));
        assert_eq!(
            decide(&status(503, Some("99999999999999999999999"))),
            reconnect(Some(300))
        );
        // 1970-01-01T00:01:40Z is 100 s after the test's "now".
        assert_eq!(
            decide(&status(503, Some("Thu, 01 Jan 1970 00:01:40 GMT"))),
            reconnect(Some(100))
        );
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(
            classify(
                Outcome::Failed(&status(503, Some("Thu, 01 Jan 1970 00:01:40 GMT"))),
                later,
                CEILING
            ),
            reconnect(Some(0))
        );
        assert_eq!(decide(&status(503, Some("soon"))), reconnect(None));
        assert_eq!(decide(&status(503, Some("-5"))), reconnect(None));
    }
}
