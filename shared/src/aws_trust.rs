//! The HTTPS client of the AWS SDK, trusting the CAs AWS's endpoints chain to and no others.
//!
//! The SDK's default client loads the platform's whole root store when a client is built: about
//! 140 certificates parsed, and on Debian-style images ~290 files opened. That was most of every
//! cold start (BENCHMARKS.md), for roots the SDK never uses: DynamoDB, KMS, Secrets Manager and STS
//! present certificates issued by Amazon Trust Services, whose four roots (and Starfield's
//! cross-signing root) are bundled here. Trusting only them also means no other CA can vouch for an
//! AWS endpoint.
//!
//! An operator who sets `SSL_CERT_FILE` or `SSL_CERT_DIR` (an egress that inspects TLS, an
//! AWS-compatible endpoint with its own CA) gets exactly the roots they name instead.

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// Amazon Root CA 1–4 and Starfield Services Root CA G2, as published at
/// <https://www.amazontrust.com/repository/> (copied from Mozilla's root store).
const AMAZON_TRUST_SERVICES_ROOTS: &str = include_str!("../certs/amazon-trust-services.pem");

/// The SDK's HTTPS client (rustls on aws-lc, as the SDK's default) with [`trust_store`]'s roots.
pub fn https_client() -> SharedHttpClient {
    let operator_roots = ["SSL_CERT_FILE", "SSL_CERT_DIR"].iter().any(|var| std::env::var_os(var).is_some());
    let context = TlsContext::builder().with_trust_store(trust_store(operator_roots)).build().unwrap_or_default();
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
}

/// Amazon Trust Services' roots, or the platform's (which honour `SSL_CERT_FILE`/`SSL_CERT_DIR`)
/// when the operator named some.
fn trust_store(operator_roots: bool) -> TrustStore {
    if operator_roots {
        TrustStore::default()
    } else {
        TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES_ROOTS.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    use super::*;

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
        let pinned = format!("{:?}", trust_store(false));
        assert!(pinned.contains("enable_native_roots: false"), "{pinned}");
        assert!(format!("{:?}", trust_store(true)).contains("enable_native_roots: true"));
    }
}
