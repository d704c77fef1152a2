//! What a user credential may do ([`Scope`]), and which credential acted ([`Credential`]).

/// A permission over a user's own data. An Auth0 access token and the session cookie carry every
/// scope; a personal access token carries the ones it was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `GET /me`.
    ProfileRead,
    /// The masked list of keys and their tests; never a plaintext key.
    KeysRead,
    /// Storing and deleting keys.
    KeysWrite,
    /// `GET /me/credits`.
    CreditsRead,
    /// The state of a connected account; never its tokens.
    ConnectionsRead,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}`")]
pub struct UnknownScope(pub String);

impl Scope {
    pub const ALL: [Scope; 5] =
        [Self::ProfileRead, Self::KeysRead, Self::KeysWrite, Self::CreditsRead, Self::ConnectionsRead];

    /// The name tokens, `openapi.yaml` and problems use: `keys:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProfileRead => "profile:read",
            Self::KeysRead => "keys:read",
            Self::KeysWrite => "keys:write",
            Self::CreditsRead => "credits:read",
            Self::ConnectionsRead => "connections:read",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw).ok_or_else(|| UnknownScope(raw.to_owned()))
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The credential a user presented, as the audit trail records it: a personal access token by
/// its id, never its value. (A service's is its SigV4 signature, which the audit trail names by
/// the principal.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An Auth0 access token: a real sign-in.
    AccessToken,
    /// The session cookie of a browser signed in through Auth0: a real sign-in too.
    SessionCookie,
    /// A personal access token, by id.
    PersonalToken(String),
}

impl Credential {
    /// `access_token`, `session_cookie`, `personal_token:{id}`.
    pub fn stored(&self) -> String {
        match self {
            Self::AccessToken => "access_token".into(),
            Self::SessionCookie => "session_cookie".into(),
            Self::PersonalToken(id) => format!("personal_token:{id}"),
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        match stored {
            "access_token" => Some(Self::AccessToken),
            "session_cookie" => Some(Self::SessionCookie),
            other => other.strip_prefix("personal_token:").map(|id| Self::PersonalToken(id.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
        assert_eq!("keys:admin".parse::<Scope>(), Err(UnknownScope("keys:admin".into())));
        let credentials =
            [Credential::AccessToken, Credential::SessionCookie, Credential::PersonalToken("tok_1".into())];
        for credential in credentials {
            assert_eq!(Credential::parse(&credential.stored()), Some(credential));
        }
        assert_eq!(Credential::parse("sigv4"), None);
    }
}
