//! The environment read into settings: defaults, refusals and the endpoint policy.

use std::collections::HashMap;

use super::*;

fn endpoint(config: &Config, name: &str) -> String {
    config.providers.all().find(|(n, _)| *n == name).map(|(_, url)| url.to_string()).unwrap_or_default()
}

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

const AWS: [(&str, &str); 9] = [
    ("KEYWARD_MODE", "aws"),
    ("KEYWARD_TABLE_NAME", "keyward"),
    ("KEYWARD_KMS_KEY_ID", "alias/keyward"),
    ("KEYWARD_AUTH0_ISSUER", "https://tenant.eu.auth0.com/"),
    ("KEYWARD_AUTH0_AUDIENCE", "https://api.keyward.dev"),
    ("KEYWARD_AUTH0_CLIENT_ID", "web-client"),
    ("KEYWARD_AUTH0_DEVICE_CLIENT_ID", "cli-client"),
    ("KEYWARD_AUTH0_CLIENT_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:auth0-AbCdEf"),
    ("KEYWARD_AUTH0_CALLBACK_URL", "https://api.keyward.dev/auth/callback"),
];

#[test]
fn local_mode_needs_no_settings() {
    let c = config(&[]).unwrap();
    assert_eq!(c.mode, Mode::Local { data_dir: PathBuf::from(".keyward") });
    assert_eq!(c.tokens.jwks_url.as_str(), "http://127.0.0.1:8701/auth0/.well-known/jwks.json");
    assert_eq!(c.data_key_cache_ttl, Duration::from_secs(300));
}

#[test]
fn aws_mode_reads_every_setting() {
    let c = config(&AWS).unwrap();
    assert_eq!(
        c.mode,
        Mode::Aws {
            table_name: "keyward".into(),
            kms_key_id: "alias/keyward".into(),
            previous_kms_key_ids: Vec::new()
        }
    );
    assert_eq!(c.tokens.jwks_url.as_str(), "https://tenant.eu.auth0.com/.well-known/jwks.json");
}

#[test]
fn previous_kms_keys_are_a_list() {
    let mut vars = AWS.to_vec();
    vars.push(("KEYWARD_KMS_PREVIOUS_KEY_IDS", " arn:aws:kms:eu-west-1:1:key/a, ,arn:aws:kms:eu-west-1:1:key/b "));
    let Mode::Aws { previous_kms_key_ids, .. } = config(&vars).unwrap().mode else { panic!("aws mode") };
    assert_eq!(previous_kms_key_ids, ["arn:aws:kms:eu-west-1:1:key/a", "arn:aws:kms:eu-west-1:1:key/b"]);
}

#[test]
fn each_missing_aws_setting_is_named() {
    for skip in [
        "KEYWARD_TABLE_NAME",
        "KEYWARD_KMS_KEY_ID",
        "KEYWARD_AUTH0_ISSUER",
        "KEYWARD_AUTH0_AUDIENCE",
        "KEYWARD_AUTH0_CLIENT_ID",
        "KEYWARD_AUTH0_DEVICE_CLIENT_ID",
        "KEYWARD_AUTH0_CALLBACK_URL",
    ] {
        let vars: Vec<_> = AWS.iter().copied().filter(|(k, _)| *k != skip).collect();
        let err = config(&vars).unwrap_err();
        assert_eq!(err.var, skip);
        assert_eq!(err.to_string(), format!("{skip}: required in aws mode"));
    }
}

#[test]
fn malformed_settings_are_named() {
    let cases = [
        ("KEYWARD_MODE", "prod"),
        ("KEYWARD_AUTH0_ISSUER", "http://tenant.auth0.com/"),
        ("KEYWARD_AUTH0_ISSUER", "https://tenant.auth0.com"),
        ("KEYWARD_AUTH0_JWKS_URL", "ftp://x/jwks"),
        ("KEYWARD_AUTH0_JWKS_URL", "http://169.254.169.254/jwks"),
        ("KEYWARD_DATA_KEY_CACHE_TTL_SECS", "301"),
        ("KEYWARD_DATA_KEY_CACHE_TTL_SECS", "soon"),
        ("KEYWARD_INTERNAL_PRINCIPALS", "{not json"),
    ];
    for (var, value) in cases {
        let mut vars = AWS.to_vec();
        vars.retain(|(k, _)| *k != var);
        vars.push((var, value));
        assert_eq!(config(&vars).unwrap_err().var, var, "{var}={value}");
    }
}

