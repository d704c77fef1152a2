//! User ids: Auth0 subjects, parsed once at the edge.

use std::fmt;

/// A keyward user: the Auth0 `sub` of their access token (e.g. `auth0|64f1…`, `google-oauth2|1234`).
///
/// Only the characters Auth0 uses in subjects are accepted, so a user id can be embedded in a storage
/// key or an encryption context without escaping and can never smuggle a key separator (`#`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a user id is 1 to 128 characters of letters, digits and `|_.@:+-`")]
pub struct InvalidUserId;

impl UserId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidUserId> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "|_.@:+-".contains(c);
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !raw.chars().all(allowed) {
            return Err(InvalidUserId);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Who a record belongs to before anyone has signed in (a sign-in in flight): no Auth0
    /// subject has this form, as Auth0's `keyward` connection does not exist.
    pub fn signing_in() -> Self {
        Self("keyward|signing-in".to_owned())
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_auth0_subjects() {
        for sub in ["auth0|64f1c2", "google-oauth2|1234567890", "email|a.b+c@example.com", "x"] {
            assert_eq!(UserId::parse(sub).unwrap().as_str(), sub);
        }
    }

    #[test]
    fn refuses_separators_paths_and_oversize() {
        let long = "a".repeat(UserId::MAX_LEN + 1);
        for bad in ["", "a#b", "../x", "a/b", "a b", "a\nb", "é", long.as_str()] {
            assert_eq!(UserId::parse(bad), Err(InvalidUserId), "{bad:?}");
        }
    }
}
