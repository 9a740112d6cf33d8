//! How an [`Upstream`](crate::Upstream) balances: the algorithm and its options, slow
//! start, locality, the panic threshold and the outcome observer.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use crate::error::ParseAlgorithmError;
use crate::observe::OutcomeObserver;

/// A balancing algorithm, selectable by name (`"least-request".parse()`).
///
/// See the [`balance`](crate#algorithms) section of the crate docs for how each works and
/// what slow start means for it. A Kubernetes BackendPolicy names the same algorithms in
/// its own schema type (`gatekit_k8s::types::policy::Algorithm`, same names and docs);
/// gatekit-gateway maps one to the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// `round-robin`: one atomic cursor over the usable endpoints; ignores weights.
    #[default]
    RoundRobin,
    /// `weighted-round-robin`: smooth weighted round robin over a schedule built when
    /// the endpoint set changes (weights 5,1,1 give `a a b a c a a`, no bursts).
    WeightedRoundRobin,
    /// `least-request`: fewest outstanding requests per unit of weight; an exact scan
    /// for small sets, power of two choices for large ones.
    LeastRequest,
    /// `ip-hash`: consistent hashing (Maglev) on the client's IP address.
    IpHash,
    /// `consistent-hash`: consistent hashing (Maglev) on the configured [`HashKey`].
    ConsistentHash,
    /// `peak-ewma`: power of two choices on peak-EWMA latency × (outstanding + 1).
    PeakEwma,
    /// `random`: a weighted random pick.
    Random,
}

impl Algorithm {
    /// Every algorithm, in documentation order.
    pub const ALL: [Algorithm; 7] = [
        Self::RoundRobin,
        Self::WeightedRoundRobin,
        Self::LeastRequest,
        Self::IpHash,
        Self::ConsistentHash,
        Self::PeakEwma,
        Self::Random,
    ];

    /// The configuration name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round-robin",
            Self::WeightedRoundRobin => "weighted-round-robin",
            Self::LeastRequest => "least-request",
            Self::IpHash => "ip-hash",
            Self::ConsistentHash => "consistent-hash",
            Self::PeakEwma => "peak-ewma",
            Self::Random => "random",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = ParseAlgorithmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseAlgorithmError::new(s))
    }
}

/// Where `consistent-hash` takes its key from. A request without the key is balanced
/// randomly (it has no affinity to keep).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashKey {
    /// The client's IP address, from [`gatekit_core::ConnectionInfo`] in the request
    /// extensions.
    #[default]
    SourceIp,
    /// The value of a request header (the first one, as bytes).
    Header(HeaderName),
    /// The value of a cookie.
    Cookie(Arc<str>),
    /// The raw (not percent-decoded) value of a query parameter.
    Query(Arc<str>),
}

/// Slow start: a new or recovered endpoint's effective weight ramps from
/// `floor × weight` to its full weight over `window`, as
/// `max(floor, (elapsed / window) ^ (1 / aggression))` (Envoy's formula).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlowStart {
    window: Duration,
    floor: f64,
    aggression: f64,
}

impl SlowStart {
    /// A linear ramp over `window` from a floor of 10%.
    pub const fn new(window: Duration) -> Self {
        Self {
            window,
            floor: 0.1,
            aggression: 1.0,
        }
    }

    /// Sets the share of its weight an endpoint gets at the start of the window
    /// (clamped to 0.01..=1).
    #[must_use]
    pub fn with_floor(mut self, floor: f64) -> Self {
        self.floor = if floor.is_finite() {
            floor.clamp(0.01, 1.0)
        } else {
            0.1
        };
        self
    }

    /// Sets the aggression: 1 is linear, larger values ramp faster at first (clamped to
    /// 0.1..=10).
    #[must_use]
    pub fn with_aggression(mut self, aggression: f64) -> Self {
        self.aggression = if aggression.is_finite() {
            aggression.clamp(0.1, 10.0)
        } else {
            1.0
        };
        self
    }

    /// The ramp's length.
    pub const fn window(&self) -> Duration {
        self.window
    }

