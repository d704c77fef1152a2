//! Who is calling ([`caller`]): end users by their Auth0 access token ([`jwt`]) or a personal access
//! token, internal services by the IAM principal API Gateway verified ([`service`]).

pub mod auth0;
pub mod caller;
pub mod gateway;
pub mod jwt;
pub mod personal_token;
pub mod service;

use crate::model::ProblemCode;

pub use caller::{Access, Need, Scopes, UserCaller};
pub use jwt::{Claims, Identity, TokenVerifier};
pub use service::{Grant, InternalPrincipals, ServiceCaller};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    #[error("A bearer access token is required.")]
    MissingToken,
    #[error("The access token is malformed.")]
    Malformed,
    #[error("The access token must be signed with RS256.")]
    WrongAlgorithm,
    #[error("The access token was signed by an unknown key.")]
    UnknownKey,
    #[error("The access token signature is invalid.")]
    BadSignature,
    #[error("The access token has expired.")]
    Expired,
    #[error("The access token is not valid yet.")]
    NotYetValid,
    #[error("The access token was issued by an untrusted issuer.")]
    WrongIssuer,
    #[error("The access token is not meant for this API.")]
    WrongAudience,
    #[error("The access token lacks a required claim.")]
    MissingClaim,
    #[error("The access token names critical header extensions keyward does not understand.")]
    CriticalExtension,
    #[error("This access token stands for an application, not a user; user routes need a user's token.")]
    NotAUserToken,
    #[error("The access token was issued to an application this API does not accept.")]
    WrongClient,
    /// The credential lacks these scopes (keyward's, or the Auth0 scope the deployment requires).
    #[error("This credential lacks the scope {} this route needs.", .0.join(" "))]
    MissingScopes(Vec<String>),
    #[error("A personal access token cannot do this; it needs a real sign-in (the console or `keyward login`).")]
    SignInRequired,
    /// A personal access token that is malformed, unknown, revoked or expired: one answer for all.
    #[error("The token is malformed, unknown, revoked or expired.")]
    InvalidToken,
    #[error("The identity provider's signing keys are unavailable; retry shortly.")]
    KeysUnavailable,
    #[error("This route is for internal services signing with IAM (SigV4).")]
    NoServiceIdentity,
    #[error("This IAM principal is not allowed to call keyward.")]
    PrincipalNotAllowed,
    #[error("This IAM principal is not allowed this resource.")]
    GrantMissing,
}

impl AuthError {
    /// The stable machine code of the rejection.
    pub fn code(&self) -> ProblemCode {
        match self {
            Self::MissingToken => ProblemCode::MissingToken,
            Self::Malformed => ProblemCode::MalformedToken,
            Self::WrongAlgorithm => ProblemCode::WrongAlgorithm,
            Self::UnknownKey => ProblemCode::UnknownSigningKey,
            Self::BadSignature => ProblemCode::BadSignature,
            Self::Expired => ProblemCode::TokenExpired,
            Self::NotYetValid => ProblemCode::TokenNotYetValid,
            Self::WrongIssuer => ProblemCode::WrongIssuer,
            Self::WrongAudience => ProblemCode::WrongAudience,
            Self::MissingClaim => ProblemCode::MissingClaim,
            Self::CriticalExtension => ProblemCode::UnsupportedCriticalHeader,
            Self::NotAUserToken => ProblemCode::NotAUserToken,
            Self::WrongClient => ProblemCode::WrongClient,
            Self::MissingScopes(_) | Self::SignInRequired => ProblemCode::InsufficientScope,
            Self::InvalidToken => ProblemCode::InvalidToken,
            Self::KeysUnavailable => ProblemCode::IdentityProviderUnavailable,
            Self::NoServiceIdentity => ProblemCode::ServiceIdentityRequired,
            Self::PrincipalNotAllowed => ProblemCode::PrincipalNotAllowed,
            Self::GrantMissing => ProblemCode::GrantMissing,
        }
    }
}
