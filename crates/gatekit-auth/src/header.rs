//! What the mechanisms share about credentials and headers: the digest credentials are
//! looked up by, the 401 challenge, and the value of a header naming who was
//! authenticated.

use gatekit_core::ConfigError;
use gatekit_core::access::KeyDigest;
use http::HeaderValue;

/// A SHA-256 digest of a key: gatekit-core's, the one the translation also makes.
pub(crate) type Digest = KeyDigest;

/// The SHA-256 digest of `key`.
pub(crate) fn digest_of(key: &[u8]) -> Digest {
    KeyDigest::of(key)
}

/// The challenge `<scheme> realm="<realm>"<params>` for a 401, checked once at
/// configuration time.
///
/// # Errors
///
/// A realm that cannot be a quoted string in a header (a `"`, a `\`, a control or
/// non-ASCII character).
pub(crate) fn challenge(
    scheme: &str,
    realm: &str,
    params: &str,
) -> Result<HeaderValue, ConfigError> {
    if realm
        .chars()
        .any(|c| c == '"' || c == '\\' || !(c == ' ' || c.is_ascii_graphic()))
    {
        return Err(ConfigError::new(
            "realm",
            "must be printable ASCII without `\"` or `\\`",
        ));
    }
    HeaderValue::try_from(format!("{scheme} realm=\"{realm}\"{params}"))
        .map_err(|_| ConfigError::new("realm", "not a valid header value"))
}

/// The value of a header that forwards `name` (a consumer, a user) to the backend.
///
/// # Errors
///
/// A name that is not a valid header value.
pub(crate) fn forwarded_value(field: &str, name: &str) -> Result<HeaderValue, ConfigError> {
    HeaderValue::try_from(name)
        .ok()
        .filter(|_| !name.is_empty())
        .ok_or_else(|| {
            ConfigError::new(
                field,
                "the name cannot be sent in a header (empty or not visible ASCII)",
            )
        })
}
