//! Which failed attempts a [`RetryOn`] retries, how long a `Retry-After` asks to wait,
//! and the backoff before a retry (the table is in the [module docs](super)).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, Response, StatusCode, header};

use super::{Backoff, RetryOn};
use crate::{Error, ErrorKind, Side};

/// Whether a failed attempt (an error) is worth retrying under `on`.
pub(super) fn error_is_retriable(on: &RetryOn, err: &(dyn std::error::Error + 'static)) -> bool {
    let kind = crate::classify(err);
    // The client's own faults, the gateway's refusals (a circuit breaker, a concurrency
    // limit, a rate limit: retrying would defeat them) and the whole-request deadline.
    if kind == ErrorKind::RequestTimeout || kind.side() != Side::Upstream {
        return false;
    }
    let any_5xx = on.server_error || on.gateway_error;
    let unsent = Error::find(err).is_some_and(Error::is_retry_safe);
    if unsent && (on.unsent || any_5xx) {
        return true;
    }
    match kind {
        ErrorKind::Connect | ErrorKind::UpstreamTls => on.connect_failure || any_5xx,
        ErrorKind::UpstreamProtocol => on.reset || any_5xx,
        ErrorKind::Timeout | ErrorKind::BackendRequestTimeout => on.timeout || any_5xx,
        _ => false,
    }
}

/// Whether an attempt's response is worth retrying under `on`.
pub(super) fn response_is_retriable<B>(on: &RetryOn, rsp: &Response<B>) -> bool {
    let status = rsp.status();
    (on.server_error && status.is_server_error())
        || (on.gateway_error
            && matches!(
                status,
                StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ))
        || on.statuses.contains(&status)
        || (!on.grpc.is_empty() && grpc_status(rsp.headers()).is_some_and(|c| on.grpc.contains(&c)))
}

fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The wait a 429 or 503 response asks for with `Retry-After` (delta-seconds or an
/// HTTP-date; a date in the past is no wait). `None`: no usable header.
pub(super) fn retry_after<B>(rsp: &Response<B>) -> Option<Duration> {
    if !matches!(
        rsp.status(),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        return None;
    }
    let value = rsp
        .headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64: longer than any cap.
        return Some(value.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let at = parse_http_date(value)?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The wait before retry `n` (from 1): uniformly random in
/// `[base, min(max, base × 2^(n-1))]`.
pub(super) fn backoff_delay(backoff: &Backoff, n: u32) -> Duration {
    let base = backoff.base;
    let max = backoff.max.max(base);
    let shift = n.saturating_sub(1).min(31);
    let high = base.saturating_mul(1 << shift).min(max);
    if high <= base {
        return base;
    }
    let low = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
    let high = u64::try_from(high.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(low..=high))
}

/// Parses an HTTP-date (RFC 9110 §5.6.7: IMF-fixdate, and the obsolete RFC 850 and
/// asctime forms), with the `httpdate` crate hyper already uses for `Date`.
pub(super) fn parse_http_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s).ok()
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_three_http_date_forms_parse() {
        // 784111777 is 1994-11-06T08:49:37Z.
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(at(784_111_777))
        );
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(at(784_111_777))
        );
        assert_eq!(
            parse_http_date("Sun Nov  6 08:49:37 1994"),
            Some(at(784_111_777))
        );
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(UNIX_EPOCH)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(at(1_835_481_599))
        );
        for bad in [
            "",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_on_429_and_503_only() {
        let rsp = |status: u16, value: &str| {
            Response::builder()
                .status(status)
                .header(header::RETRY_AFTER, value)
                .body(())
                .unwrap()
        };
        assert_eq!(retry_after(&rsp(503, "2")), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(&rsp(429, " 7 ")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&rsp(502, "2")), None);
        assert_eq!(retry_after(&rsp(503, "-1")), None);
        assert_eq!(
            retry_after(&rsp(503, "99999999999999999999999")),
            Some(Duration::MAX)
        );
        assert_eq!(
            retry_after(&rsp(503, "Sun, 06 Nov 1994 08:49:37 GMT")),
            Some(Duration::ZERO)
        );
        let future = retry_after(&rsp(503, "Fri, 01 Jan 9999 00:00:00 GMT")).unwrap();
        assert!(future > Duration::from_secs(86_400 * 365 * 1000));
    }

    #[test]
    fn backoff_stays_between_base_and_the_exponential_cap() {
        let b = Backoff::new(Duration::from_millis(100)).with_max(Duration::from_millis(1000));
        assert_eq!(backoff_delay(&b, 1), Duration::from_millis(100));
        for _ in 0..200 {
            let d = backoff_delay(&b, 2);
            assert!((100..=200).contains(&d.as_millis()), "{d:?}");
            let d = backoff_delay(&b, 3);
            assert!((100..=400).contains(&d.as_millis()), "{d:?}");
            let d = backoff_delay(&b, 40);
            assert!((100..=1000).contains(&d.as_millis()), "{d:?}");
        }
        assert_eq!(
            backoff_delay(&Backoff::new(Duration::ZERO), 5),
            Duration::ZERO
        );
    }

    fn on(f: impl FnOnce(&mut RetryOn)) -> RetryOn {
        let mut on = RetryOn::default();
        f(&mut on);
        on
    }

    fn kind_retried(on: &RetryOn, err: Error) -> bool {
        let err: crate::BoxError = Box::new(err);
        error_is_retriable(on, &*err)
    }

    /// The classification table of the module docs, row by row.
    #[test]
    fn the_classification_table_holds() {
        use ErrorKind::*;
        let all = on(|o| {
            o.unsent = true;
            o.connect_failure = true;
            o.reset = true;
            o.timeout = true;
            o.server_error = true;
            o.gateway_error = true;
        });
        // Never retried, whatever the policy (even when marked retry-safe).
        for kind in [
            RequestTimeout,
            BadRequest,
            PayloadTooLarge,
            RateLimited,
            NoRoute,
            CircuitOpen,
            Overloaded,
            InvalidBackend,
        ] {
            assert!(!kind_retried(&all, Error::new(kind)), "{kind:?}");
            assert!(
                !kind_retried(&all, Error::new(kind).retry_safe(true)),
                "{kind:?}"
            );
        }

        let unsent = on(|o| o.unsent = true);
        assert!(kind_retried(&unsent, Error::new(Connect)));
        assert!(kind_retried(&unsent, Error::new(NoHealthyEndpoint)));
        assert!(kind_retried(
            &unsent,
            Error::new(UpstreamProtocol).retry_safe(true)
        ));
        assert!(!kind_retried(&unsent, Error::new(UpstreamProtocol)));
        assert!(!kind_retried(
            &unsent,
            Error::new(Connect).retry_safe(false)
        ));
        assert!(!kind_retried(&unsent, Error::new(BackendRequestTimeout)));

        let connect = on(|o| o.connect_failure = true);
        assert!(kind_retried(
            &connect,
            Error::new(Connect).retry_safe(false)
        ));
        assert!(!kind_retried(&connect, Error::new(NoHealthyEndpoint)));
        assert!(!kind_retried(&connect, Error::new(UpstreamProtocol)));

        let reset = on(|o| o.reset = true);
        assert!(kind_retried(&reset, Error::new(UpstreamProtocol)));
        let foreign: crate::BoxError = "connection reset".into();
        assert!(error_is_retriable(&reset, &*foreign));
        assert!(!kind_retried(&reset, Error::new(Connect)));

        let timeout = on(|o| o.timeout = true);
        assert!(kind_retried(&timeout, Error::new(BackendRequestTimeout)));
        assert!(kind_retried(&timeout, Error::new(Timeout)));
        assert!(!kind_retried(&timeout, Error::new(RequestTimeout)));
        assert!(!kind_retried(&timeout, Error::new(Connect)));

        for any in [
            on(|o| o.server_error = true),
            on(|o| o.gateway_error = true),
        ] {
            for kind in [
                Connect,
                NoHealthyEndpoint,
                UpstreamProtocol,
                Timeout,
                BackendRequestTimeout,
            ] {
                assert!(kind_retried(&any, Error::new(kind)), "{kind:?}");
            }
        }

        let rsp = |status: u16| Response::builder().status(status).body(()).unwrap();
        let five = on(|o| o.server_error = true);
        assert!(response_is_retriable(&five, &rsp(500)));
        assert!(response_is_retriable(&five, &rsp(501)));
        assert!(!response_is_retriable(&five, &rsp(429)));
        let gw = on(|o| o.gateway_error = true);
        assert!(!response_is_retriable(&gw, &rsp(500)));
        for s in [502, 503, 504] {
            assert!(response_is_retriable(&gw, &rsp(s)));
        }
        let codes = on(|o| o.statuses = vec![StatusCode::TOO_MANY_REQUESTS]);
        assert!(response_is_retriable(&codes, &rsp(429)));
        assert!(!response_is_retriable(&codes, &rsp(503)));
        assert!(!response_is_retriable(&unsent, &rsp(503)));

        let grpc = on(|o| o.grpc = vec![14]);
        let g = |code: &str| {
            Response::builder()
                .header("grpc-status", code)
                .body(())
                .unwrap()
        };
        assert!(response_is_retriable(&grpc, &g("14")));
        assert!(!response_is_retriable(&grpc, &g("0")));
        assert!(!response_is_retriable(&grpc, &rsp(200)));
    }
}
