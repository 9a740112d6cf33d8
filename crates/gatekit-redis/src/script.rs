//! The GCRA script, run by Redis atomically: gatekit-core's `Gcra::decide` in Lua.
//!
//! Lua numbers are doubles (53-bit integers), too small for nanoseconds since 1970, so
//! a theoretical arrival time (TAT) is stored as the string `"<seconds> <nanoseconds>"`,
//! and the script works with `TAT − now`, exact while it is under 2^53 ns (104 days;
//! [`Params`] clamps the quota to that). `KEYS[1]` is the bucket; `ARGV[1]` the emission
//! interval, `ARGV[2]` the tolerance (both ns). The answer is
//! `{allowed, remaining, reset_ns, retry_after_ns}`. An allowed request stores the new
//! TAT with a `PX` expiry of the time until the bucket is full again (a full bucket is
//! the same as an absent key), so idle keys cost Redis nothing.

use std::time::Duration;

use gatekit_core::ratelimit::Quota;

/// The clock: Redis's (`TIME`, microseconds), so every replica uses one clock.
const SERVER_CLOCK: &str = "local t = redis.call('TIME')
local now_s, now_ns = tonumber(t[1]), tonumber(t[2]) * 1000
";

/// The clock from `ARGV[3]` (seconds) and `ARGV[4]` (nanoseconds): tests only.
#[cfg(test)]
const ARGV_CLOCK: &str = "local now_s, now_ns = tonumber(ARGV[3]), tonumber(ARGV[4])
";

const BODY: &str = "local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local ahead = 0
local v = redis.call('GET', KEYS[1])
if v then
  local a, b = string.match(v, '^(%d+) (%d+)$')
  if a then
    ahead = (tonumber(a) - now_s) * 1000000000 + (tonumber(b) - now_ns)
    if ahead < 0 then ahead = 0 end
  end
end
local debt = ahead + emission
if debt > tolerance then
  return {0, 0, ahead, debt - tolerance}
end
local left = tolerance - debt
local remaining = math.floor(left / emission)
if remaining * emission > left then remaining = remaining - 1 end
if (remaining + 1) * emission <= left then remaining = remaining + 1 end
local ns = now_ns + debt
local s = math.floor(ns / 1000000000)
ns = ns - s * 1000000000
if ns < 0 then s = s - 1; ns = ns + 1000000000 end
if ns >= 1000000000 then s = s + 1; ns = ns - 1000000000 end
redis.call('SET', KEYS[1], string.format('%d %d', now_s + s, ns), 'PX', math.floor(debt / 1000000) + 1)
return {1, remaining, debt, 0}
";

/// The script on Redis's clock.
pub(crate) fn server_clock() -> redis::Script {
    redis::Script::new(&format!("{SERVER_CLOCK}{BODY}"))
}

/// The script on a clock passed in `ARGV[3..4]`.
#[cfg(test)]
pub(crate) fn argv_clock() -> redis::Script {
    redis::Script::new(&format!("{ARGV_CLOCK}{BODY}"))
}

/// The largest integer a Lua number holds exactly.
const LUA_INT_MAX: u64 = 1 << 53;

/// A [`Quota`] as the script's arguments, computed as gatekit-core's GCRA does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) emission: u64,
    pub(crate) tolerance: u64,
}

impl Params {
    pub(crate) fn new(quota: Quota) -> Self {
        let interval = u64::try_from(quota.interval.as_nanos()).unwrap_or(u64::MAX);
        let emission = interval
            .checked_div(quota.requests)
            .unwrap_or(interval)
            .clamp(1, LUA_INT_MAX / 2);
        let burst = if quota.requests == 0 {
            0
        } else {
            quota.burst.max(1)
        };
        Self {
            emission,
            tolerance: emission.saturating_mul(burst).min(LUA_INT_MAX / 2),
        }
    }
}

