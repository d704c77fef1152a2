//! A loopback proxy in front of moto that counts AWS calls by operation (`X-Amz-Target`), so a
//! function process's DynamoDB, KMS and Secrets Manager calls are counted from outside it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Clone, Default)]
pub struct Counts(Arc<Mutex<BTreeMap<String, usize>>>);

impl Counts {
    pub fn take(&self) -> BTreeMap<String, usize> {
        self.0.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default()
    }
}

struct Upstream {
    base: String,
    http: reqwest::Client,
    counts: Counts,
}

/// Starts the proxy to `moto`; returns its address and the counts it keeps.
pub async fn start(moto: &str) -> std::io::Result<(SocketAddr, Counts)> {
    let counts = Counts::default();
    let upstream = Arc::new(Upstream {
        base: moto.trim_end_matches('/').to_owned(),
        http: reqwest::Client::new(),
        counts: counts.clone(),
    });
    let app = Router::new().fallback(forward).with_state(upstream);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, counts))
}

async fn forward(
    State(up): State<Arc<Upstream>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(|t| {
            t.replace("DynamoDB_20120810.", "DynamoDB.")
                .replace("TrentService.", "KMS.")
                .replace("secretsmanager.", "SecretsManager.")
        })
        .unwrap_or_else(|| format!("{method} {}", uri.path()));
    if let Ok(mut counts) = up.counts.0.lock() {
        *counts.entry(operation).or_default() += 1;
    }
    let url = format!("{}{}", up.base, uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut request = up.http.request(method, url).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status();
            let mut out = HeaderMap::new();
            for (name, value) in answer.headers() {
                if name != "content-length" && name != "transfer-encoding" {
                    out.insert(name.clone(), value.clone());
                }
            }
            let body = answer.bytes().await.unwrap_or_default();
            (status, out, body).into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