#[test]
fn provider_endpoints_default_to_the_sandbox_locally_and_the_official_hosts_on_aws() {
    let local = config(&[]).unwrap();
    assert_eq!(endpoint(&local, "openai"), "http://127.0.0.1:8701/openai/v1");
    assert_eq!(endpoint(&local, "zai-china"), "http://127.0.0.1:8701/zai-china/api/paas/v4");
    assert_eq!(
        local.stand_ins(),
        [
            "auth0",
            "google-oauth",
            "microsoft-oauth",
            "gemini",
            "openai",
            "anthropic",
            "perplexity",
            "zai",
            "zai-china",
            "openrouter",
            "github"
        ]
    );
    assert_eq!(local.github_keys_url.as_str(), "http://127.0.0.1:8701/github/meta/public_keys/secret_scanning");
    let aws = config(&AWS).unwrap();
    assert_eq!(endpoint(&aws, "gemini"), "https://generativelanguage.googleapis.com/v1beta");
    assert_eq!(endpoint(&aws, "perplexity"), "https://api.perplexity.ai/");
    assert_eq!(aws.github_keys_url.as_str(), "https://api.github.com/meta/public_keys/secret_scanning");
    assert!(aws.stand_ins().is_empty());
    // GitHub's keys decide which alerts revoke tokens: aws mode takes only GitHub's own host.
    let mut elsewhere = AWS.to_vec();
    elsewhere.push(("KEYWARD_GITHUB_KEYS_URL", "https://keys.example.com/secret_scanning"));
    assert_eq!(config(&elsewhere).unwrap_err().var, "KEYWARD_GITHUB_KEYS_URL");
    assert_eq!((aws.provider_timeout, aws.validations_per_hour), (Duration::from_secs(10), 10));
}

#[test]
fn google_connections_are_optional_in_aws_mode_and_pinned_to_google() {
    assert!(config(&AWS).unwrap().connections.is_empty(), "no client id: not offered");
    let mut vars = AWS.to_vec();
    vars.push(("KEYWARD_GOOGLE_CLIENT_ID", "123-abc.apps.googleusercontent.com"));
    assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_GOOGLE_CLIENT_SECRET_ARN");
    vars.push(("KEYWARD_GOOGLE_CLIENT_SECRET", "in-the-environment"));
    assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_GOOGLE_CLIENT_SECRET_ARN", "never from the environment");
    vars.pop();
    vars.push(("KEYWARD_GOOGLE_CLIENT_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:g-AbCdEf"));
    assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_GOOGLE_REDIRECT_URL");
    vars.push(("KEYWARD_GOOGLE_REDIRECT_URL", "https://api.keyward.dev/oauth/google/callback"));
    let google = config(&vars).unwrap().connections.remove(&OAuthProvider::Google).unwrap();
    assert_eq!(google.endpoints.token.as_str(), "https://oauth2.googleapis.com/token");
    assert_eq!(google.endpoints.authorize.as_str(), "https://accounts.google.com/o/oauth2/v2/auth");
    assert_eq!(google.scopes, ["openid", "email", "https://www.googleapis.com/auth/calendar"]);
    assert_eq!(google.refresh_margin, Duration::from_secs(300));
    vars.push(("KEYWARD_GOOGLE_TOKEN_URL", "https://tokens.example.com/token"));
    assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_GOOGLE_TOKEN_URL", "only Google's host");
    vars.pop();
    vars.push(("KEYWARD_GOOGLE_REFRESH_MARGIN_SECS", "5"));
    assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_GOOGLE_REFRESH_MARGIN_SECS");
}