    /// The factor (floor..=1) an endpoint's weight is multiplied by `elapsed` after it
    /// joined or recovered.
    pub fn factor(&self, elapsed: Duration) -> f64 {
        if elapsed >= self.window || self.window.is_zero() {
            return 1.0;
        }
        let t = elapsed.as_secs_f64() / self.window.as_secs_f64();
        let f = if self.aggression == 1.0 {
            t
        } else {
            t.powf(1.0 / self.aggression)
        };
        f.max(self.floor)
    }
}

/// Locality: which endpoints are local. Endpoints are grouped into priority levels:
/// 0 = local cluster and local zone, 1 = local cluster, other zone, 2 = other cluster,
/// local zone, 3 = the rest (a criterion that is not configured always matches).
///
/// The highest non-empty level takes `min(100%, available share × overprovisioning)` of
/// the traffic and the next levels take the rest, as Envoy does: with the default
/// overprovisioning factor of 1.4, a level keeps all its traffic while at least ~72% of
/// its endpoints are available.
#[derive(Clone, Debug, PartialEq)]
pub struct Locality {
    zone: Option<Arc<str>>,
    cluster: Option<Arc<str>>,
    overprovisioning: f64,
}

impl Default for Locality {
    fn default() -> Self {
        Self {
            zone: None,
            cluster: None,
            overprovisioning: 1.4,
        }
    }
}

impl Locality {
    /// Sets the local zone.
    #[must_use]
    pub fn with_zone(mut self, zone: impl Into<Arc<str>>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// Sets the local cluster.
    #[must_use]
    pub fn with_cluster(mut self, cluster: impl Into<Arc<str>>) -> Self {
        self.cluster = Some(cluster.into());
        self
    }

    /// Sets the overprovisioning factor (clamped to 1..=10; default 1.4).
    #[must_use]
    pub fn with_overprovisioning(mut self, factor: f64) -> Self {
        self.overprovisioning = if factor.is_finite() {
            factor.clamp(1.0, 10.0)
        } else {
            1.4
        };
        self
    }

    pub(crate) fn overprovisioning(&self) -> f64 {
        self.overprovisioning
    }

    /// The priority level of `ep` (0 is the most local).
    pub fn priority(&self, ep: &gatekit_core::Endpoint) -> u8 {
        let zone_ok = self.zone.as_deref().is_none_or(|z| ep.zone() == Some(z));
        let cluster_ok = self
            .cluster
            .as_deref()
            .is_none_or(|c| ep.cluster() == Some(c));
        match (cluster_ok, zone_ok) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        }
    }
}

/// The configuration of an [`Upstream`](crate::Upstream): `Default` plus `with_*` setters.
///
/// The options most upstreams never set (hash key, bounded load, slow start, locality,
/// the panic threshold, peak-EWMA's default latency and decay) are kept behind one box,
/// made by the first setter of one of them: an upstream keeps its configuration inline,
/// and most keep only the small part (40 bytes; a pick reads the rare part only when it
/// is there).
#[derive(Clone)]
pub struct UpstreamConfig {
    pub(crate) algorithm: Algorithm,
    /// In nanoseconds (read by every pick: no conversion there).
    pub(crate) health_refresh_ns: u64,
    pub(crate) observer: Option<Arc<dyn OutcomeObserver>>,
    /// `None`: every rare option at its default.
    rare: Option<Box<Rare>>,
}

/// The options of an [`UpstreamConfig`] most upstreams never set.
#[derive(Clone, Debug, PartialEq)]
struct Rare {
    hash_key: HashKey,
    bounded_load: Option<f64>,
    slow_start: Option<SlowStart>,
    locality: Locality,
    panic_threshold: f64,
    ewma_default_rtt: Duration,
    ewma_decay: Duration,
}

