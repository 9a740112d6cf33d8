//! The generic cell rate algorithm on one bucket: pure arithmetic on nanoseconds of the
//! limiter's clock, and the header values that describe a quota.

use std::time::Duration;

use http::HeaderValue;

use super::Quota;

/// The largest Integer a structured field may carry (RFC 9651 §3.3.1: 15 digits).
const SF_INTEGER_MAX: u64 = 999_999_999_999_999;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A [`Quota`] in the units GCRA works in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Gcra {
    /// What one request costs: `interval / requests`, at least 1 ns.
    emission: u64,
    /// The debt a bucket may carry: `emission × burst`; 0 for a quota of 0 requests
    /// (every request refused).
    tolerance: u64,
    quota: Quota,
}

/// What one request does to one bucket. Times are nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Outcome {
    pub(super) allowed: bool,
    /// The bucket's theoretical arrival time after the request, if it is allowed.
    pub(super) new_tat: u64,
    /// Requests that could still be sent at once.
    pub(super) remaining: u64,
    /// Until the bucket is full again (allowed: counting this request).
    pub(super) reset: u64,
    /// Until a request would be allowed (zero when allowed).
    pub(super) retry_after: u64,
}

impl Gcra {
    pub(super) fn new(quota: Quota) -> Self {
        let interval = u64::try_from(quota.interval.as_nanos()).unwrap_or(u64::MAX);
        // A quota of 0 requests: one request "costs" the interval, and none is allowed.
        let emission = interval
            .checked_div(quota.requests)
            .unwrap_or(interval)
            .max(1);
        let burst = if quota.requests == 0 {
            0
        } else {
            quota.burst.max(1)
        };
        Self {
            emission,
            tolerance: emission.saturating_mul(burst),
            quota,
        }
    }

    pub(super) fn quota(&self) -> Quota {
        self.quota
    }

    pub(super) fn emission(&self) -> u64 {
        self.emission
    }

    /// One request arriving at `now` on a bucket whose theoretical arrival time is `tat`
    /// (0, or anything up to `now`, for a full bucket).
    ///
    /// The request is allowed when the bucket's debt after it, `max(tat, now) + emission
    /// - now`, stays within `emission × burst`.
    pub(super) fn decide(&self, tat: u64, now: u64) -> Outcome {
        let base = tat.max(now);
        let new_tat = base.saturating_add(self.emission);
        let debt = new_tat - now;
        if debt <= self.tolerance {
            Outcome {
                allowed: true,
                new_tat,
                remaining: (self.tolerance - debt) / self.emission,
                reset: debt,
                retry_after: 0,
            }
        } else {
            Outcome {
                allowed: false,
                new_tat: tat,
                remaining: 0,
                reset: base - now,
                retry_after: debt - self.tolerance,
            }
        }
    }
}

/// Whole seconds, rounded up, at least 1: the `Retry-After` and `t=` value of a delay.
pub(super) fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.clamp(1, SF_INTEGER_MAX)
}

/// `"name"`: the policy name as a structured-field String (RFC 9651 §3.3.3): `"` and `\`
/// escaped, anything outside printable ASCII replaced by `_`.
pub(super) fn sf_string(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out.push('"');
    out
}

/// `"name";q=<requests>;w=<seconds>`, a Quota Policy Item of the `RateLimit-Policy`
/// field. The window is the interval in whole seconds, rounded up (at least 1); when
/// that changes it, the quota is scaled to the window and rounded down, so `10` per
/// 500 ms reads `q=20;w=1`.
pub(super) fn policy_item(name: &str, quota: Quota) -> String {
    let interval = quota.interval.as_nanos().max(1);
    let window = ceil_secs(quota.interval);
    let q = u128::from(quota.requests) * u128::from(window) * u128::from(NANOS_PER_SEC) / interval;
    let q = u64::try_from(q).unwrap_or(u64::MAX).min(SF_INTEGER_MAX);
    format!("{};q={q};w={window}", sf_string(name))
}

