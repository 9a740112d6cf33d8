//! htpasswd data: parsed and checked at configuration time, verified per request.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatekit_core::ConfigError;
use http::HeaderValue;
use ring::digest;

use crate::header::forwarded_value;

/// Highest bcrypt cost accepted: cost 16 takes several seconds per check on one core;
/// a higher one is a configuration mistake that would make every check a stall.
pub(super) const MAX_BCRYPT_COST: u32 = 16;

/// Highest argon2 memory cost accepted (KiB): 256 MiB per concurrent check.
pub(super) const MAX_ARGON2_MEMORY_KIB: u32 = 256 * 1024;

/// A stored password hash.
pub(super) enum Hash {
    /// bcrypt, `$2a$` / `$2b$` / `$2y$` (the whole 60-character string).
    Bcrypt(String),
    /// Argon2 in PHC form (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`).
    Argon2(String),
    /// `{SHA}`: the SHA-1 digest of the password, Base64 (what Envoy's basic auth
    /// filter, and so Envoy Gateway, accepts).
    Sha1([u8; 20]),
}

impl Hash {
    /// Whether checking this hash costs enough CPU to need the bounded pool.
    pub(super) fn is_slow(&self) -> bool {
        !matches!(self, Self::Sha1(_))
    }

    /// Whether `password` matches. Comparisons are constant-time (bcrypt and argon2
    /// compare inside their crates; SHA-1 digests are compared here without an early
    /// exit).
    pub(super) fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            Self::Argon2(hash) => {
                use argon2::PasswordVerifier;
                argon2::Argon2::default()
                    .verify_password(password, hash.as_str())
                    .is_ok()
            }
            Self::Sha1(expected) => {
                let got = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, password);
                got.as_ref()
                    .iter()
                    .zip(expected)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Bcrypt(_) => "bcrypt",
            Self::Argon2(_) => "argon2",
            Self::Sha1(_) => "sha1",
        }
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(redacted)", self.kind())
    }
}

/// One user of the htpasswd data.
#[derive(Debug)]
pub(super) struct User {
    pub(super) name: Arc<str>,
    pub(super) hash: Hash,
    /// The name as the forwarded header's value, when one is configured.
    pub(super) header: Option<HeaderValue>,
}

/// The users, by name, and the lines that use the weak `{SHA}` scheme.
pub(super) struct Users {
    pub(super) by_name: HashMap<Box<str>, Arc<User>>,
    pub(super) sha1_lines: Vec<usize>,
}

fn line_error(line: usize, reason: &str) -> ConfigError {
    ConfigError::new(format!("htpasswd line {line}"), reason)
}

/// Parses htpasswd `text`: `user:hash` lines; empty lines and lines starting with `#`
/// are skipped. `forward`: whether user names go to a header (they must then be valid
/// header values).
///
/// # Errors
///
/// Naming the line (never its content): no `:`, an empty user name, a user given twice,
/// a plain-text password or a hash scheme other than bcrypt, argon2 and `{SHA}`
/// (crypt, MD5 `$apr1$`, SHA-crypt), a malformed hash, a bcrypt cost above
/// [`MAX_BCRYPT_COST`], an argon2 memory cost above [`MAX_ARGON2_MEMORY_KIB`]; no user
/// at all.
pub(super) fn parse(text: &str, forward: bool) -> Result<Users, ConfigError> {
    let mut by_name: HashMap<Box<str>, Arc<User>> = HashMap::new();
    let mut first_line: HashMap<Box<str>, usize> = HashMap::new();
    let mut sha1_lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, hash)) = line.split_once(':') else {
            return Err(line_error(n, "not `user:hash`"));
        };
        if name.is_empty() {
            return Err(line_error(n, "the user name is empty"));
        }
        if let Some(first) = first_line.get(name) {
            return Err(line_error(
                n,
                &format!("the user of line {first} is given again"),
            ));
        }
        let hash = parse_hash(hash).map_err(|reason| line_error(n, reason))?;
        if matches!(hash, Hash::Sha1(_)) {
            sha1_lines.push(n);
        }
        let header = if forward {
            Some(forwarded_value(&format!("htpasswd line {n}"), name)?)
        } else {
            None
        };
        first_line.insert(name.into(), n);
        by_name.insert(
            name.into(),
            Arc::new(User {
                name: Arc::from(name),
                hash,
                header,
            }),
        );
    }
    if by_name.is_empty() {
        return Err(ConfigError::new("htpasswd", "no user"));
    }
    Ok(Users {
        by_name,
        sha1_lines,
    })
}

/// One hash, checked. The reasons never quote the hash.
fn parse_hash(hash: &str) -> Result<Hash, &'static str> {
    if let Some(b64) = hash.strip_prefix("{SHA}") {
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| "malformed `{SHA}` hash (not Base64)")?;
        let digest: [u8; 20] = bytes
            .try_into()
            .map_err(|_| "malformed `{SHA}` hash (not a SHA-1 digest)")?;
        return Ok(Hash::Sha1(digest));
    }
    if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        let parts: bcrypt::HashParts = hash.parse().map_err(|_| "malformed bcrypt hash")?;
        if parts.get_cost() > MAX_BCRYPT_COST {
            return Err("bcrypt cost above 16");
        }
        return Ok(Hash::Bcrypt(hash.to_owned()));
    }
    if ["$argon2id$", "$argon2i$", "$argon2d$"]
        .iter()
        .any(|p| hash.starts_with(p))
    {
        let parsed = argon2::PasswordHash::new(hash).map_err(|_| "malformed argon2 hash")?;
        let params =
            argon2::Params::try_from(&parsed).map_err(|_| "malformed argon2 parameters")?;
        if params.m_cost() > MAX_ARGON2_MEMORY_KIB {
            return Err("argon2 memory cost above 256 MiB");
        }
        return Ok(Hash::Argon2(hash.to_owned()));
    }
    if hash.starts_with("$apr1$") || hash.starts_with("$1$") {
        return Err(
            "MD5 crypt hashes (`$apr1$`, `$1$`) are refused: hash with bcrypt \
                    (`htpasswd -B`)",
        );
    }
    if hash.starts_with("$2x$") {
        return Err("bcrypt `$2x$` hashes are refused (made by a buggy bcrypt)");
    }
    if hash.starts_with('$') {
        return Err("unsupported hash scheme: use bcrypt (`htpasswd -B`), argon2 or `{SHA}`");
    }
    Err(
        "not a supported password hash (plain-text and crypt passwords are refused): \
         use bcrypt (`htpasswd -B`), argon2 or `{SHA}`",
    )
}
