//! Every layer's error as the problem a client gets: its status, its stable code and its sentence.
//! The one place where errors meet HTTP.

use super::ApiError;
use crate::auth::AuthError;
use crate::auth::auth0::Auth0Error;
use crate::crypto::CryptoError;
use crate::github::AlertError;
use crate::model::ProblemCode;
use crate::oauth::connection::ConnectionError;
use crate::oauth::connection_spec;
use crate::providers::{Failure, KeyShapeError};
use crate::secret_store::SecretError;
use crate::store::StoreError;
use crate::use_cases::access_tokens::TokenError;
use crate::use_cases::accounts::AccountError;
use crate::use_cases::billing::BillingError;
use crate::use_cases::connections::ConnectError;
use crate::use_cases::credits::CreditError;
use crate::use_cases::devices::DeviceError;
use crate::use_cases::keys::KeyError;
use crate::use_cases::redirects::RedirectError;
use crate::use_cases::sessions::SessionError;
use crate::use_cases::throttle::ThrottleError;

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Throttled | StoreError::Unavailable(_) => Self::retry_later(
                ProblemCode::StoreUnavailable,
                "Storage is temporarily unavailable; retry shortly.",
                1,
            ),
            StoreError::InvalidCursor => Self::new(
                ProblemCode::InvalidCursor,
                "`cursor` is not one this listing gave out; start from the first page.",
            ),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<CryptoError> for ApiError {
    fn from(err: CryptoError) -> Self {
        match err {
            CryptoError::KeyServiceUnavailable(_) => Self::retry_later(
                ProblemCode::KeyServiceUnavailable,
                "The key service is temporarily unavailable; retry shortly.",
                1,
            ),
            // A record that fails authentication is data corruption or tampering, never the caller's input.
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<SecretError> for ApiError {
    fn from(err: SecretError) -> Self {
        tracing::warn!(error = %err, "a secret is unavailable");
        Self::retry_later(ProblemCode::SecretUnavailable, "A secret keyward needs is unavailable; retry shortly.", 5)
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::KeysUnavailable => {
                Self::retry_later(ProblemCode::IdentityProviderUnavailable, err.to_string(), 5)
            }
            AuthError::NoServiceIdentity | AuthError::PrincipalNotAllowed | AuthError::GrantMissing => {
                Self::new(err.code(), err.to_string())
            }
            AuthError::MissingScopes(ref missing) => {
                Self::InsufficientScope { missing: missing.clone(), detail: err.to_string() }
            }
            AuthError::SignInRequired => Self::InsufficientScope { missing: Vec::new(), detail: err.to_string() },
            _ => Self::new(err.code(), err.to_string()),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        let detail = err.to_string();
        match err {
            TokenError::InvalidName => Self::new(ProblemCode::InvalidTokenName, detail),
            TokenError::UnknownScopes(_) => Self::new(ProblemCode::UnknownScope, detail),
            TokenError::NoScopes => Self::new(ProblemCode::NoScopes, detail),
            TokenError::InvalidExpiry { .. } => Self::new(ProblemCode::InvalidExpiry, detail),
            TokenError::TooMany { .. } => Self::new(ProblemCode::TooManyTokens, detail),
            TokenError::NotFound => Self::new(ProblemCode::TokenNotFound, detail),
            TokenError::Invalid => AuthError::InvalidToken.into(),
            TokenError::Store(e) => e.into(),
            TokenError::Crypto(e) => e.into(),
        }
    }
}

impl From<AlertError> for ApiError {
    fn from(err: AlertError) -> Self {
        let detail = err.to_string();
        match err {
            AlertError::Unsigned => Self::new(ProblemCode::AlertUnsigned, detail),
            AlertError::UnknownKey => Self::new(ProblemCode::AlertKeyUnknown, detail),
            AlertError::BadSignature => Self::new(ProblemCode::AlertSignatureMismatch, detail),
            AlertError::Malformed => Self::new(ProblemCode::AlertMalformed, detail),
            AlertError::KeysUnavailable => Self::retry_later(ProblemCode::GithubKeysUnavailable, detail, 5),
        }
    }
}

impl From<Auth0Error> for ApiError {
    fn from(err: Auth0Error) -> Self {
        match err {
            Auth0Error::Refused { error } => {
                Self::new(ProblemCode::Auth0Refused, format!("Auth0 refused the request ({error})."))
            }
            Auth0Error::Unavailable(_) | Auth0Error::Secret(_) => {
                tracing::warn!(error = %err, "Auth0 call failed");
                Self::retry_later(
                    ProblemCode::IdentityProviderUnavailable,
                    "The identity provider is unavailable; retry shortly.",
                    5,
                )
            }
        }
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        Self::Provider(Box::new(failure))
    }
}

impl From<KeyShapeError> for ApiError {
    fn from(err: KeyShapeError) -> Self {
        Self::new(err.code(), err.to_string())
    }
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::EmailUnverified => Self::new(ProblemCode::EmailUnverified, err.to_string()),
            AccountError::Store(e) => e.into(),
        }
    }
}

impl From<ThrottleError> for ApiError {
    fn from(err: ThrottleError) -> Self {
        match err {
            ThrottleError::Limited { retry_after_secs } => {
                Self::retry_later(ProblemCode::RateLimited, err.to_string(), retry_after_secs)
            }
            ThrottleError::Store(e) => e.into(),
        }
    }
}

impl From<RedirectError> for ApiError {
    fn from(err: RedirectError) -> Self {
        match err {
            RedirectError::InvalidState => Self::new(
                ProblemCode::InvalidState,
                "This link was already used, has expired, is unknown or was started in another browser; start again.",
            ),
            RedirectError::InvalidReturnTo => Self::new(
                ProblemCode::InvalidReturnTo,
                "`returnTo` must be an absolute URL on one of keyward's allowed origins.",
            ),
            RedirectError::Store(e) => e.into(),
            RedirectError::Crypto(e) => e.into(),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        let refused = |code, detail: &str| Self::new(code, detail);
        match err {
            SessionError::Limited(e) => e.into(),
            SessionError::Redirect(e) => e.into(),
            SessionError::Cancelled { denied } => Self::new(
                if denied { ProblemCode::AccessDenied } else { ProblemCode::Auth0Error },
                "Sign-in was cancelled or refused at Auth0; nothing was stored. Sign in again to retry.",
            ),
            SessionError::MissingCode => {
                Self::new(ProblemCode::MissingCode, "The callback carries no authorization code.")
            }
            SessionError::CodeRejected => Self::new(
                ProblemCode::CodeRejected,
                "Auth0 rejected the sign-in code (used, expired or not ours); sign in again.",
            ),
            SessionError::UnknownSession => {
                refused(ProblemCode::InvalidSession, "This session is unknown or has expired; sign in again.")
            }
            SessionError::Revoked => refused(ProblemCode::SessionRevoked, "This session has ended; sign in again."),
            SessionError::Reused => refused(
                ProblemCode::SessionReused,
                "This session handle was already used; the session has been ended for safety. Sign in again.",
            ),
            SessionError::ReusedConcurrently => refused(
                ProblemCode::SessionReused,
                "This session handle was used twice at once; the session has been ended for safety. Sign in again.",
            ),
            SessionError::ReauthenticationRequired => {
                refused(ProblemCode::ReauthenticationRequired, "Auth0 no longer accepts this session; sign in again.")
            }
            SessionError::ForeignOrigin => Self::new(
                ProblemCode::OriginNotAllowed,
                "A session cookie is honoured only from a page of an allowed origin; nothing changed.",
            ),
            SessionError::IncompleteAnswer(_) => Self::Internal(err.to_string()),
            SessionError::Auth0(e) => e.into(),
            SessionError::Token(e) => e.into(),
            SessionError::Store(e) => e.into(),
            SessionError::Crypto(e) => e.into(),
        }
    }
}

impl From<DeviceError> for ApiError {
    fn from(err: DeviceError) -> Self {
        match err {
            DeviceError::Limited(e) => e.into(),
            DeviceError::Auth0(e) => e.into(),
            DeviceError::Session(e) => e.into(),
            DeviceError::Store(e) => e.into(),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::Account(e) => e.into(),
            KeyError::InvalidRegion(detail) => Self::new(ProblemCode::InvalidRegion, detail),
            KeyError::Shape(e) => e.into(),
            KeyError::Refused(failure) => Self::Provider(failure),
            KeyError::ValidationLimit { retry_after_secs, .. } => {
                Self::retry_later(ProblemCode::ValidationLimit, err.to_string(), retry_after_secs)
            }
            KeyError::NoKey(_) => Self::new(ProblemCode::NoKey, err.to_string()),
            KeyError::GrantMissing => Self::new(ProblemCode::GrantMissing, err.to_string()),
            KeyError::NoKeys => Self::new(ProblemCode::NoKeys, err.to_string()),
            KeyError::Store(e) => e.into(),
            KeyError::Crypto(e) => e.into(),
        }
    }
}

impl From<ConnectError> for ApiError {
    fn from(err: ConnectError) -> Self {
        let named = |provider| {
            let spec = connection_spec(provider);
            (spec.problem_codes(), spec.display_name())
        };
        match err {
            ConnectError::Account(e) => e.into(),
            ConnectError::Redirect(e) => e.into(),
            ConnectError::NoReturnOrigin => Self::new(
                ProblemCode::ReturnToRequired,
                "No app origin is configured to send the browser back to; pass `returnTo`.",
            ),
            ConnectError::NotConfigured(provider) => {
                let (codes, name) = named(provider);
                Self::retry_later(
                    codes.not_configured,
                    format!("{name} connections are not configured on this keyward deployment."),
                    3600,
                )
            }
            ConnectError::NotConnected(provider) => {
                let (codes, name) = named(provider);
                Self::new(codes.not_connected, format!("This user has not connected a {name} account."))
            }
            ConnectError::ReconnectRequired(provider) => {
                let (codes, name) = named(provider);
                Self::new(
                    codes.reconnect_required,
                    format!("{name} no longer accepts this user's grant; the user must reconnect {name} in keyward."),
                )
            }
            ConnectError::RefreshBusy(provider) => {
                let (codes, name) = named(provider);
                Self::retry_later(
                    codes.unavailable,
                    format!(
                        "Refreshing the {name} access token failed just now; the stored connection is unchanged. Retry shortly."
                    ),
                    5,
                )
            }
            ConnectError::Provider(provider, error) => {
                let (codes, name) = named(provider);
                tracing::warn!(provider = %provider, error = %error, "a connection provider call failed");
                match error {
                    ConnectionError::Refused { .. } => Self::new(
                        codes.refused,
                        format!("{name} refused keyward's request; the stored connection is unchanged."),
                    ),
                    ConnectionError::Unavailable(_) | ConnectionError::Secret(_) => Self::retry_later(
                        codes.unavailable,
                        format!("{name} is unavailable; the stored connection is unchanged. Retry shortly."),
                        5,
                    ),
                }
            }
            ConnectError::Session(e) => e.into(),
            ConnectError::Store(e) => e.into(),
            ConnectError::Crypto(e) => e.into(),
        }
    }
}

impl From<CreditError> for ApiError {
    fn from(err: CreditError) -> Self {
        let detail = err.to_string();
        match err {
            CreditError::InvalidLimit => Self::new(ProblemCode::InvalidLimit, detail),
            CreditError::InvalidAmount => Self::new(ProblemCode::InvalidAmount, detail),
            CreditError::InvalidIdempotencyKey => Self::new(ProblemCode::InvalidIdempotencyKey, detail),
            CreditError::InvalidReason => Self::new(ProblemCode::InvalidReason, detail),
            CreditError::IdempotencyMismatch => Self::new(ProblemCode::IdempotencyMismatch, detail),
            CreditError::Insufficient { .. } => Self::new(ProblemCode::InsufficientCredits, detail),
            CreditError::Overflow => Self::new(ProblemCode::CreditOverflow, detail),
            CreditError::Store(e) => e.into(),
        }
    }
}

/// Any answer but 2xx makes Stripe deliver again (for three days), so only a delivery that is wrong
/// is refused with 400, and one keyward cannot place yet with 409.
impl From<BillingError> for ApiError {
    fn from(err: BillingError) -> Self {
        match err {
            BillingError::NotConfigured => Self::retry_later(
                ProblemCode::StripeNotConfigured,
                "Stripe is not configured on this keyward deployment.",
                3600,
            ),
            BillingError::UnknownUser => Self::new(
                ProblemCode::CustomerNotLinked,
                "No keyward user is linked to this event's customer yet; Stripe's retry will apply it.",
            ),
            BillingError::PaymentNotRecorded => Self::new(
                ProblemCode::PaymentNotRecorded,
                "keyward has not recorded the payment this event is about yet; Stripe's retry will apply it.",
            ),
            BillingError::WrongMode { .. } => Self::new(ProblemCode::LivemodeMismatch, err.to_string()),
            BillingError::CreditsOutOfRange { .. } => Self::new(ProblemCode::InvalidCredits, err.to_string()),
            BillingError::Overflow => Self::new(ProblemCode::CreditOverflow, err.to_string()),
            BillingError::Signature(e) => Self::new(e.code(), e.to_string()),
            BillingError::InvalidEvent(e) => Self::new(ProblemCode::InvalidEvent, e.to_string()),
            BillingError::Secret(e) => e.into(),
            BillingError::Store(e) => e.into(),
        }
    }
}