/// The script's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) allowed: bool,
    pub(crate) remaining: u64,
    pub(crate) reset: Duration,
    pub(crate) retry_after: Duration,
}

impl Answer {
    pub(crate) fn from_reply(reply: &[i64]) -> Option<Self> {
        let &[allowed, remaining, reset, retry_after] = reply else {
            return None;
        };
        let nanos = |n: i64| Duration::from_nanos(u64::try_from(n).unwrap_or(0));
        Some(Self {
            allowed: allowed == 1,
            remaining: u64::try_from(remaining).unwrap_or(0),
            reset: nanos(reset),
            retry_after: nanos(retry_after),
        })
    }
}

#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod support;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gatekit_core::ratelimit::{Quota, RateLimitConfig, RateLimiter};

    use super::support;
    use super::*;

    /// The script's arithmetic against gatekit-core's GCRA, request by request, on the
    /// same clock: core's on tokio's paused clock, the script's passed in `ARGV`.
    #[test]
    fn script_matches_core_gcra() {
        let server = support::RedisServer::start();
        let paused = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let quotas = [
            Quota::new(10, Duration::from_secs(1)).with_burst(3),
            Quota::new(7, Duration::from_secs(60)),
            Quota::new(1, Duration::from_millis(1)).with_burst(2),
            Quota::new(1000, Duration::from_secs(3600)).with_burst(50),
            Quota::new(0, Duration::from_secs(1)),
        ];
        // Arrival times in microseconds (the Redis clock's resolution).
        let mut arrivals = vec![0u64, 0, 0, 0, 1, 50_000, 99_999, 100_000, 100_001, 250_000];
        let mut t = 250_000;
        let mut seed = 7u64;
        for _ in 0..300 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            t += (seed >> 33) % 150_000;
            arrivals.push(t);
        }
        // A wall-clock base for the script, a second past a whole second.
        let base_s: u64 = 1_765_000_000;
        let script = argv_clock();
        let client = redis::Client::open(server.url()).unwrap();
        for (qi, quota) in quotas.into_iter().enumerate() {
            let params = Params::new(quota);
            let (core, t0) = paused.block_on(async {
                let l = RateLimiter::new(RateLimitConfig::new("cmp", vec![], quota));
                (l, tokio::time::Instant::now())
            });
            let core_key = core.key_from_bytes(b"k");
            for (i, &us) in arrivals.iter().enumerate() {
                let want = paused
                    .block_on(async { core.check_key(core_key, t0 + Duration::from_micros(us)) });
                let now_ns = us * 1000;
                let reply: Vec<i64> = rt.block_on(async {
                    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
                    let mut invocation = script.key(format!("cmp:{qi}"));
                    invocation
                        .arg(params.emission)
                        .arg(params.tolerance)
                        .arg(base_s + now_ns / 1_000_000_000)
                        .arg(now_ns % 1_000_000_000);
                    invocation.load_async(&mut conn).await.unwrap();
                    // The script's expiry runs on Redis's real clock, this test on a
                    // simulated one: a key expiring (a few ms for the 1 ms quota) between
                    // two simulated-simultaneous requests would reset the bucket. The
                    // stored state alone decides, so keep it: in the same transaction
                    // (a `PERSIST` sent after the reply could come after the expiry on a
                    // loaded machine).
                    let (reply,): (Vec<i64>,) = redis::pipe()
                        .atomic()
                        .invoke_script(&invocation)
                        .cmd("PERSIST")
                        .arg(format!("cmp:{qi}"))
                        .ignore()
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    reply
                });
                let got = Answer::from_reply(&reply).unwrap();
                let ctx = format!("quota {quota:?}, request {i} at {us} us");
                assert_eq!(got.allowed, want.is_allowed(), "{ctx}");
                assert_eq!(got.remaining, want.remaining(), "{ctx}");
                assert_eq!(got.retry_after, want.retry_after(), "{ctx}");
                assert_eq!(got.reset, want.reset(), "{ctx}");
            }
        }
    }
}
