//! The HTTP API's settings: where it listens and who may use it, each user
//! with one role and known only by a hash of their bearer token.

use konsilium_protocol::journal::Role;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Where the API listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT);
pub const DEFAULT_PORT: u16 = 7480;

/// The API's settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub users: Vec<User>,
    /// Where uploaded attachments wait (mode 0600) until they are sealed;
    /// `None` is the system's temporary directory. Use a directory on the
    /// node's own (encrypted) volume, e.g. `<data_dir>/uploads`.
    pub upload_dir: Option<PathBuf>,
    /// Serve HTTPS with these (PEM); plain HTTP without.
    pub tls: Option<TlsFiles>,
}

/// The API's certificate chain and private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            users: Vec::new(),
            upload_dir: None,
            tls: None,
        }
    }
}

/// One person (or system) allowed to use the API, with one role.
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// BLAKE3 of the bearer token; the token itself is never kept.
    pub token_hash: [u8; 32],
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl User {
    /// A user whose token is `token` (hashed here).
    pub fn with_token(name: impl Into<String>, role: Role, token: &str) -> Self {
        Self {
            name: name.into(),
            role,
            token_hash: token_hash(token),
        }
    }
}

impl User {
    /// A user whose token hash is given as 64 hexadecimal digits (as a
    /// config file keeps it; see [`token_hash_hex`]).
    pub fn with_token_hash_hex(
        name: impl Into<String>,
        role: Role,
        hash_hex: &str,
    ) -> Result<Self, ApiError> {
        let text = hash_hex.trim();
        let bad = || ApiError::TokenHash(text.chars().take(80).collect());
        let mut token_hash = [0u8; 32];
        hex::decode_to_slice(text, &mut token_hash).map_err(|_| bad())?;
        Ok(Self {
            name: name.into(),
            role,
            token_hash,
        })
    }
}

/// The hash of `token` as 64 hexadecimal digits, for a config file.
pub fn token_hash_hex(token: &str) -> String {
    hex::encode(token_hash(token))
}

/// The hash a user's token is stored as.
pub fn token_hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the API has no users: every request would be refused")]
    NoUsers,
    #[error("{0:?} is not a token hash: expected 64 hexadecimal digits (BLAKE3 of the token)")]
    TokenHash(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTPS: {path}: {reason}")]
    Tls { path: PathBuf, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hashes_round_trip_through_hex() {
        let u = User::with_token_hash_hex("u", Role::Operator, &token_hash_hex("s3cret")).unwrap();
        assert_eq!(
            u.token_hash,
            User::with_token("u", Role::Operator, "s3cret").token_hash
        );
        assert!(!format!("{u:?}").contains(&token_hash_hex("s3cret")));
        for bad in ["", "00", &"g".repeat(64), &"é".repeat(32)] {
            assert!(User::with_token_hash_hex("u", Role::Operator, bad).is_err());
        }
    }
}