#[test]
fn microsoft_connections_are_optional_too_and_pinned_to_microsofts_login_host() {
    let mut vars = AWS.to_vec();
    vars.extend([
        ("KEYWARD_MICROSOFT_CLIENT_ID", "6731de76-14a6-49ae-97bc-6eba6914391e"),
        ("KEYWARD_MICROSOFT_CLIENT_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:m-AbCdEf"),
        ("KEYWARD_MICROSOFT_REDIRECT_URL", "https://api.keyward.dev/oauth/microsoft/callback"),
    ]);
    let config = config(&vars).unwrap();
    assert_eq!(config.connections.keys().copied().collect::<Vec<_>>(), [OAuthProvider::Microsoft]);
    let microsoft = &config.connections[&OAuthProvider::Microsoft];
    assert_eq!(microsoft.endpoints.token.as_str(), "https://login.microsoftonline.com/common/oauth2/v2.0/token");
    assert_eq!((microsoft.endpoints.revoke.as_ref(), microsoft.endpoints.userinfo.as_ref()), (None, None));
    assert!(microsoft.scopes.iter().any(|s| s == "offline_access"), "a refresh token is asked for");
    let tenant = [(
        "KEYWARD_MICROSOFT_TOKEN_URL",
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
    )];
    assert!(super::tests::config(&[vars.as_slice(), &tenant].concat()).is_ok(), "a single-tenant app names its tenant");
    let elsewhere = [("KEYWARD_MICROSOFT_TOKEN_URL", "https://login.example.com/common/oauth2/v2.0/token")];
    assert_eq!(
        super::tests::config(&[vars.as_slice(), &elsewhere].concat()).unwrap_err().var,
        "KEYWARD_MICROSOFT_TOKEN_URL"
    );
    let local = super::tests::config(&[]).unwrap();
    assert_eq!(local.connections.len(), OAuthProvider::ALL.len(), "the sandbox has a client for each");
    assert_eq!(
        local.connections[&OAuthProvider::Microsoft].redirect_url.as_str(),
        "http://127.0.0.1:8700/oauth/microsoft/callback"
    );
}

