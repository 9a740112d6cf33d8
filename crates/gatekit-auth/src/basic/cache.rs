//! Verified (and refused) credentials, remembered for a short while.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::htpasswd::User;

/// A SHA-256 digest of an `Authorization` header value.
pub(super) use crate::header::Digest;

/// What the cache knows of a credential.
pub(super) enum Cached {
    /// Verified: this user.
    Valid(Arc<User>),
    /// Refused recently.
    Invalid,
}

/// Two bounded maps from header digest to verdict: one for verified credentials, one
/// for refused ones, so a flood of distinct wrong passwords cannot evict the valid
/// users' entries. A full map takes no new entry until its entries expire (it is
/// purged of expired entries first): only valid credentials enter the first, so it
/// fills only with real users' logins. The locks are held for one map operation,
/// never across an `.await`.
pub(super) struct Cache {
    valid: Mutex<HashMap<Digest, (Arc<User>, Instant)>>,
    invalid: Mutex<HashMap<Digest, Instant>>,
    ttl: Duration,
    failure_ttl: Duration,
    max_entries: usize,
}

impl Cache {
    pub(super) fn new(ttl: Duration, failure_ttl: Duration, max_entries: usize) -> Self {
        Self {
            valid: Mutex::default(),
            invalid: Mutex::default(),
            ttl,
            failure_ttl,
            max_entries,
        }
    }

    /// The verdict on `key`, if one is remembered and still fresh.
    pub(super) fn get(&self, key: &Digest, now: Instant) -> Option<Cached> {
        {
            let mut valid = self.valid.lock();
            if let Some((user, expires)) = valid.get(key) {
                if *expires > now {
                    return Some(Cached::Valid(Arc::clone(user)));
                }
                valid.remove(key);
            }
        }
        let mut invalid = self.invalid.lock();
        match invalid.get(key) {
            Some(expires) if *expires > now => Some(Cached::Invalid),
            Some(_) => {
                invalid.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers that `key` verified as `user`.
    pub(super) fn insert_valid(&self, key: Digest, user: Arc<User>, now: Instant) {
        if self.ttl.is_zero() || self.max_entries == 0 {
            return;
        }
        let mut valid = self.valid.lock();
        if valid.len() >= self.max_entries {
            valid.retain(|_, (_, expires)| *expires > now);
            if valid.len() >= self.max_entries {
                return;
            }
        }
        valid.insert(key, (user, now + self.ttl));
    }

    /// Remembers that `key` was refused.
    pub(super) fn insert_invalid(&self, key: Digest, now: Instant) {
        if self.failure_ttl.is_zero() || self.max_entries == 0 {
            return;
        }
        let mut invalid = self.invalid.lock();
        if invalid.len() >= self.max_entries {
            invalid.retain(|_, expires| *expires > now);
            if invalid.len() >= self.max_entries {
                return;
            }
        }
        invalid.insert(key, now + self.failure_ttl);
    }
}
