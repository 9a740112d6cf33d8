//! [`StreamAccess`]: allow and deny rules on the client address of a stream connection
//! (UDP: flow), decided before any backend is contacted.

use std::net::IpAddr;

use crate::ratelimit::Cidr;

/// One check of a stream route's client address: ordered rules, each allowing or
/// denying the clients in its ranges, and the decision when none matches. The first
/// rule whose ranges hold the address decides.
///
/// The address is the connection's
/// [`remote_addr`](crate::ConnectionInfo::remote_addr): the TCP peer, or the source
/// of a PROXY protocol header sent from a trusted range. A route may carry several
/// checks ([`StreamRoute::access`](super::StreamRoute::access)); every one must allow.
///
/// ```
/// use gatekit_core::ratelimit::Cidr;
/// use gatekit_core::stream::StreamAccess;
///
/// let lan: Cidr = "10.0.0.0/8".parse()?;
/// let guest: Cidr = "10.9.0.0/16".parse()?;
/// let check = StreamAccess::new("office", false).deny([guest]).allow([lan]);
/// assert!(check.allows("10.1.2.3".parse()?));
/// assert!(!check.allows("10.9.0.1".parse()?));
/// assert!(!check.allows("192.0.2.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamAccess {
    name: String,
    rules: Vec<(bool, Vec<Cidr>)>,
    default_allow: bool,
}

impl StreamAccess {
    /// A check named `name` (for `/config` and logs) without rules: every client is
    /// allowed when `default_allow`, else denied.
    pub fn new(name: impl Into<String>, default_allow: bool) -> Self {
        Self {
            name: name.into(),
            rules: Vec::new(),
            default_allow,
        }
    }

    /// A check that denies every client: what a route gets when a policy asked for a
    /// check that cannot be made on a stream (its connections are refused, never
    /// served unguarded).
    pub fn deny_all(name: impl Into<String>) -> Self {
        Self::new(name, false)
    }

    /// Appends a rule allowing the clients in `cidrs`.
    #[must_use]
    pub fn allow(mut self, cidrs: impl IntoIterator<Item = Cidr>) -> Self {
        self.rules.push((true, cidrs.into_iter().collect()));
        self
    }

    /// Appends a rule denying the clients in `cidrs`.
    #[must_use]
    pub fn deny(mut self, cidrs: impl IntoIterator<Item = Cidr>) -> Self {
        self.rules.push((false, cidrs.into_iter().collect()));
        self
    }

    /// The check's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rules in order: (allow, ranges).
    pub fn rules(&self) -> impl Iterator<Item = (bool, &[Cidr])> {
        self.rules
            .iter()
            .map(|(allow, cidrs)| (*allow, cidrs.as_slice()))
    }

    /// The decision when no rule matches.
    pub fn default_allow(&self) -> bool {
        self.default_allow
    }

    /// Whether the client at `ip` may connect: the first rule holding it decides, else
    /// the default.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.rules
            .iter()
            .find(|(_, cidrs)| cidrs.iter().any(|c| c.contains(ip)))
            .map_or(self.default_allow, |(allow, _)| *allow)
    }
}
