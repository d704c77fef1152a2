//! Which OAuth provider a user's connected account is at. The slug names it in routes, storage
//! keys, grants and encryption contexts; everything else about a provider is its module in `oauth`.

use std::fmt;
use std::str::FromStr;

/// One of the services whose accounts users connect (calendars, mail), each by OAuth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OAuthProvider {
    Google,
    Microsoft,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown OAuth provider")]
pub struct UnknownOAuthProvider;

impl OAuthProvider {
    pub const ALL: &'static [OAuthProvider] = &[OAuthProvider::Google, OAuthProvider::Microsoft];

    pub fn slug(self) -> &'static str {
        match self {
            Self::Google => "google",
            Self::Microsoft => "microsoft",
        }
    }
}

impl FromStr for OAuthProvider {
    type Err = UnknownOAuthProvider;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL.iter().copied().find(|p| p.slug() == raw).ok_or(UnknownOAuthProvider)
    }
}

impl fmt::Display for OAuthProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}
