//! The AWS configuration of a function: inside Lambda from the variables Lambda sets and nothing
//! else; elsewhere (the local gateway, tools) through the SDK's standard chains. Both with
//! keyward's timeouts and trust store.

use std::time::Duration;

use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::config::ConfigError;

/// The AWS SDK's time limits. The SDK's defaults bound only the connect, so a DynamoDB, KMS or
/// Secrets Manager call that never answers would hold a request until Lambda kills it, with no
/// problem+json and no `Retry-After`. Each attempt gets 2 s (their p99s are tens of milliseconds)
/// and a whole call with its retries 5 s, well inside the functions' 10 s timeout.
fn sdk_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build()
}

/// The AWS configuration of a function inside Lambda, from the variables Lambda sets in every
/// execution environment and nothing else: `AWS_REGION`; the execution role's `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`; and, when set, `AWS_ENDPOINT_URL` (moto),
/// `AWS_USE_FIPS_ENDPOINT` and `AWS_USE_DUALSTACK_ENDPOINT`.
///
/// Not `aws_config`'s default chains: profile files, SSO, web identity (an STS client), container
/// and instance metadata can never apply inside Lambda, yet every function linked them and walked
/// them at each cold start (BENCHMARKS.md has the before and after).
pub fn lambda_sdk_config(lookup: impl Fn(&str) -> Option<String>) -> Result<SdkConfig, ConfigError> {
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let required = |name: &'static str| {
        get(name).ok_or(ConfigError {
            var: name,
            problem: "not set (Lambda sets it for every function; elsewhere export it, or run `keyward-local`, \
                      which reads profiles)"
                .into(),
        })
    };
    let flag = |name: &'static str| match get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ConfigError { var: name, problem: "must be `true` or `false`".into() }),
    };
    let credentials = Credentials::new(
        required("AWS_ACCESS_KEY_ID")?,
        required("AWS_SECRET_ACCESS_KEY")?,
        get("AWS_SESSION_TOKEN"),
        None,
        "lambda-environment",
    );
    let mut sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(required("AWS_REGION")?))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .identity_cache(IdentityCache::lazy().build())
        .retry_config(RetryConfig::standard())
        .timeout_config(sdk_timeouts())
        .http_client(crate::aws_http::https_client())
        .use_fips(flag("AWS_USE_FIPS_ENDPOINT")?)
        .use_dual_stack(flag("AWS_USE_DUALSTACK_ENDPOINT")?);
    sdk.set_endpoint_url(get("AWS_ENDPOINT_URL"));
    Ok(sdk.build())
}

/// The AWS SDK's standard configuration chains (profiles, SSO, instance roles…) with keyward's
/// timeouts and trust store: for the local gateway and tools run on a developer's machine.
pub fn aws_config_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(sdk_timeouts())
        .http_client(crate::aws_http::https_client())
}

#[cfg(test)]
mod tests {
    use aws_credential_types::provider::ProvideCredentials;

    use super::*;

    /// The variables Lambda sets in an execution environment, with a session token as its role's are.
    const LAMBDA: [(&str, &str); 4] = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEKEYID"),
        ("AWS_SECRET_ACCESS_KEY", "example-secret-access-key"),
        ("AWS_SESSION_TOKEN", "example-session-token"),
    ];

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
    }

    #[tokio::test]
    async fn lambdas_variables_configure_region_credentials_and_limits() {
        let sdk = lambda_sdk_config(lookup(&LAMBDA)).unwrap();
        assert_eq!(sdk.region().map(Region::as_ref), Some("eu-west-1"));
        assert_eq!(sdk.endpoint_url(), None);
        assert_eq!((sdk.use_fips(), sdk.use_dual_stack()), (Some(false), Some(false)));
        assert_eq!(sdk.timeout_config().and_then(|t| t.operation_timeout()), Some(Duration::from_secs(5)));
        assert_eq!(sdk.retry_config().map(RetryConfig::max_attempts), Some(3));
        let credentials = sdk.credentials_provider().unwrap().provide_credentials().await.unwrap();
        assert_eq!(credentials.access_key_id(), "ASIAEXAMPLEKEYID");
        assert_eq!(credentials.secret_access_key(), "example-secret-access-key");
        assert_eq!(credentials.session_token(), Some("example-session-token"));
        assert!(!format!("{sdk:?}").contains("example-secret-access-key"), "the secret key is redacted");
    }

    #[test]
    fn an_endpoint_and_endpoint_variants_are_honoured() {
        let vars = [
            LAMBDA.as_slice(),
            &[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"), ("AWS_USE_FIPS_ENDPOINT", "TRUE")],
            &[("AWS_USE_DUALSTACK_ENDPOINT", "true")],
        ]
        .concat();
        let sdk = lambda_sdk_config(lookup(&vars)).unwrap();
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:5000"));
        assert_eq!((sdk.use_fips(), sdk.use_dual_stack()), (Some(true), Some(true)));
    }

    #[test]
    fn a_missing_or_malformed_variable_is_named_and_no_value_is_echoed() {
        for missing in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            let vars: Vec<_> = LAMBDA.iter().copied().filter(|(n, _)| *n != missing).collect();
            let err = lambda_sdk_config(lookup(&vars)).unwrap_err();
            assert_eq!(err.var, missing);
        }
        let blank = LAMBDA.map(|(n, v)| (n, if n == "AWS_SECRET_ACCESS_KEY" { " " } else { v }));
        assert_eq!(lambda_sdk_config(lookup(&blank)).unwrap_err().var, "AWS_SECRET_ACCESS_KEY");
        let vars = [LAMBDA.as_slice(), &[("AWS_USE_FIPS_ENDPOINT", "yes")]].concat();
        let err = lambda_sdk_config(lookup(&vars)).unwrap_err();
        assert_eq!(err.var, "AWS_USE_FIPS_ENDPOINT");
        assert!(!err.to_string().contains("yes") && !err.to_string().contains("example-"), "{err}");
    }

    #[test]
    fn a_session_token_is_optional() {
        let vars: Vec<_> = LAMBDA.iter().copied().filter(|(n, _)| *n != "AWS_SESSION_TOKEN").collect();
        assert!(lambda_sdk_config(lookup(&vars)).is_ok());
    }
}
