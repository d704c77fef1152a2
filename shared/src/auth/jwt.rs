//! Auth0 access-token verification, in-function: RS256 only, keys from the tenant's JWKS (cached per
//! execution environment, refetched on an unknown `kid` at most once a minute), `iss`, `aud`, `exp`
//! and `sub` required, `nbf` honoured, 60 s leeway, no `crit` extensions (RFC 7515 §4.1.11: keyward
//! understands none). Only a user's token acts as a user: Auth0's machine-to-machine tokens
//! (client credentials) are refused on user routes.

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lambda_http::Request;
use lambda_http::http::header::AUTHORIZATION;
use serde::Deserialize;
use url::Url;

use super::AuthError;
use crate::model::UserId;
use crate::outbound::Outbound;
use crate::published_keys::{KeyLookup, PublishedKeys, REFETCH_INTERVAL, fetch_key_set};

/// Tokens longer than this are refused unread (Auth0 access tokens are ~1 KiB).
const MAX_TOKEN_LEN: usize = 16 * 1024;
const LEEWAY_SECS: u64 = 60;

/// How incoming Auth0 access tokens are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: Url,
    /// A scope every user token must carry (Auth0's `scope` claim), when set.
    pub required_scope: Option<String>,
    /// The Auth0 applications whose tokens act for users here (`azp`, or `client_id`): any other
    /// application of the tenant that may ask for keyward's audience is refused.
    pub allowed_clients: Vec<String>,
    /// The claim an Auth0 Action puts `email_verified` in (`https://keyward.dev/email_verified`),
    /// when not the plain one.
    pub email_verified_claim: Option<String>,
}

/// The verified identity of an end user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub user: UserId,
    pub email: Option<String>,
    /// `None` when the token does not say: Auth0 access tokens carry it only when an Action adds
    /// it, as `email_verified` or the configured namespaced claim.
    pub email_verified: Option<bool>,
    pub scope: Option<String>,
}

/// The token of a request's `Authorization: Bearer …` header (RFC 6750 §2.1; the scheme in any case).
pub fn bearer(req: &Request) -> Result<&str, AuthError> {
    let header = req.headers().get(AUTHORIZATION).ok_or(AuthError::MissingToken)?;
    let value = header.to_str().map_err(|_| AuthError::Malformed)?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
        _ => Err(AuthError::MissingToken),
    }
}

/// Auth0's grant type claim: a string, or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum GrantTypes {
    One(String),
    Many(Vec<String>),
}

impl GrantTypes {
    fn contains(&self, grant: &str) -> bool {
        match self {
            Self::One(one) => one == grant,
            Self::Many(many) => many.iter().any(|g| g == grant),
        }
    }
}

#[derive(Deserialize)]
struct RawClaims {
    // Optional here so a token without `sub` is reported as a missing claim, not as malformed.
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    picture: Option<String>,
    /// `client-credentials` on Auth0's machine-to-machine tokens.
    #[serde(default)]
    gty: Option<GrantTypes>,
    /// The application the token was issued to (OpenID Connect's authorized party; Auth0 sets it
    /// on every access token), or RFC 9068's `client_id`.
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    /// Every other claim (a namespaced `email_verified` among them).
    #[serde(flatten)]
    other: HashMap<String, serde_json::Value>,
}

/// Who signed in, from a verified ID token (`aud` = keyward's client id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserId,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub picture: Option<String>,
}

pub struct TokenVerifier {
    settings: TokenSettings,
    http: Outbound,
    validation: Validation,
    keys: PublishedKeys<DecodingKey>,
}

