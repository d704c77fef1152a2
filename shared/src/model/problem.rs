//! Every problem `code` keyward answers with, its status and what it means: the contract clients
//! switch on. `openapi.yaml` renders this list (`ProblemCode` schema) and a test holds the two
//! together, so no code appears, disappears or is renamed without the contract saying so.
//!
//! A wire code may stand for two statuses (`rate_limited` is keyward's own limit and a provider's);
//! each variant has exactly one.

macro_rules! problem_codes {
    ($($variant:ident = $code:literal, $status:literal, $doc:literal;)*) => {
        /// One problem code at one status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemCode {
            $($variant,)*
        }

        impl ProblemCode {
            pub const ALL: &[ProblemCode] = &[$(Self::$variant,)*];

            /// The `code` member of the problem body.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// The HTTP status it is sent with.
            pub fn status(self) -> u16 {
                match self {
                    $(Self::$variant => $status,)*
                }
            }

            /// What it means, for `openapi.yaml`.
            pub fn doc(self) -> &'static str {
                match self {
                    $(Self::$variant => $doc,)*
                }
            }
        }
    };
}

problem_codes! {
    // The request itself.
    InvalidBody = "invalid_body", 400,
        "The body is not valid JSON or does not match the route; `detail` names the field.";
    MissingBody = "missing_body", 400, "The route needs a JSON body.";
    InvalidUtf8 = "invalid_utf8", 400, "The body is not UTF-8.";
    UnsupportedContentType = "unsupported_content_type", 400, "The body must be sent as `application/json`.";
    PayloadTooLarge = "payload_too_large", 413, "The body is larger than the route accepts.";
    InvalidUserId = "invalid_user_id", 400, "The path's user id is not a keyward user id.";
    InvalidCursor = "invalid_cursor", 400, "The `cursor` is not one this listing gave out.";
    RouteNotFound = "route_not_found", 404, "No route has this method and path.";
    ForeignInvocation = "foreign_invocation", 403, "The event did not come through this stack's API Gateway API.";

    // Bearer credentials (401 carries `WWW-Authenticate: Bearer error=\"invalid_token\"`).
    MissingToken = "missing_token", 401, "No `Authorization: Bearer` credential was sent.";
    MalformedToken = "malformed_token", 401, "The access token is not a well-formed JWT.";
    WrongAlgorithm = "wrong_algorithm", 401, "The access token is not signed with RS256.";
    UnknownSigningKey = "unknown_signing_key", 401, "The access token's `kid` is not in Auth0's key set.";
    BadSignature = "bad_signature", 401, "The access token's signature does not verify.";
    TokenExpired = "token_expired", 401, "The access token has expired.";
    TokenNotYetValid = "token_not_yet_valid", 401, "The access token is not valid yet.";
    WrongIssuer = "wrong_issuer", 401, "The access token was issued by an untrusted issuer.";
    WrongAudience = "wrong_audience", 401, "The access token is not meant for this API.";
    MissingClaim = "missing_claim", 401, "The access token lacks a claim keyward needs.";
    UnsupportedCriticalHeader = "unsupported_critical_header", 401,
        "The access token names critical header extensions keyward does not understand.";
    NotAUserToken = "not_a_user_token", 401, "The access token stands for an application, not a user.";
    WrongClient = "wrong_client", 401, "The access token was issued to an application this API does not accept.";
    InvalidToken = "invalid_token", 401,
        "The personal access token is malformed, unknown, revoked or expired (one answer for all four).";
    InsufficientScope = "insufficient_scope", 403,
        "The credential lacks the scope in `missingScopes`, or the route needs a real sign-in.";
    EmailUnverified = "email_unverified", 403, "The user's email address is not verified yet.";
    IdentityProviderUnavailable = "identity_provider_unavailable", 503,
        "Auth0 (its keys or its token endpoint) is unavailable; retry after `Retry-After`.";

    // Internal services (SigV4).
    ServiceIdentityRequired = "service_identity_required", 403,
        "The route is for internal services signing with IAM (SigV4).";
    PrincipalNotAllowed = "principal_not_allowed", 403, "The IAM principal is not one keyward serves.";
    GrantMissing = "grant_missing", 403, "The IAM principal is not granted this resource.";

    // Web sign-in and sessions.
    InvalidState = "invalid_state", 400,
        "The sign-in or connect link was used, has expired, is unknown or was started in another browser.";
    InvalidReturnTo = "invalid_return_to", 400, "`returnTo` is not an absolute URL on an allowed origin.";
    ReturnToRequired = "return_to_required", 400, "No app origin is configured to return to; pass `returnTo`.";
    AccessDenied = "access_denied", 400, "The user cancelled or refused sign-in at Auth0; nothing was stored.";
    Auth0Error = "auth0_error", 400, "Auth0 ended sign-in with an error; nothing was stored.";
    Auth0Refused = "auth0_refused", 400, "Auth0 refused keyward's request; `detail` quotes its error code.";
    MissingCode = "missing_code", 400, "The callback carries no authorization code.";
    CodeRejected = "code_rejected", 400, "Auth0 rejected the authorization code (used, expired or not keyward's).";
    InvalidSession = "invalid_session", 401, "The session is unknown or has expired.";
    SessionRevoked = "session_revoked", 401, "The session has ended.";
    SessionReused = "session_reused", 401,
        "A spent session handle was presented again; the session was ended for safety.";
    ReauthenticationRequired = "reauthentication_required", 401, "Auth0 no longer accepts the session; sign in again.";
    OriginNotAllowed = "origin_not_allowed", 403, "A session cookie was sent from a page outside the allowed origins.";
    RateLimited = "rate_limited", 429, "keyward's own rate limit for this caller; retry after `Retry-After`.";

    // Personal access tokens and GitHub's leak alerts.
    InvalidTokenName = "invalid_token_name", 400,
        "A token name must be 1 to 100 characters, without control characters.";
    UnknownScope = "unknown_scope", 400, "`scopes` names scopes keyward does not have; `detail` lists them.";
    NoScopes = "no_scopes", 400, "A token needs at least one scope.";
    InvalidExpiry = "invalid_expiry", 400, "`expiresInDays` is missing or outside 1 to the deployment's maximum.";
    TooManyTokens = "too_many_tokens", 409, "The user has as many live tokens as a user may; revoke one first.";
    TokenNotFound = "token_not_found", 404, "The user has no live token with this id.";
    AlertUnsigned = "alert_unsigned", 400, "The leak alert lacks GitHub's signature headers.";
    AlertKeyUnknown = "alert_key_unknown", 400, "The leak alert is signed with a key GitHub does not publish.";
    AlertSignatureMismatch = "alert_signature_mismatch", 400, "The leak alert's signature does not verify.";
    AlertMalformed = "alert_malformed", 400, "The leak alert is not GitHub's JSON array of reports.";
    GithubKeysUnavailable = "github_keys_unavailable", 503, "GitHub's public keys could not be read; retry later.";

    // LLM provider keys.
    UnknownProvider = "unknown_provider", 404, "The path names a provider keyward does not store keys for.";
    UnknownProviderListed = "unknown_provider", 400, "`providers` lists a provider keyward does not store keys for.";
    InvalidKeyFormat = "invalid_key_format", 400,
        "The key has the wrong length or characters (often a paste accident).";
    WrongKeyKind = "wrong_key_kind", 400, "The key is another kind than this provider's API key; `detail` says which.";
    InvalidRegion = "invalid_region", 400, "`region` is not one of the provider's platforms.";
    ValidationLimit = "validation_limit", 429, "The user tested keys too often; retry after `Retry-After`.";
    NoKey = "no_key", 404, "The user has no key stored for this provider.";
    NoKeys = "no_keys", 404, "The user has none of the keys asked for.";
    InvalidKey = "invalid_key", 422, "The provider does not accept the key.";
    KeyBlocked = "key_blocked", 422, "The provider blocked or disabled the key.";
    NoPermission = "no_permission", 422, "The key lacks a permission the call needs.";
    NoCredits = "no_credits", 422, "The provider account behind the key has no credit or billing.";
    ProviderRateLimited = "rate_limited", 422,
        "The provider's rate limit for the key; `detail` says which limit and by how much.";
    QuotaExhausted = "quota_exhausted", 422, "The key's usage or spend cap is spent until it resets.";
    ProviderOverloaded = "provider_overloaded", 422, "The provider is overloaded; retry later.";
    ContextTooLong = "context_too_long", 422, "The request is longer than the model's context.";
    RegionUnsupported = "region_unsupported", 422, "The provider does not serve the key's region.";
    ProviderError = "provider_error", 422,
        "The provider refused in a way keyward does not recognise; `providerCode` says what it said.";
    ProviderUnreachable = "provider_unreachable", 502, "The provider could not be reached.";
    ProviderTimeout = "provider_timeout", 504, "The provider did not answer in time.";

    // Connected accounts.
    UnknownOauthProvider = "unknown_oauth_provider", 404,
        "The path names an account provider keyward does not connect.";
    GoogleNotConfigured = "google_not_configured", 503, "Google connections are not configured on this deployment.";
    GoogleNotConnected = "google_not_connected", 404, "The user has not connected a Google account.";
    GoogleReconnectRequired = "google_reconnect_required", 409,
        "Google no longer accepts the user's grant; the user must reconnect.";
    GoogleUnavailable = "google_unavailable", 503, "Google is unavailable; the stored connection is unchanged.";
    GoogleRefused = "google_refused", 502, "Google refused keyward's request; the stored connection is unchanged.";
    MicrosoftNotConfigured = "microsoft_not_configured", 503,
        "Microsoft connections are not configured on this deployment.";
    MicrosoftNotConnected = "microsoft_not_connected", 404, "The user has not connected a Microsoft account.";
    MicrosoftReconnectRequired = "microsoft_reconnect_required", 409,
        "Microsoft no longer accepts the user's grant; the user must reconnect.";
    MicrosoftUnavailable = "microsoft_unavailable", 503,
        "Microsoft is unavailable; the stored connection is unchanged.";
    MicrosoftRefused = "microsoft_refused", 502,
        "Microsoft refused keyward's request; the stored connection is unchanged.";

    // Credits and Stripe.
    InvalidLimit = "invalid_limit", 400, "`limit` is not a whole number from 1 to 100.";
    InvalidAmount = "invalid_amount", 400, "`amount` is outside 1 to the most one debit may take.";
    InvalidIdempotencyKey = "invalid_idempotency_key", 400,
        "`idempotencyKey` is not 1 to 128 letters, digits, `-`, `_`, `.` or `:`.";
    InvalidReason = "invalid_reason", 400, "`reason` is not 1 to 200 characters.";
    IdempotencyMismatch = "idempotency_mismatch", 422,
        "The `idempotencyKey` was first used with another amount or reason; nothing was debited.";
    InsufficientCredits = "insufficient_credits", 402, "Not enough credits; nothing changed.";
    CreditOverflow = "credit_overflow", 400, "The amounts do not fit keyward's credit arithmetic; nothing changed.";
    StripeNotConfigured = "stripe_not_configured", 503, "Stripe is not configured on this deployment.";
    CustomerNotLinked = "customer_not_linked", 409,
        "No user is linked to the event's customer yet; Stripe's retry will apply it.";
    PaymentNotRecorded = "payment_not_recorded", 409,
        "The payment the event is about is not recorded yet; Stripe's retry will apply it.";
    LivemodeMismatch = "livemode_mismatch", 400, "The event's `livemode` is not this deployment's.";
    InvalidCredits = "invalid_credits", 400, "The event's `metadata.credits` is not a whole number in range.";
    SignatureMissing = "signature_missing", 400, "The `Stripe-Signature` header is missing.";
    SignatureMalformed = "signature_malformed", 400, "The `Stripe-Signature` header is malformed.";
    SignatureMismatch = "signature_mismatch", 400, "No `v1` signature in `Stripe-Signature` matches the payload.";
    SignatureExpired = "signature_expired", 400, "The `Stripe-Signature` timestamp is more than 300 seconds from now.";
    InvalidEvent = "invalid_event", 400, "The event is not one of Stripe's event shapes keyward reads.";

    // keyward's dependencies and itself.
    StoreUnavailable = "store_unavailable", 503, "Storage is unavailable or throttling; retry after `Retry-After`.";
    KeyServiceUnavailable = "key_service_unavailable", 503,
        "The key service (KMS) is unavailable; retry after `Retry-After`.";
    SecretUnavailable = "secret_unavailable", 503, "A secret keyward needs is unavailable; retry after `Retry-After`.";
    InternalError = "internal_error", 500, "An unexpected error; it was logged, and the body says nothing more.";
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::ProblemCode;

    #[test]
    fn a_code_names_one_meaning_per_status_and_is_snake_case() {
        let mut seen = HashSet::new();
        for code in ProblemCode::ALL {
            let name = code.as_str();
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{name}");
            assert!((400..600).contains(&code.status()), "{name}");
            assert!(seen.insert((name, code.status())), "{name} twice at {}", code.status());
        }
    }
}
