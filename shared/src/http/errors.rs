//! Every layer's error as the problem a client gets: its status, its stable code and its sentence.
//! The one place where errors meet HTTP.

use super::ApiError;
use crate::auth::AuthError;
use crate::auth::auth0::Auth0Error;
use crate::crypto::CryptoError;
use crate::github::AlertError;
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

fn unavailable(code: &'static str, detail: impl Into<String>, retry_after_secs: u64) -> ApiError {
    ApiError::Unavailable { code, detail: detail.into(), retry_after_secs }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Throttled | StoreError::Unavailable(_) => {
                unavailable("store_unavailable", "Storage is temporarily unavailable; retry shortly.", 1)
            }
            StoreError::InvalidCursor => Self::bad_request(
                "invalid_cursor",
                "`cursor` is not one this listing gave out; start from the first page.",
            ),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<CryptoError> for ApiError {
    fn from(err: CryptoError) -> Self {
        match err {
            CryptoError::KeyServiceUnavailable(_) => {
                unavailable("key_service_unavailable", "The key service is temporarily unavailable; retry shortly.", 1)
            }
            // A record that fails authentication is data corruption or tampering, never the caller's input.
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<SecretError> for ApiError {
    fn from(err: SecretError) -> Self {
        tracing::warn!(error = %err, "a secret is unavailable");
        unavailable("secret_unavailable", "A secret keyward needs is unavailable; retry shortly.", 5)
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::KeysUnavailable => unavailable("identity_provider_unavailable", err.to_string(), 5),
            AuthError::NoServiceIdentity | AuthError::PrincipalNotAllowed | AuthError::GrantMissing => {
                Self::Forbidden { code: err.code(), detail: err.to_string() }
            }
            AuthError::MissingScopes(ref missing) => {
                Self::InsufficientScope { missing: missing.clone(), detail: err.to_string() }
            }
            AuthError::SignInRequired => Self::InsufficientScope { missing: Vec::new(), detail: err.to_string() },
            _ => Self::Unauthorized { code: err.code(), detail: err.to_string() },
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        let detail = err.to_string();
        match err {
            TokenError::InvalidName => Self::BadRequest { code: "invalid_token_name", detail },
            TokenError::UnknownScopes(_) => Self::BadRequest { code: "unknown_scope", detail },
            TokenError::NoScopes => Self::BadRequest { code: "no_scopes", detail },
            TokenError::InvalidExpiry { .. } => Self::BadRequest { code: "invalid_expiry", detail },
            TokenError::TooMany { .. } => Self::Conflict { code: "too_many_tokens", detail },
            TokenError::NotFound => Self::NotFound { code: "token_not_found", detail },
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
            AlertError::Unsigned => Self::BadRequest { code: "alert_unsigned", detail },
            AlertError::UnknownKey => Self::BadRequest { code: "alert_key_unknown", detail },
            AlertError::BadSignature => Self::BadRequest { code: "alert_signature_mismatch", detail },
            AlertError::Malformed => Self::BadRequest { code: "alert_malformed", detail },
            AlertError::KeysUnavailable => unavailable("github_keys_unavailable", detail, 5),
        }
    }
}

impl From<Auth0Error> for ApiError {
    fn from(err: Auth0Error) -> Self {
        match err {
            Auth0Error::Refused { error } => {
                Self::BadRequest { code: "auth0_refused", detail: format!("Auth0 refused the request ({error}).") }
            }
            Auth0Error::Unavailable(_) | Auth0Error::Secret(_) => {
                tracing::warn!(error = %err, "Auth0 call failed");
                unavailable("identity_provider_unavailable", "The identity provider is unavailable; retry shortly.", 5)
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
        Self::BadRequest { code: err.code(), detail: err.to_string() }
    }
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::EmailUnverified => Self::Forbidden { code: "email_unverified", detail: err.to_string() },
            AccountError::Store(e) => e.into(),
        }
    }
}

impl From<ThrottleError> for ApiError {
    fn from(err: ThrottleError) -> Self {
        match err {
            ThrottleError::Limited { retry_after_secs } => {
                Self::TooManyRequests { code: "rate_limited", detail: err.to_string(), retry_after_secs }
            }
            ThrottleError::Store(e) => e.into(),
        }
    }
}

impl From<RedirectError> for ApiError {
    fn from(err: RedirectError) -> Self {
        match err {
            RedirectError::InvalidState => Self::bad_request(
                "invalid_state",
                "This link was already used, has expired, is unknown or was started in another browser; start again.",
            ),
            RedirectError::InvalidReturnTo => Self::bad_request(
                "invalid_return_to",
                "`returnTo` must be an absolute URL on one of keyward's allowed origins.",
            ),
            RedirectError::Store(e) => e.into(),
            RedirectError::Crypto(e) => e.into(),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        let refused = |code, detail: &str| Self::Unauthorized { code, detail: detail.into() };
        match err {
            SessionError::Limited(e) => e.into(),
            SessionError::Redirect(e) => e.into(),
            SessionError::Cancelled { denied } => Self::bad_request(
                if denied { "access_denied" } else { "auth0_error" },
                "Sign-in was cancelled or refused at Auth0; nothing was stored. Sign in again to retry.",
            ),
            SessionError::MissingCode => {
                Self::bad_request("missing_code", "The callback carries no authorization code.")
            }
            SessionError::CodeRejected => Self::bad_request(
                "code_rejected",
                "Auth0 rejected the sign-in code (used, expired or not ours); sign in again.",
            ),
            SessionError::UnknownSession => {
                refused("invalid_session", "This session is unknown or has expired; sign in again.")
            }
            SessionError::Revoked => refused("session_revoked", "This session has ended; sign in again."),
            SessionError::Reused => refused(
                "session_reused",
                "This session handle was already used; the session has been ended for safety. Sign in again.",
            ),
            SessionError::ReusedConcurrently => refused(
                "session_reused",
                "This session handle was used twice at once; the session has been ended for safety. Sign in again.",
            ),
            SessionError::ReauthenticationRequired => {
                refused("reauthentication_required", "Auth0 no longer accepts this session; sign in again.")
            }
            SessionError::ForeignOrigin => Self::forbidden(
                "origin_not_allowed",
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
            KeyError::InvalidRegion(detail) => Self::bad_request("invalid_region", detail),
            KeyError::Shape(e) => e.into(),
            KeyError::Refused(failure) => Self::Provider(failure),
            KeyError::ValidationLimit { retry_after_secs, .. } => {
                Self::TooManyRequests { code: "validation_limit", detail: err.to_string(), retry_after_secs }
            }
            KeyError::NoKey(_) => Self::not_found("no_key", err.to_string()),
            KeyError::GrantMissing => Self::forbidden("grant_missing", err.to_string()),
            KeyError::NoKeys => Self::not_found("no_keys", err.to_string()),
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
            ConnectError::NoReturnOrigin => Self::bad_request(
                "return_to_required",
                "No app origin is configured to send the browser back to; pass `returnTo`.",
            ),
            ConnectError::NotConfigured(provider) => {
                let (codes, name) = named(provider);
                unavailable(
                    codes.not_configured,
                    format!("{name} connections are not configured on this keyward deployment."),
                    3600,
                )
            }
            ConnectError::NotConnected(provider) => {
                let (codes, name) = named(provider);
                Self::not_found(codes.not_connected, format!("This user has not connected a {name} account."))
            }
            ConnectError::ReconnectRequired(provider) => {
                let (codes, name) = named(provider);
                Self::Conflict {
                    code: codes.reconnect_required,
                    detail: format!(
                        "{name} no longer accepts this user's grant; the user must reconnect {name} in keyward."
                    ),
                }
            }
            ConnectError::RefreshBusy(provider) => {
                let (codes, name) = named(provider);
                unavailable(
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
                    ConnectionError::Refused { .. } => Self::BadGateway {
                        code: codes.refused,
                        detail: format!("{name} refused keyward's request; the stored connection is unchanged."),
                    },
                    ConnectionError::Unavailable(_) | ConnectionError::Secret(_) => unavailable(
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
            CreditError::InvalidLimit => Self::bad_request("invalid_limit", detail),
            CreditError::InvalidAmount => Self::bad_request("invalid_amount", detail),
            CreditError::InvalidIdempotencyKey => Self::bad_request("invalid_idempotency_key", detail),
            CreditError::InvalidReason => Self::bad_request("invalid_reason", detail),
            CreditError::IdempotencyMismatch => Self::Unprocessable { code: "idempotency_mismatch", detail },
            CreditError::Insufficient { .. } => Self::PaymentRequired { code: "insufficient_credits", detail },
            CreditError::Overflow => Self::bad_request("credit_overflow", detail),
            CreditError::Store(e) => e.into(),
        }
    }
}

/// Any answer but 2xx makes Stripe deliver again (for three days), so only a delivery that is wrong
/// is refused with 400, and one keyward cannot place yet with 409.
impl From<BillingError> for ApiError {
    fn from(err: BillingError) -> Self {
        match err {
            BillingError::NotConfigured => {
                unavailable("stripe_not_configured", "Stripe is not configured on this keyward deployment.", 3600)
            }
            BillingError::UnknownUser => Self::Conflict {
                code: "customer_not_linked",
                detail: "No keyward user is linked to this event's customer yet; Stripe's retry will apply it.".into(),
            },
            BillingError::PaymentNotRecorded => Self::Conflict {
                code: "payment_not_recorded",
                detail: "keyward has not recorded the payment this event is about yet; Stripe's retry will apply it."
                    .into(),
            },
            BillingError::WrongMode { .. } => Self::bad_request("livemode_mismatch", err.to_string()),
            BillingError::CreditsOutOfRange { .. } => Self::bad_request("invalid_credits", err.to_string()),
            BillingError::Overflow => Self::bad_request("credit_overflow", err.to_string()),
            BillingError::Signature(e) => Self::bad_request(e.code(), e.to_string()),
            BillingError::InvalidEvent(e) => Self::bad_request("invalid_event", e.to_string()),
            BillingError::Secret(e) => e.into(),
            BillingError::Store(e) => e.into(),
        }
    }
}
