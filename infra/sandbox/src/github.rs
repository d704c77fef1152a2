//! GitHub's secret-scanning partner alerts, as GitHub sends them: the published key set
//! (`GET /github/meta/public_keys/secret_scanning`) and a route that signs an alert for a token and
//! delivers it to keyward's `/tokens/leaks` (`POST /github/secret-scanning/report`), answering with
//! keyward's answer. The signing key is made when the sandbox starts; its identifier is the SHA-256
//! of its public key, as GitHub's look.

use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The token type a keyward deployment registers with GitHub.
pub const TOKEN_TYPE: &str = "keyward_personal_access_token";

/// An alert-signing key and its identifier.
pub struct Signer {
    key: EcdsaKeyPair,
    pub id: String,
    public_pem: String,
}

impl Signer {
    pub fn generate() -> Self {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("a P-256 key");
        let der = key.public_key().as_der().expect("a public key's DER").as_ref().to_vec();
        let id = hex::encode(Sha256::digest(&der));
        let lines: Vec<String> =
            STANDARD.encode(&der).as_bytes().chunks(64).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        let public_pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"));
        Self { key, id, public_pem }
    }

    /// `Github-Public-Key-Signature` for `body`: base64 of the DER ECDSA signature.
    pub fn sign(&self, body: &[u8]) -> String {
        STANDARD.encode(self.key.sign(&SystemRandom::new(), body).expect("signing").as_ref())
    }

    /// The key set GitHub publishes, naming this key.
    pub fn key_set(&self) -> String {
        serde_json::json!({"public_keys": [{"key_identifier": self.id, "key": self.public_pem, "is_current": true}]})
            .to_string()
    }
}

/// A signer whose identifier is `id`, and its key set (for tests of a verifier alone).
pub fn signing_key_and_set(id: &str) -> (Signer, String) {
    let mut signer = Signer::generate();
    signer.id = id.to_owned();
    let set = signer.key_set();
    (signer, set)
}

/// `POST /github/secret-scanning/report` `{"token", "url", "deliverTo"}`: what GitHub does when it
/// finds `token` at `url`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    token: String,
    url: String,
    /// keyward's `/tokens/leaks`; only a loopback URL (this is a local stand-in).
    deliver_to: String,
    #[serde(default)]
    token_type: Option<String>,
}

pub fn router() -> (Arc<Signer>, Router) {
    let signer = Arc::new(Signer::generate());
    let routes = Router::new()
        .route("/meta/public_keys/secret_scanning", get(key_set))
        .route("/secret-scanning/report", post(report))
        .with_state(Arc::clone(&signer));
    (signer, routes)
}

async fn key_set(State(signer): State<Arc<Signer>>) -> Response {
    ([("content-type", "application/json")], signer.key_set()).into_response()
}

async fn report(State(signer): State<Arc<Signer>>, Json(report): Json<Report>) -> Response {
    let loopback =
        report.deliver_to.starts_with("http://127.0.0.1:") || report.deliver_to.starts_with("http://localhost:");
    if !loopback {
        return (StatusCode::BAD_REQUEST, "deliverTo must be a loopback http URL").into_response();
    }
    let token_type = report.token_type.unwrap_or_else(|| TOKEN_TYPE.to_owned());
    let body = serde_json::json!([{"token": report.token, "type": token_type, "url": report.url, "source": "content"}])
        .to_string();
    match deliver(&signer, &report.deliver_to, body.as_bytes()).await {
        Ok((status, answer)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, [("content-type", "application/json")], answer).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e).into_response(),
    }
}

/// POSTs `body` to `url` signed as GitHub signs alerts: keyward's status and answer.
pub async fn deliver(signer: &Signer, url: &str, body: &[u8]) -> Result<(u16, String), String> {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("Github-Public-Key-Identifier", &signer.id)
        .header("Github-Public-Key-Signature", signer.sign(body))
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.map_err(|e| e.to_string())?))
}
