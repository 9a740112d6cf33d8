//! The bearer token that guards the operational admin endpoints.

use std::fmt;
use std::path::{Path, PathBuf};

use gatekit_auth::credential::CredentialSource;
use gatekit_core::access::KeyDigest;
use http::request::Parts;

/// Why an admin token could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminTokenError {
    /// The token file could not be read.
    #[error("cannot read the admin token file {path}: {source}")]
    #[non_exhaustive]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The token is empty or not sendable in an `Authorization` header.
    #[error("admin token {origin}: {reason}")]
    #[non_exhaustive]
    Invalid {
        /// Where the token came from (a file path).
        origin: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A bearer token for `/config`, `/fleet` and any future write endpoint: a request
/// must carry `Authorization: Bearer <token>`.
///
/// Only the token's SHA-256 digest is kept, and a presented token is compared by
/// digest in constant time. `Debug` never shows either.
#[derive(Clone)]
pub struct AdminToken {
    digest: KeyDigest,
}

impl AdminToken {
    /// A token from its text; surrounding whitespace (a file's final newline) is
    /// removed.
    ///
    /// # Errors
    ///
    /// [`AdminTokenError::Invalid`] when the token is empty or has characters a
    /// header value cannot carry (anything but visible ASCII).
    pub fn new(token: &str, origin: &str) -> Result<Self, AdminTokenError> {
        let invalid = |reason| AdminTokenError::Invalid {
            origin: origin.to_owned(),
            reason,
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(invalid("is empty"));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "must be visible ASCII without spaces (it is sent in an Authorization header)",
            ));
        }
        Ok(Self {
            digest: KeyDigest::of(token.as_bytes()),
        })
    }

    /// Reads the token from a file (e.g. a Kubernetes Secret mounted as a volume). The
    /// file is read once; restart the process to change the token.
    ///
    /// # Errors
    ///
    /// [`AdminTokenError::Read`] when the file cannot be read, otherwise as
    /// [`new`](Self::new).
    pub fn from_file(path: &Path) -> Result<Self, AdminTokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| AdminTokenError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::new(&text, &path.display().to_string())
    }

    /// Whether the request carries this token as a single `Authorization: Bearer`.
    pub(crate) fn admits(&self, parts: &Parts) -> bool {
        let source = CredentialSource::Header(http::header::AUTHORIZATION);
        source
            .find(&parts.uri, &parts.headers)
            .is_some_and(|presented| KeyDigest::of(presented.as_bytes()).ct_eq(&self.digest))
    }
}

/// Redacted.
impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(authorization: Option<&str>) -> Parts {
        let mut req = http::Request::builder().uri("/config");
        if let Some(value) = authorization {
            req = req.header("authorization", value);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn admits_only_the_exact_bearer_token() {
        let token = AdminToken::new("s3cret\n", "t").unwrap();
        assert!(token.admits(&parts(Some("Bearer s3cret"))));
        assert!(token.admits(&parts(Some("bearer s3cret"))));
        for bad in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("Basic s3cret"),
            Some("s3cret"),
        ] {
            assert!(!token.admits(&parts(bad)), "{bad:?}");
        }
        assert_eq!(format!("{token:?}"), "AdminToken(..)");
    }

    #[test]
    fn empty_or_unsendable_tokens_are_refused() {
        assert!(
            AdminToken::new(" \n", "f")
                .unwrap_err()
                .to_string()
                .contains("f: is empty")
        );
        assert!(AdminToken::new("a b", "f").is_err());
        assert!(AdminToken::new("é", "f").is_err());
    }
}