impl Default for Rare {
    fn default() -> Self {
        Self {
            hash_key: HashKey::default(),
            bounded_load: None,
            slow_start: None,
            locality: Locality::default(),
            panic_threshold: DEFAULT_PANIC_THRESHOLD,
            ewma_default_rtt: DEFAULT_EWMA_RTT,
            ewma_decay: DEFAULT_EWMA_DECAY,
        }
    }
}

/// Peak-EWMA's latency estimate for an endpoint without a sample, by default.
const DEFAULT_EWMA_RTT: Duration = Duration::from_millis(30);
const DEFAULT_EWMA_DECAY: Duration = Duration::from_secs(10);
const DEFAULT_PANIC_THRESHOLD: f64 = 0.5;

/// The default [`Locality`] (everything local), for configurations without one.
static DEFAULT_LOCALITY: Locality = Locality {
    zone: None,
    cluster: None,
    overprovisioning: 1.4,
};

/// The default [`HashKey`].
static DEFAULT_HASH_KEY: HashKey = HashKey::SourceIp;

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::default(),
            health_refresh_ns: 10_000_000,
            observer: None,
            rare: None,
        }
    }
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("algorithm", &self.algorithm)
            .field("hash_key", self.hash_key())
            .field("bounded_load", &self.bounded_load())
            .field("slow_start", &self.slow_start())
            .field("locality", self.locality())
            .field("panic_threshold", &self.panic_threshold())
            .field(
                "health_refresh",
                &Duration::from_nanos(self.health_refresh_ns),
            )
            .field("ewma_default_rtt", &self.ewma_default_rtt())
            .field("ewma_decay", &self.ewma_decay())
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl UpstreamConfig {
    /// The default configuration with `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        Self::default().with_algorithm(algorithm)
    }

    /// Sets the algorithm (default `round-robin`).
    #[must_use]
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Sets where `consistent-hash` takes its key (default: the source IP).
    #[must_use]
    pub fn with_hash_key(mut self, key: HashKey) -> Self {
        self.rare_mut().hash_key = key;
        self
    }

    /// Enables bounded load for the hash algorithms: an endpoint whose outstanding
    /// requests exceed `(1 + epsilon) ×` the average is passed over for the next one in
    /// the key's table order ("consistent hashing with bounded loads", Mirrokni et al.).
    #[must_use]
    pub fn with_bounded_load(mut self, epsilon: f64) -> Self {
        self.rare_mut().bounded_load = (epsilon.is_finite() && epsilon >= 0.0).then_some(epsilon);
        self
    }

    /// Enables slow start.
    #[must_use]
    pub fn with_slow_start(mut self, slow_start: SlowStart) -> Self {
        self.rare_mut().slow_start = (!slow_start.window.is_zero()).then_some(slow_start);
        self
    }

    /// Sets locality (default: everything is local).
    #[must_use]
    pub fn with_locality(mut self, locality: Locality) -> Self {
        self.rare_mut().locality = locality;
        self
    }

    /// Sets the panic threshold (0..=1, default 0.5): when fewer than this share of the
    /// ready endpoints are available, health is ignored and traffic spreads over all
    /// ready endpoints (better some errors than overloading the few survivors). 0 turns
    /// panic mode off.
    #[must_use]
    pub fn with_panic_threshold(mut self, share: f64) -> Self {
        self.rare_mut().panic_threshold = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            DEFAULT_PANIC_THRESHOLD
        };
        self
    }

    /// Sets how often (at most) aggregate health — panic mode, locality shares, the
    /// start of a recovered endpoint's slow start — is recomputed from the per-endpoint
    /// health (default 10 ms). Each pick still checks its own endpoint's health.
    /// [`Upstream::refresh_health`](crate::Upstream::refresh_health) forces it.
    #[must_use]
    pub fn with_health_refresh(mut self, every: Duration) -> Self {
        self.health_refresh_ns = u64::try_from(every.as_nanos()).unwrap_or(u64::MAX);
        self
    }

    /// Sets peak-EWMA's latency estimate for endpoints without a sample (default 30 ms)
    /// and its decay time constant (default 10 s).
    #[must_use]
    pub fn with_ewma(mut self, default_rtt: Duration, decay: Duration) -> Self {
        self.rare_mut().ewma_default_rtt = default_rtt.max(Duration::from_nanos(1));
        self.rare_mut().ewma_decay = decay.max(Duration::from_millis(1));
        self
    }

    /// Sets the observer told of every request's outcome (passive outlier detection).
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn OutcomeObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The rare options, made at the first setter of one.
    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Where `consistent-hash` takes its key.
    pub(crate) fn hash_key(&self) -> &HashKey {
        self.rare
            .as_ref()
            .map_or(&DEFAULT_HASH_KEY, |r| &r.hash_key)
    }

    /// Bounded load's epsilon, if on.
    #[inline]
    pub(crate) fn bounded_load(&self) -> Option<f64> {
        self.rare.as_ref().and_then(|r| r.bounded_load)
    }

    /// Slow start, if on.
    #[inline]
    pub(crate) fn slow_start(&self) -> Option<&SlowStart> {
        self.rare.as_ref().and_then(|r| r.slow_start.as_ref())
    }

    /// Locality.
    pub(crate) fn locality(&self) -> &Locality {
        self.rare
            .as_ref()
            .map_or(&DEFAULT_LOCALITY, |r| &r.locality)
    }

    /// Peak-EWMA's latency estimate for an endpoint without a sample.
    pub(crate) fn ewma_default_rtt(&self) -> Duration {
        self.rare
            .as_ref()
            .map_or(DEFAULT_EWMA_RTT, |r| r.ewma_default_rtt)
    }

    /// Peak-EWMA's decay time constant.
    pub(crate) fn ewma_decay(&self) -> Duration {
        self.rare
            .as_ref()
            .map_or(DEFAULT_EWMA_DECAY, |r| r.ewma_decay)
    }

    /// [`ewma_decay`](Self::ewma_decay) in nanoseconds, as the estimate's arithmetic
    /// takes it.
    pub(crate) fn ewma_decay_ns(&self) -> f64 {
        self.ewma_decay().as_nanos().min(u128::from(u64::MAX)) as f64
    }

    /// The panic threshold.
    pub(crate) fn panic_threshold(&self) -> f64 {
        self.rare
            .as_ref()
            .map_or(DEFAULT_PANIC_THRESHOLD, |r| r.panic_threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_parse_by_name_with_a_clear_error() {
        for a in Algorithm::ALL {
            assert_eq!(a.as_str().parse::<Algorithm>().unwrap(), a);
        }
        assert_eq!(
            " Least-Request ".parse::<Algorithm>().unwrap(),
            Algorithm::LeastRequest
        );
        let err = "fastest".parse::<Algorithm>().unwrap_err();
        assert_eq!(err.name(), "fastest");
        assert!(err.to_string().contains("peak-ewma"), "{err}");
    }

    #[test]
    fn slow_start_factor_ramps_from_the_floor() {
        let s = SlowStart::new(Duration::from_secs(10));
        assert_eq!(s.factor(Duration::ZERO), 0.1);
        assert!((s.factor(Duration::from_secs(5)) - 0.5).abs() < 1e-9);
        assert_eq!(s.factor(Duration::from_secs(10)), 1.0);
        let fast = s.with_aggression(2.0);
        assert!(fast.factor(Duration::from_secs(5)) > 0.7);
    }

    #[test]
    fn locality_priorities() {
        use gatekit_core::Endpoint;
        let loc = Locality::default().with_zone("a").with_cluster("c1");
        let ep = |z: &str, c: &str| {
            Endpoint::new("127.0.0.1:1".parse().unwrap())
                .with_zone(z)
                .with_cluster(c)
        };
        assert_eq!(loc.priority(&ep("a", "c1")), 0);
        assert_eq!(loc.priority(&ep("b", "c1")), 1);
        assert_eq!(loc.priority(&ep("a", "c2")), 2);
        assert_eq!(loc.priority(&ep("b", "c2")), 3);
        assert_eq!(Locality::default().priority(&ep("x", "y")), 0);
    }
}
