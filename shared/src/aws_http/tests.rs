use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;

use super::*;

/// A CA made for these tests alone, and a `localhost` certificate it issued (PKCS#8 key).
const TEST_CA: &str = include_str!("../../certs/test/ca.pem");
const LOCALHOST_CERT: &str = include_str!("../../certs/test/localhost.pem");
const LOCALHOST_KEY: &str = include_str!("../../certs/test/localhost.key.pem");

const NO_TIMEOUTS: Timeouts = (None, None);

#[test]
fn the_bundled_roots_are_five_certificates_of_mozillas_root_store() {
    let bundled = CertificateDer::pem_slice_iter(AMAZON_TRUST_SERVICES_ROOTS.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("the bundle parses as PEM certificates");
    assert_eq!(bundled.len(), 5);
    // Byte for byte the certificates another copy of Mozilla's store (webpki-root-certs) holds:
    // nothing was altered or added when they were copied in.
    for cert in &bundled {
        assert!(webpki_root_certs::TLS_SERVER_ROOT_CERTS.contains(cert), "a bundled root Mozilla does not ship");
    }
    let text = AMAZON_TRUST_SERVICES_ROOTS;
    for name in ["Amazon Root CA 1", "Amazon Root CA 2", "Amazon Root CA 3", "Amazon Root CA 4"] {
        assert!(text.contains(&format!("CN = {name}\n")), "{name}");
    }
    assert!(text.contains("CN = Starfield Services Root Certificate Authority - G2\n"));
}

#[test]
fn the_platform_roots_are_used_only_when_the_operator_names_some() {
    assert_eq!(roots(|_| false), Roots::Only(AMAZON_TRUST_SERVICES_ROOTS));
    assert_eq!(roots(|var| var == "SSL_CERT_FILE"), Roots::Platform);
    assert_eq!(roots(|var| var == "SSL_CERT_DIR"), Roots::Platform);
}

/// What a TLS server on `localhost` saw of each request: its head, up to the blank line.
async fn tls_server(answer: &'static [u8]) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let certs = vec![CertificateDer::from_pem_slice(LOCALHOST_CERT.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(LOCALHOST_KEY.as_bytes()).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen, heads) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && tls.read(&mut byte).await.is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let _ = seen.send(String::from_utf8_lossy(&head).into_owned());
                let _ = tls.write_all(answer).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, heads)
}

fn list_tables(port: u16) -> HttpRequest {
    let mut request = HttpRequest::new(SdkBody::from("{}"));
    request.set_method("POST").unwrap();
    request.set_uri(format!("https://localhost:{port}/")).unwrap();
    request.headers_mut().insert("x-amz-target", "DynamoDB_20120810.ListTables");
    request.headers_mut().insert("authorization", "AWS4-HMAC-SHA256 Credential=example");
    request
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}

#[tokio::test]
async fn a_request_reaches_a_server_chaining_to_a_trusted_root_as_the_sdk_signed_it() {
    let (port, mut heads) = tls_server(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: 17\r\n\r\n{\"TableNames\":[]}",
    )
    .await;
    let response = Connector::new(Roots::Only(TEST_CA), NO_TIMEOUTS).call(list_tables(port)).await.expect("answered");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers().get("content-type"), Some("application/x-amz-json-1.0"));
    assert_eq!(response.body().bytes(), Some(&b"{\"TableNames\":[]}"[..]));
    let head = heads.recv().await.unwrap().to_ascii_lowercase();
    assert!(head.starts_with("post / http/1.1\r\n"), "{head}");
    for header in [
        format!("host: localhost:{port}"),
        "x-amz-target: dynamodb_20120810.listtables".into(),
        "authorization: aws4-hmac-sha256 credential=example".into(),
        "content-length: 2".into(),
    ] {
        assert!(head.contains(&format!("{header}\r\n")), "{header} not in {head}");
    }
}

#[tokio::test]
async fn the_sdk_client_refuses_a_certificate_no_amazon_root_issued() {
    let (port, _heads) = tls_server(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
    let error = Connector::new(roots(|_| false), NO_TIMEOUTS).call(list_tables(port)).await.expect_err("refused");
    assert!(chain(&error).contains("UnknownIssuer"), "{}", chain(&error));
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout_and_a_refused_connection_is_io() {
    // Accepts and reads, never answers: the SDK retries a timeout as transient.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            open.push(tcp);
        }
    });
    let mut request = list_tables(port);
    request.set_uri(format!("http://127.0.0.1:{port}/")).unwrap();
    let slow = Connector::new(Roots::Only(TEST_CA), (None, Some(Duration::from_millis(200))));
    let error = slow.call(request).await.expect_err("no answer");
    assert!(error.is_timeout(), "{}", chain(&error));

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut request = list_tables(port);
    request.set_uri(format!("http://127.0.0.1:{port}/")).unwrap();
    let error = Connector::new(Roots::Only(TEST_CA), NO_TIMEOUTS).call(request).await.expect_err("refused");
    assert!(error.is_io(), "{}", chain(&error));
}

#[tokio::test]
async fn a_redirect_is_handed_to_the_sdk_not_followed() {
    let (port, mut heads) =
        tls_server(b"HTTP/1.1 307 Temporary Redirect\r\nlocation: https://example.com/\r\ncontent-length: 0\r\n\r\n")
            .await;
    let response = Connector::new(Roots::Only(TEST_CA), NO_TIMEOUTS).call(list_tables(port)).await.expect("answered");
    assert_eq!(response.status().as_u16(), 307);
    assert_eq!(response.headers().get("location"), Some("https://example.com/"));
    heads.recv().await.unwrap();
    assert!(heads.try_recv().is_err(), "one request, no second one to the redirect's target");
}

#[test]
fn one_connector_serves_each_timeout_setting() {
    let client = SdkHttpClient::new(Roots::Only(TEST_CA));
    let components =
        aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder::for_tests().build().unwrap();
    let short = HttpConnectorSettings::builder().connect_timeout(Duration::from_secs(1)).build();
    let long = HttpConnectorSettings::builder().connect_timeout(Duration::from_secs(9)).build();
    client.http_connector(&short, &components);
    client.http_connector(&short, &components);
    client.http_connector(&long, &components);
    assert_eq!(client.connectors.lock().unwrap().len(), 2);
}