impl TokenVerifier {
    pub fn new(settings: TokenSettings, http: Outbound) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Self { settings, http, validation, keys: PublishedKeys::new(REFETCH_INTERVAL) }
    }

    /// Changes the least time between refetches forced by unknown `kid`s (default one minute).
    pub fn with_refetch_interval(mut self, interval: Duration) -> Self {
        self.keys = PublishedKeys::new(interval);
        self
    }

    /// Verifies the `Authorization: Bearer …` token of a request.
    pub async fn verify_request(&self, req: &Request) -> Result<Claims, AuthError> {
        self.verify(bearer(req)?).await
    }

    /// Verifies a user's access token: a token of Auth0's client-credentials grant (`gty`, or a
    /// `sub` ending in `@clients`) stands for an application, not a user, and is refused.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let claims = self.decode(token, &self.validation).await?;
        let sub = claims.sub.as_deref().ok_or(AuthError::MissingClaim)?;
        if claims.gty.as_ref().is_some_and(|g| g.contains("client-credentials")) || sub.ends_with("@clients") {
            return Err(AuthError::NotAUserToken);
        }
        // Exact comparison, case and all; a token naming no application is Auth0's never.
        let mut named = [&claims.azp, &claims.client_id].into_iter().flatten();
        if named.any(|client| !self.settings.allowed_clients.contains(client)) {
            return Err(AuthError::WrongClient);
        }
        if let Some(required) = &self.settings.required_scope {
            let granted = claims.scope.as_deref().unwrap_or("");
            if !granted.split_whitespace().any(|scope| scope == required) {
                return Err(AuthError::MissingScopes(vec![required.clone()]));
            }
        }
        let namespaced = self.settings.email_verified_claim.as_ref().and_then(|name| claims.other.get(name));
        Ok(Claims {
            user: UserId::parse(sub).map_err(|_| AuthError::MissingClaim)?,
            email: claims.email,
            email_verified: claims.email_verified.or_else(|| namespaced.and_then(serde_json::Value::as_bool)),
            scope: claims.scope,
        })
    }

    /// Verifies an ID token Auth0 issued to `client_id` (same keys and issuer; `aud` is the client,
    /// which is also what keeps an ID token from passing as an access token).
    pub async fn verify_id_token(&self, token: &str, client_id: &str) -> Result<Identity, AuthError> {
        let mut validation = self.validation.clone();
        validation.set_audience(&[client_id]);
        let claims = self.decode(token, &validation).await?;
        Ok(Identity {
            user: claims.sub.as_deref().and_then(|sub| UserId::parse(sub).ok()).ok_or(AuthError::MissingClaim)?,
            email: claims.email,
            email_verified: claims.email_verified.unwrap_or(false),
            name: claims.name,
            picture: claims.picture,
        })
    }

    async fn decode(&self, token: &str, validation: &Validation) -> Result<RawClaims, AuthError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if names_critical_extensions(token)? {
            return Err(AuthError::CriticalExtension);
        }
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::WrongAlgorithm);
        }
        let kid = header.kid.filter(|k| is_plain_kid(k)).ok_or(AuthError::UnknownKey)?;
        let key = self.key(&kid).await?;
        let data = jsonwebtoken::decode::<RawClaims>(token, &key, validation).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::InvalidAlgorithm => AuthError::WrongAlgorithm,
            ErrorKind::MissingRequiredClaim(_) => AuthError::MissingClaim,
            _ => AuthError::Malformed,
        })?;
        Ok(data.claims)
    }

    /// The decoding key for `kid`, fetching the JWKS when it is stale or the key is new.
    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        self.keys.get(kid, || self.fetch()).await.map_err(|lookup| match lookup {
            KeyLookup::Unavailable => AuthError::KeysUnavailable,
            KeyLookup::Unknown => AuthError::UnknownKey,
        })
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, ()> {
        let body = fetch_key_set(&self.http, &self.settings.jwks_url, "JWKS").await?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| {
            tracing::warn!(error = %e, "JWKS is not a key set");
        })?;
        let keys: HashMap<String, DecodingKey> = set
            .keys
            .iter()
            .filter(|jwk| matches!(jwk.algorithm, AlgorithmParameters::RSA(_)))
            .filter(|jwk| jwk.common.public_key_use.as_ref().is_none_or(|u| *u == PublicKeyUse::Signature))
            .filter(|jwk| jwk.common.key_algorithm.is_none_or(|a| a == KeyAlgorithm::RS256))
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
            .collect();
        tracing::debug!(keys = keys.len(), "JWKS fetched");
        Ok(keys)
    }
}

/// Whether the token's JOSE header has `crit`: extensions its issuer says must be understood. keyward
/// understands none, so RFC 7515 §4.1.11 requires refusing the token (`jsonwebtoken` ignores it).
fn names_critical_extensions(token: &str) -> Result<bool, AuthError> {
    use base64::Engine;
    let encoded = token.split('.').next().ok_or(AuthError::Malformed)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).map_err(|_| AuthError::Malformed)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)?;
    Ok(header.contains_key("crit"))
}

/// A `kid` worth looking up: short and plain (RFC 8725 §3.10), never a path or a query.
fn is_plain_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= 128 && kid.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}
