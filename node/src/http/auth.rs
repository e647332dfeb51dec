//! Who is asking: the bearer token checked against the configured users in
//! constant time, and the role checked against what the request needs.

use super::AppState;
use super::problems::Problem;
use crate::config::api::{User, token_hash};
use axum::http::{HeaderMap, StatusCode, header};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use konsilium_protocol::journal::Role;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Failed logins go into the journal one by one up to a burst of ten, then
/// one every three seconds; those refused in between are counted, and the
/// next entry says how many. An unknown token costs its sender nothing,
/// and each entry a journal write and its flushes on the node's event
/// loop: unlimited, anyone who reached the port could fill the disk and
/// slow the node down.
pub(super) struct FailedLogins {
    journaled: DefaultDirectRateLimiter,
    unjournaled: AtomicU64,
}

impl Default for FailedLogins {
    fn default() -> Self {
        let quota =
            Quota::with_period(Duration::from_secs(3)).expect("a period of 3 s is not zero");
        let burst = NonZeroU32::new(10).expect("ten is not zero");
        Self {
            journaled: RateLimiter::direct(quota.allow_burst(burst)),
            unjournaled: AtomicU64::new(0),
        }
    }
}

impl FailedLogins {
    /// Who the journal entry for one more failure names, or none when
    /// this one is only counted.
    fn entry(&self) -> Option<String> {
        if self.journaled.check().is_err() {
            self.unjournaled.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(match self.unjournaled.swap(0, Ordering::Relaxed) {
            0 => "unknown token".into(),
            n => format!("unknown token ({n} more since the last entry, not journaled one by one)"),
        })
    }
}

/// The API's users, replaced as a whole when the configuration is
/// reloaded; a request sees the list as it was when it arrived.
pub struct ApiUsers(std::sync::RwLock<std::sync::Arc<Vec<User>>>);

impl ApiUsers {
    pub fn new(users: Vec<User>) -> Self {
        Self(std::sync::RwLock::new(std::sync::Arc::new(users)))
    }

    fn current(&self) -> std::sync::Arc<Vec<User>> {
        // A writer never panics while holding the lock, so poison carries
        // a complete list.
        match self.0.read() {
            Ok(users) => users.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, users: Vec<User>) {
        let users = std::sync::Arc::new(users);
        match self.0.write() {
            Ok(mut current) => *current = users,
            Err(poisoned) => *poisoned.into_inner() = users,
        }
    }
}

impl AppState {
    /// The user the bearer token names, if their role is one of `allowed`
    /// (all roles when empty).
    pub(super) async fn authenticate(
        &self,
        headers: &HeaderMap,
        allowed: &[Role],
    ) -> Result<User, Problem> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| Problem::unauthorized("the Authorization header is missing"))?;
        let value = value
            .to_str()
            .map_err(|_| Problem::unauthorized("the Authorization header is not text"))?;
        let token = match value.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                token.trim()
            }
            _ => {
                return Err(Problem::unauthorized(
                    "the Authorization header must be \"Bearer <token>\"",
                ));
            }
        };
        let presented = token_hash(token);
        // Look at every user, so the time taken does not tell which matched.
        let users = self.users.current();
        let mut found = None;
        for user in users.iter() {
            if bool::from(user.token_hash.ct_eq(&presented)) && found.is_none() {
                found = Some(user);
            }
        }
        let Some(user) = found else {
            // A security event: journaled, without the token itself.
            // Refused either way; a journal that cannot take the event is
            // the node's problem to report, not the caller's.
            if let Some(who) = self.failed_logins.entry() {
                let action = konsilium_protocol::journal::Action::FailedLogin { user: who };
                let recorded = self.node.record(Some("unknown token".into()), None, action);
                if let Err(e) = recorded.await {
                    tracing::error!("failed login not journaled: {e}");
                }
            }
            return Err(Problem::unauthorized("the token is not valid"));
        };
        if !allowed.is_empty() && !allowed.contains(&user.role) {
            let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "role-not-allowed",
                "This role may not do this",
                format!(
                    "{} is a {}; this needs a {}",
                    user.name,
                    user.role,
                    names.join(" or ")
                ),
            ));
        }
        Ok(user.clone())
    }
}
