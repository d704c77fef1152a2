//! The AWS SDK's HTTP client: HTTP/1.1 over reqwest (rustls on aws-lc), trusting the CAs AWS's
//! endpoints chain to and no others.
//!
//! Not the SDK's default client: that one always links an HTTP/2 stack (h2, and hyper's HTTP/2
//! client with it) and a connector of its own beside reqwest's, 0.6–1.1 MB of every function
//! (BENCHMARKS.md), for services keyward never calls over HTTP/2.
//!
//! The SDK's default client also loaded the platform's whole root store when a client was built:
//! about 140 certificates parsed, and on Debian-style images ~290 files opened, most of every cold
//! start, for roots the SDK never uses. DynamoDB, KMS, Secrets Manager and STS present certificates
//! issued by Amazon Trust Services, whose four roots (and Starfield's cross-signing root) are
//! bundled here. Trusting only them also means no other CA can vouch for an AWS endpoint.
//!
//! An operator who sets `SSL_CERT_FILE` or `SSL_CERT_DIR` (an egress that inspects TLS, an
//! AWS-compatible endpoint with its own CA) gets exactly the roots they name instead.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

/// Amazon Root CA 1–4 and Starfield Services Root CA G2, as published at
/// <https://www.amazontrust.com/repository/> (copied from Mozilla's root store).
const AMAZON_TRUST_SERVICES_ROOTS: &str = include_str!("../certs/amazon-trust-services.pem");

/// The SDK's HTTPS client, trusting [`roots`].
pub fn https_client() -> SharedHttpClient {
    SharedHttpClient::new(SdkHttpClient::new(roots(|var| std::env::var_os(var).is_some())))
}

/// The certificates a TLS connection to AWS may chain to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Roots {
    /// Only these PEM certificates.
    Only(&'static str),
    /// The platform's store, which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`.
    Platform,
}

/// Amazon Trust Services' roots, or the platform's when the operator named some.
fn roots(is_set: impl Fn(&str) -> bool) -> Roots {
    if ["SSL_CERT_FILE", "SSL_CERT_DIR"].into_iter().any(is_set) {
        Roots::Platform
    } else {
        Roots::Only(AMAZON_TRUST_SERVICES_ROOTS)
    }
}

/// One connector (one reqwest client and its connection pool) per timeout setting the SDK asks
/// for; in practice every client of a process asks for the same ones.
#[derive(Debug)]
struct SdkHttpClient {
    roots: Roots,
    connectors: Mutex<Vec<(Timeouts, SharedHttpConnector)>>,
}

type Timeouts = (Option<Duration>, Option<Duration>);

impl SdkHttpClient {
    fn new(roots: Roots) -> Self {
        Self { roots, connectors: Mutex::new(Vec::new()) }
    }
}

impl HttpClient for SdkHttpClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        let timeouts = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, connector)) = connectors.iter().find(|(t, _)| *t == timeouts) {
            return connector.clone();
        }
        let connector = SharedHttpConnector::new(Connector::new(self.roots, timeouts));
        connectors.push((timeouts, connector.clone()));
        connector
    }
}

/// Sends the SDK's requests. A client that could not be built (no usable roots) fails each call
/// with that error rather than at cold start.
#[derive(Debug)]
struct Connector {
    client: Result<reqwest::Client, Arc<reqwest::Error>>,
}

impl Connector {
    fn new(roots: Roots, (connect_timeout, read_timeout): Timeouts) -> Self {
        // As the SDK's own client: no proxy from the environment, no redirects, no decompression.
        let mut builder = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none());
        if let Some(timeout) = connect_timeout {
            builder = builder.connect_timeout(timeout);
        }
        if let Some(timeout) = read_timeout {
            builder = builder.read_timeout(timeout);
        }
        let client = match roots {
            Roots::Only(pem) => reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .and_then(|certs| builder.tls_certs_only(certs).build()),
            Roots::Platform => builder.build(),
        };
        Self { client: client.map_err(Arc::new) }
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::other(e.clone().into(), None))),
        };
        let request = match to_reqwest(request) {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e))),
        };
        HttpConnectorFuture::new(async move {
            let response = client.execute(request).await.map_err(connector_error)?;
            let mut answer = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            let body = response.bytes().await.map_err(connector_error)?;
            let answer = answer.body(SdkBody::from(body)).map_err(|e| ConnectorError::other(e.into(), None))?;
            HttpResponse::try_from(answer).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// The SDK's request as reqwest's. Every operation keyward calls (DynamoDB, KMS, Secrets
/// Manager, STS) sends its body in memory.
fn to_reqwest(request: HttpRequest) -> Result<reqwest::Request, Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = request.try_into_http1x()?.into_parts();
    let body = body.bytes().ok_or("a streaming request body, which the SDK client does not send")?.to_vec();
    Ok(reqwest::Request::try_from(http::Request::from_parts(parts, body))?)
}

/// How the SDK's retry policy should see a failed send: timeouts and broken connections are
/// transient, a request reqwest could not build is the caller's.
fn connector_error(e: reqwest::Error) -> ConnectorError {
    if e.is_timeout() {
        ConnectorError::timeout(e.into())
    } else if e.is_builder() {
        ConnectorError::user(e.into())
    } else {
        ConnectorError::io(e.into())
    }
}

#[cfg(test)]
mod tests;