#[test]
fn stripe_is_optional_in_aws_mode_and_its_secret_never_in_the_environment() {
    assert!(config(&AWS).unwrap().stripe.is_none(), "no secret: not offered");
    let mut vars = AWS.to_vec();
    vars.push(("KEYWARD_STRIPE_WEBHOOK_SECRET", "whsec_in_the_environment"));
    assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_STRIPE_WEBHOOK_SECRET_ARN");
    vars.pop();
    vars.push(("KEYWARD_STRIPE_WEBHOOK_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s-AbCdEf"));
    vars.push(("KEYWARD_STRIPE_PRICE_TIERS", r#"{"price_1":"gold"}"#));
    assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_STRIPE_PRICE_TIERS", "unknown tier");
    vars.pop();
    assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_STRIPE_MODE", "a deployment names its mode");
    vars.push(("KEYWARD_STRIPE_MODE", "live"));
    let stripe = config(&vars).unwrap().stripe.unwrap();
    assert!(matches!(stripe.webhook_secret, SecretSetting::SecretsManager { .. }));
    assert!(stripe.price_tiers.is_empty());
    assert_eq!(
        (stripe.mode, stripe.grant_free_payments, stripe.max_purchase_credits),
        (StripeMode::Live, false, 1_000_000)
    );
    let local = config(&[]).unwrap().stripe.unwrap();
    assert!(matches!(local.webhook_secret, SecretSetting::Value(_)), "the sandbox secret");
    assert_eq!(local.price_tiers.get("price_sandbox_pro"), Some(&Tier::Pro));
    assert_eq!(local.monthly_allowances[&Tier::Enterprise], 10_000);
    assert_eq!(local.mode, StripeMode::Test);
    assert_eq!(
        config(&[("KEYWARD_STRIPE_MODE", "live")]).unwrap_err().var,
        "KEYWARD_STRIPE_MODE",
        "local is test only"
    );
    for (var, bad) in [
        ("KEYWARD_STRIPE_MAX_PURCHASE_CREDITS", "0"),
        ("KEYWARD_STRIPE_GRANT_FREE_PAYMENTS", "yes"),
        ("KEYWARD_STRIPE_GRANT_FREE_INVOICES", "yes"),
    ] {
        assert_eq!(config(&[(var, bad)]).unwrap_err().var, var);
    }
    for var in ["KEYWARD_STRIPE_GRANT_FREE_PAYMENTS", "KEYWARD_STRIPE_GRANT_FREE_INVOICES"] {
        assert!(config(&[(var, "true")]).unwrap().stripe.unwrap().grant_free_payments, "{var}, and its old name");
    }
}

#[test]
fn aws_mode_sends_keys_only_to_official_hosts() {
    let with = |extra: &[(&str, &str)]| {
        let mut vars = AWS.to_vec();
        vars.extend_from_slice(extra);
        config(&vars)
    };
    let official = with(&[("KEYWARD_OPENAI_BASE_URL", "https://api.openai.com/v1/")]).unwrap();
    assert_eq!(endpoint(&official, "openai"), "https://api.openai.com/v1");
    let stand_in = with(&[("KEYWARD_ANTHROPIC_BASE_URL", "http://127.0.0.1:9/anthropic/v1")]).unwrap();
    assert_eq!(stand_in.stand_ins(), ["anthropic"]);
    let refused = [
        ("KEYWARD_OPENAI_BASE_URL", "https://api.openai.com.evil.example/v1"),
        ("KEYWARD_OPENAI_BASE_URL", "https://api.openai.com:8443/v1"),
        ("KEYWARD_OPENAI_BASE_URL", "http://api.openai.com/v1"),
        ("KEYWARD_ZAI_BASE_URL", "https://open.bigmodel.cn/api/paas/v4"),
        ("KEYWARD_GEMINI_BASE_URL", "http://169.254.169.254/latest"),
    ];
    for (var, value) in refused {
        assert_eq!(with(&[(var, value)]).unwrap_err().var, var, "{value}");
    }
    // Inside Lambda, loopback is the runtime API: never a provider.
    let err = with(&[("KEYWARD_OPENAI_BASE_URL", "http://127.0.0.1:9001/v1"), ("AWS_LAMBDA_FUNCTION_NAME", "f")])
        .unwrap_err();
    assert_eq!(err.var, "KEYWARD_OPENAI_BASE_URL");
}

#[test]
fn validation_limits_are_bounded() {
    for (var, value) in [
        ("KEYWARD_PROVIDER_TIMEOUT_SECS", "0"),
        ("KEYWARD_PROVIDER_TIMEOUT_SECS", "11"),
        ("KEYWARD_VALIDATIONS_PER_HOUR", "0"),
        ("KEYWARD_VALIDATIONS_PER_HOUR", "-1"),
    ] {
        assert_eq!(config(&[(var, value)]).unwrap_err().var, var, "{value}");
    }
    let c = config(&[("KEYWARD_PROVIDER_TIMEOUT_SECS", "2"), ("KEYWARD_VALIDATIONS_PER_HOUR", "3")]).unwrap();
    assert_eq!((c.provider_timeout, c.validations_per_hour), (Duration::from_secs(2), 3));
}

#[test]
fn auth0_client_settings() {
    let local = config(&[]).unwrap();
    assert_eq!(local.auth0.callback_url.as_str(), "http://127.0.0.1:8700/auth/callback");
    assert_eq!(local.auth0.return_origins, ["http://127.0.0.1:8700", "http://localhost:8700"]);
    let aws = config(&AWS).unwrap();
    assert!(matches!(aws.auth0.client_secret, SecretSetting::SecretsManager { .. }));
    assert!(aws.auth0.return_origins.is_empty());
    let mut vars = AWS.to_vec();
    vars.retain(|(k, _)| *k != "KEYWARD_AUTH0_CLIENT_SECRET_ARN");
    vars.push(("KEYWARD_AUTH0_CLIENT_SECRET", "in-the-environment"));
    assert_eq!(
        config(&vars).unwrap_err().var,
        "KEYWARD_AUTH0_CLIENT_SECRET_ARN",
        "aws mode reads it from Secrets Manager"
    );
    let origins = |list| config(&[("KEYWARD_RETURN_ORIGINS", list)]).map(|c| c.auth0.return_origins);
    assert_eq!(
        origins("https://app.example.com, https://b.example.com:8443").unwrap(),
        ["https://app.example.com", "https://b.example.com:8443"]
    );
    for bad in
        ["https://app.example.com/path", "http://app.example.com", "https://u@app.example.com", "javascript:alert(1)"]
    {
        assert_eq!(origins(bad).unwrap_err().var, "KEYWARD_RETURN_ORIGINS", "{bad}");
    }
}

#[test]
fn inside_lambda_the_api_and_account_are_required() {
    let mut vars = AWS.to_vec();
    vars.push(("AWS_LAMBDA_FUNCTION_NAME", "f"));
    assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_ACCOUNT_ID");
    vars.push(("KEYWARD_ACCOUNT_ID", "12345"));
    assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_ACCOUNT_ID");
    vars.pop();
    vars.push(("KEYWARD_ACCOUNT_ID", "123456789012"));
    assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_API_ID");
    vars.push(("KEYWARD_API_ID", "a1b2c3d4e5"));
    let gateway = config(&vars).unwrap().api_gateway;
    assert_eq!(
        gateway,
        ApiGateway { api_id: "a1b2c3d4e5".into(), stage: "$default".into(), account_id: "123456789012".into() }
    );
    let local = config(&[]).unwrap().api_gateway;
    assert_eq!((local.api_id.as_str(), local.account_id.as_str()), (LOCAL_API_ID, LOCAL_ACCOUNT_ID));
}

#[test]
fn inside_lambda_the_mode_must_be_explicit() {
    let err = config(&[("AWS_LAMBDA_FUNCTION_NAME", "f")]).unwrap_err();
    assert_eq!(err.var, "KEYWARD_MODE");
}

#[test]
fn loopback_http_is_allowed_for_stand_ins() {
    for ok in ["http://127.0.0.1:9/x", "http://localhost:9/", "http://[::1]:9/", "https://example.com/"] {
        assert!(endpoint_url("V", ok).is_ok(), "{ok}");
    }
    for bad in ["http://10.0.0.1/", "http://example.com/", "file:///etc/passwd", "gopher://x"] {
        assert!(endpoint_url("V", bad).is_err(), "{bad}");
    }
}

#[test]
fn personal_token_settings_default_and_refuse_what_scanners_could_not_find() {
    let defaults = config(&[]).unwrap().personal_tokens;
    assert_eq!((defaults.format.prefix(), defaults.max_days, defaults.per_user), ("kw_pat_", 365, 20));
    let chosen = config(&[("KEYWARD_TOKEN_PREFIX", "acme_"), ("KEYWARD_TOKEN_MAX_DAYS", "30")]).unwrap();
    assert_eq!((chosen.personal_tokens.format.prefix(), chosen.personal_tokens.max_days), ("acme_", 30));
    for (var, value) in [
        ("KEYWARD_TOKEN_PREFIX", "Acme-"),
        ("KEYWARD_TOKEN_PREFIX", "acme"),
        ("KEYWARD_TOKEN_MAX_DAYS", "0"),
        ("KEYWARD_TOKEN_MAX_DAYS", "3651"),
        ("KEYWARD_TOKENS_PER_USER", "0"),
    ] {
        assert_eq!(config(&[(var, value)]).unwrap_err().var, var, "{var}={value}");
    }
}
