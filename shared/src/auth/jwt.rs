//! Auth0 access-token verification, in-function: RS256 only, keys from the tenant's JWKS (cached per
//! execution environment, refetched on an unknown `kid` at most once a minute), `iss`, `aud`, `exp`
//! and `sub` required, `nbf` honoured, 60 s leeway.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lambda_http::Request;
use lambda_http::http::header::AUTHORIZATION;
use serde::Deserialize;
use tokio::sync::RwLock;

use super::AuthError;
use crate::config::TokenSettings;
use crate::model::UserId;
use crate::outbound::Outbound;

/// How long fetched keys are trusted before a refetch.
const JWKS_TTL: Duration = Duration::from_secs(600);
/// The least time between two fetches forced by unknown `kid`s, so forged tokens cannot flood Auth0.
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// The least time between fetch attempts while no fresh keys are held.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// Tokens longer than this are refused unread (Auth0 access tokens are ~1 KiB).
const MAX_TOKEN_LEN: usize = 16 * 1024;
const LEEWAY_SECS: u64 = 60;

/// The verified identity of an end user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub user: UserId,
    pub email: Option<String>,
    /// `None` when the token does not say (Auth0 access tokens carry it only via a custom claim/action).
    pub email_verified: Option<bool>,
    pub scope: Option<String>,
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

struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

pub struct TokenVerifier {
    settings: TokenSettings,
    http: Outbound,
    validation: Validation,
    refetch_interval: Duration,
    cache: RwLock<KeyCache>,
}

impl TokenVerifier {
    pub fn new(settings: TokenSettings, http: Outbound) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        let cache = RwLock::new(KeyCache { keys: HashMap::new(), fetched_at: None, last_attempt: None });
        Self { settings, http, validation, refetch_interval: REFETCH_INTERVAL, cache }
    }

    /// Changes the least time between refetches forced by unknown `kid`s (default one minute).
    pub fn with_refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// Verifies the `Authorization: Bearer …` token of a request.
    pub async fn verify_request(&self, req: &Request) -> Result<Claims, AuthError> {
        let header = req.headers().get(AUTHORIZATION).ok_or(AuthError::MissingToken)?;
        let value = header.to_str().map_err(|_| AuthError::Malformed)?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(AuthError::MissingToken),
        };
        self.verify(token).await
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let claims = self.decode(token, &self.validation).await?;
        Ok(Claims {
            user: claims.sub.as_deref().and_then(|sub| UserId::parse(sub).ok()).ok_or(AuthError::MissingClaim)?,
            email: claims.email,
            email_verified: claims.email_verified,
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
        {
            let cache = self.cache.read().await;
            let fresh = cache.fetched_at.is_some_and(|at| at.elapsed() < JWKS_TTL);
            if let Some(key) = cache.keys.get(kid).filter(|_| fresh) {
                return Ok(key.clone());
            }
        }
        let mut cache = self.cache.write().await;
        // Another request may have refreshed the cache while this one waited for the lock.
        let fresh = cache.fetched_at.is_some_and(|at| at.elapsed() < JWKS_TTL);
        if let Some(key) = cache.keys.get(kid).filter(|_| fresh) {
            return Ok(key.clone());
        }
        // Fresh keys are refetched for a new `kid` at most once a minute; stale ones (or none) every
        // few seconds while the identity provider is failing.
        let pause = if fresh { self.refetch_interval } else { RETRY_INTERVAL.min(self.refetch_interval) };
        let may_fetch = cache.last_attempt.is_none_or(|at| at.elapsed() >= pause);
        if may_fetch {
            cache.last_attempt = Some(Instant::now());
            match self.fetch().await {
                Ok(keys) => {
                    cache.keys = keys;
                    cache.fetched_at = Some(Instant::now());
                }
                // Stale keys keep working through an outage; without any, nothing can be verified.
                Err(()) if cache.keys.is_empty() => return Err(AuthError::KeysUnavailable),
                Err(()) => {}
            }
        }
        cache.keys.get(kid).cloned().ok_or(AuthError::UnknownKey)
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, ()> {
        let http = self.http.client().map_err(|e| tracing::warn!(error = %e, "JWKS fetch failed"))?;
        let response = http.get(self.settings.jwks_url.clone()).send().await.map_err(|e| {
            tracing::warn!(error = %e, "JWKS fetch failed");
        })?;
        if !response.status().is_success() {
            tracing::warn!(status = response.status().as_u16(), "JWKS fetch refused");
            return Err(());
        }
        let set: JwkSet = response.json().await.map_err(|e| {
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

/// A `kid` worth looking up: short and plain (RFC 8725 §3.10), never a path or a query.
fn is_plain_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= 128 && kid.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}
