//! GitHub's secret-scanning partner alerts: a JSON array of `{token, type, url, source}` signed with
//! ECDSA P-256 / SHA-256 over the raw body (base64 DER in `Github-Public-Key-Signature`), by the
//! key `Github-Public-Key-Identifier` names among those GitHub publishes
//! (`https://api.github.com/meta/public_keys/secret_scanning`, `KEYWARD_GITHUB_KEYS_URL`).

use std::collections::HashMap;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use url::Url;

use crate::outbound::Outbound;
use crate::published_keys::{KeyLookup, PublishedKeys, REFETCH_INTERVAL, fetch_key_set};
use crate::secret::PersonalToken;

pub const OFFICIAL_KEYS_URL: &str = "https://api.github.com/meta/public_keys/secret_scanning";
/// An alert's body is a few matches; more than this is not GitHub.
pub const MAX_ALERT_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error("The alert is not signed: `Github-Public-Key-Identifier` and `Github-Public-Key-Signature` are required.")]
    Unsigned,
    #[error("The alert names a signing key GitHub does not publish.")]
    UnknownKey,
    #[error("The alert's signature does not match its body.")]
    BadSignature,
    #[error("GitHub's signing keys are unavailable; retry shortly.")]
    KeysUnavailable,
    #[error("The alert is not a JSON array of {{token, type, url, source}}.")]
    Malformed,
}

/// One reported match.
#[derive(Debug, Deserialize)]
pub struct Alert {
    pub token: PersonalToken,
    /// The token type GitHub matched it as; echoed in the feedback, never trusted.
    #[serde(rename = "type")]
    pub token_type: String,
    pub url: String,
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Deserialize)]
struct KeySet {
    public_keys: Vec<PublishedKey>,
}

#[derive(Deserialize)]
struct PublishedKey {
    key_identifier: String,
    /// A PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    key: String,
}

/// GitHub's published alert-signing keys, cached per execution environment.
pub struct AlertKeys {
    http: Outbound,
    url: Url,
    keys: PublishedKeys<Vec<u8>>,
}

impl AlertKeys {
    pub fn new(http: Outbound, url: Url) -> Self {
        Self { http, url, keys: PublishedKeys::new(REFETCH_INTERVAL) }
    }

    /// The alerts in `body` once its signature checks out; nothing is parsed before that.
    pub async fn verified(
        &self,
        body: &[u8],
        key_id: Option<&str>,
        signature: Option<&str>,
    ) -> Result<Vec<Alert>, AlertError> {
        let (Some(key_id), Some(signature)) = (key_id, signature) else { return Err(AlertError::Unsigned) };
        let signature = STANDARD.decode(signature.trim()).map_err(|_| AlertError::BadSignature)?;
        let key = self.keys.get(key_id, || self.fetch()).await.map_err(|lookup| match lookup {
            KeyLookup::Unavailable => AlertError::KeysUnavailable,
            KeyLookup::Unknown => AlertError::UnknownKey,
        })?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key)
            .verify(body, &signature)
            .map_err(|_| AlertError::BadSignature)?;
        serde_json::from_slice(body).map_err(|_| AlertError::Malformed)
    }

    async fn fetch(&self) -> Result<HashMap<String, Vec<u8>>, ()> {
        let body = fetch_key_set(&self.http, &self.url, "GitHub secret-scanning key set").await?;
        let set: KeySet = serde_json::from_slice(&body).map_err(|e| {
            tracing::warn!(error = %e, "GitHub's secret-scanning keys are not a key set");
        })?;
        Ok(set.public_keys.into_iter().filter_map(|k| Some((k.key_identifier, spki_der(&k.key)?))).collect())
    }
}

/// The DER of a PEM `PUBLIC KEY`.
fn spki_der(text: &str) -> Option<Vec<u8>> {
    pem::parse(text).ok().filter(|block| block.tag() == "PUBLIC KEY").map(pem::Pem::into_contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature is checked over the raw bytes, with the key the identifier names; nothing of
    /// an unverified body is parsed.
    #[tokio::test]
    async fn a_signature_is_checked_over_the_raw_body_and_a_changed_byte_fails_it() {
        let (signer, set) = keyward_sandbox::github::signing_key_and_set("k1");
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::path("/keys"))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_raw(set, "application/json"))
            .expect(1)
            .mount(&server)
            .await;
        let keys = AlertKeys::new(Outbound::new(), format!("{}/keys", server.uri()).parse().unwrap());
        let body =
            br#"[{"source":"commit","token":"kw_pat_x","type":"keyward_pat","url":"https://github.com/o/r/blob/1/a"}]"#;
        let signature = signer.sign(body);
        let alerts = keys.verified(body, Some("k1"), Some(&signature)).await.unwrap();
        assert_eq!((alerts[0].token.expose(), alerts[0].token_type.as_str()), ("kw_pat_x", "keyward_pat"));

        let mut changed = body.to_vec();
        changed[30] ^= 1;
        assert_eq!(keys.verified(&changed, Some("k1"), Some(&signature)).await.unwrap_err(), AlertError::BadSignature);
        assert_eq!(keys.verified(body, Some("k1"), Some("not base64!")).await.unwrap_err(), AlertError::BadSignature);
        assert_eq!(keys.verified(body, None, Some(&signature)).await.unwrap_err(), AlertError::Unsigned);
        // An unknown id refetches at most once a minute: the mock's `expect(1)` holds it to that.
        assert_eq!(keys.verified(body, Some("k2"), Some(&signature)).await.unwrap_err(), AlertError::UnknownKey);
        let unsigned_json = b"not json";
        let signature = signer.sign(unsigned_json);
        assert_eq!(
            keys.verified(unsigned_json, Some("k1"), Some(&signature)).await.unwrap_err(),
            AlertError::Malformed
        );
    }
}