/// The `RateLimit` field value `"name";r=<remaining>;t=<seconds>` with `prefix` being
/// `"name";r=`. One allocation, of the exact size.
pub(super) fn service_limit(prefix: &str, remaining: u64, t: u64) -> HeaderValue {
    let r = remaining.min(SF_INTEGER_MAX);
    let mut digits = itoa_buf();
    let r = fmt_u64(&mut digits, r);
    let mut digits_t = itoa_buf();
    let t = fmt_u64(&mut digits_t, t.min(SF_INTEGER_MAX));
    let mut out = Vec::with_capacity(prefix.len() + r.len() + 3 + t.len());
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(r);
    out.extend_from_slice(b";t=");
    out.extend_from_slice(t);
    // Visible ASCII only (the prefix went through `sf_string`): cannot fail; the empty
    // value is an unreachable fallback, never a panic.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(out))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

const fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// Writes `n` in decimal at the end of `buf` and returns the digits.
fn fmt_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        // `n % 10` is a single digit.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = NANOS_PER_SEC;

    #[test]
    fn a_full_bucket_allows_the_burst_then_one_per_emission_interval() {
        // 3 per 3 s, burst 3: one request costs 1 s.
        let g = Gcra::new(Quota::new(3, Duration::from_secs(3)));
        let now = 10 * SEC;
        let mut tat = 0;
        for left in [2, 1, 0] {
            let o = g.decide(tat, now);
            assert!(o.allowed);
            assert_eq!(o.remaining, left);
            assert_eq!(o.reset, (3 - left) * SEC);
            tat = o.new_tat;
        }
        let refused = g.decide(tat, now);
        assert!(!refused.allowed);
        assert_eq!(refused.new_tat, tat, "a refusal changes nothing");
        assert_eq!(refused.retry_after, SEC);
        assert_eq!(refused.reset, 3 * SEC);
        // One emission interval later exactly one more request passes.
        let o = g.decide(tat, now + SEC);
        assert!(o.allowed);
        assert_eq!(o.remaining, 0);
        assert!(!g.decide(o.new_tat, now + SEC).allowed);
        // After the whole interval the bucket is full: as if the key were absent.
        assert_eq!(g.decide(tat, now + 3 * SEC), g.decide(0, now + 3 * SEC));
    }

    #[test]
    fn burst_is_the_bucket_size_and_zero_requests_refuse_everything() {
        let g = Gcra::new(Quota::new(10, Duration::from_secs(1)).with_burst(2));
        let a = g.decide(0, 0);
        let b = g.decide(a.new_tat, 0);
        assert!(a.allowed && b.allowed && !g.decide(b.new_tat, 0).allowed);

        let mut zero = Quota::new(0, Duration::from_secs(5));
        zero.burst = 0;
        let none = Gcra::new(zero);
        let o = none.decide(0, 123);
        assert!(!o.allowed);
        assert_eq!(o.retry_after, 5 * SEC);
    }

    #[test]
    fn header_values_follow_the_draft_syntax() {
        let q = Quota::new(100, Duration::from_secs(60));
        assert_eq!(policy_item("api", q), r#""api";q=100;w=60"#);
        let half = Quota::new(10, Duration::from_millis(500));
        assert_eq!(policy_item("fast", half), r#""fast";q=20;w=1"#);
        let odd = Quota::new(5, Duration::from_millis(1500));
        assert_eq!(policy_item("odd", odd), r#""odd";q=6;w=2"#);
        assert_eq!(sf_string("a\"b\\c\u{e9}\n"), r#""a\"b\\c__""#);
        assert_eq!(service_limit(r#""api";r="#, 7, 42), r#""api";r=7;t=42"#);
        assert_eq!(service_limit(r#""x";r="#, 0, 1), r#""x";r=0;t=1"#);
        assert_eq!(
            service_limit("p;r=", u64::MAX, 0),
            "p;r=999999999999999;t=0"
        );
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_millis(20_001)), 21);
        assert_eq!(ceil_secs(Duration::from_secs(20)), 20);
    }
}
