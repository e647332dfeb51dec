//! Who is asking: the bearer token checked against the configured users in
//! constant time, and the role checked against what the request needs.

use super::AppState;
use super::problems::Problem;
use crate::config::api::{User, token_hash};
use axum::http::{HeaderMap, StatusCode, header};
use konsilium_protocol::journal::Role;
use subtle::ConstantTimeEq;

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
            if let Err(e) = self
                .node
                .record(
                    Some("unknown token".into()),
                    None,
                    konsilium_protocol::journal::Action::FailedLogin {
                        user: "unknown token".into(),
                    },
                )
                .await
            {
                tracing::error!("failed login not journaled: {e}");
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
