//! Which Auth0 application a session belongs to.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// The web sign-in (confidential: sends the client secret).
    Web,
    /// The device flow (a native, public client).
    Device,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Device => "device",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Web, Self::Device].into_iter().find(|k| k.as_str() == raw)
    }
}
