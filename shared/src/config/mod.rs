//! Typed configuration, read once per cold start from environment variables.
//!
//! A missing or malformed setting fails the cold start with one line naming the variable. AWS's own
//! variables (`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_PROFILE`, credentials) are left to the SDK.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::auth::auth0::Auth0Settings;
use crate::auth::gateway::ApiGateway;
use crate::auth::jwt::TokenSettings;
use crate::auth::personal_token::{DEFAULT_PREFIX, TokenFormat};
use crate::auth::service::InternalPrincipals;
use crate::endpoints::{EndpointSetting, is_loopback};
use crate::model::OAuthProvider;
use crate::model::Tier;
use crate::oauth::connection::{ConnectionSettings, ConnectionSpec, Endpoints};
use crate::oauth::connection_spec;
use crate::providers::ProviderEndpoints;
use crate::secret_store::SecretSetting;
use crate::stripe::{StripeMode, StripeSettings};
use crate::use_cases::access_tokens::PersonalTokenSettings;
use crate::use_cases::throttle::AnonymousLimits;

/// Where the local sandbox stand-ins listen by default (see `infra/`); local mode points at them.
pub const SANDBOX_BASE_URL: &str = "http://127.0.0.1:8701";
/// The audience local-mode tokens carry.
pub const LOCAL_AUDIENCE: &str = "https://keyward.local/api";
/// Where local mode's gateway listens by default (`keyward-local`).
pub const LOCAL_BASE_URL: &str = "http://127.0.0.1:8700";
/// The API id, stage and account the local gateway names in its events (`keyward-local`).
pub const LOCAL_API_ID: &str = "local";
pub const LOCAL_ACCOUNT_ID: &str = "000000000000";
/// An HTTP API's default stage, the one keyward's template deploys.
pub const DEFAULT_STAGE: &str = "$default";
/// The client secret of the sandbox tenant's web application (public by design: loopback only).
const SANDBOX_CLIENT_SECRET: &str = "sandbox-client-secret";
/// The client the sandbox's Auth0 password grant issues tokens to when none is named.
pub const SANDBOX_PASSWORD_CLIENT: &str = "keyward-sandbox";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self { var, problem: problem.into() }
    }
}

/// Which adapters the service runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// DynamoDB, KMS and Secrets Manager (real AWS, or moto through `AWS_ENDPOINT_URL`).
    /// `previous_kms_key_ids` (`KEYWARD_KMS_PREVIOUS_KEY_IDS`, comma-separated) are still accepted
    /// for unwrapping while branch keys move to `kms_key_id`; nothing new is wrapped under them.
    Aws { table_name: String, kms_key_id: String, previous_kms_key_ids: Vec<String> },
    /// Embedded file-backed store and a local master key, all kept in `data_dir`.
    Local { data_dir: PathBuf },
}

impl Mode {
    /// The mode alone, from `KEYWARD_MODE` and the variables it needs: what a tool that only reads
    /// and writes the table (`keyward-admin`) configures.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        Ok(match get("KEYWARD_MODE").as_deref() {
            Some("aws") => Mode::Aws {
                table_name: required(&get, "KEYWARD_TABLE_NAME")?,
                kms_key_id: required(&get, "KEYWARD_KMS_KEY_ID")?,
                previous_kms_key_ids: get("KEYWARD_KMS_PREVIOUS_KEY_IDS")
                    .map(|ids| ids.split(',').map(str::trim).filter(|id| !id.is_empty()).map(str::to_owned).collect())
                    .unwrap_or_default(),
            },
            Some("local") => local_mode(&get),
            None if get("AWS_LAMBDA_FUNCTION_NAME").is_some() => {
                return Err(ConfigError::new("KEYWARD_MODE", "must be set (aws or local) inside Lambda"));
            }
            None => local_mode(&get),
            Some(_) => return Err(ConfigError::new("KEYWARD_MODE", "must be `aws` or `local`")),
        })
    }
}

/// The sandbox's webhook secret (public by design: it signs only test deliveries).
pub const SANDBOX_STRIPE_WEBHOOK_SECRET: &str = "whsec_keyward_sandbox_0123456789abcdef";

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub tokens: TokenSettings,
    pub auth0: Auth0Settings,
    pub internal_principals: InternalPrincipals,
    /// The API whose events the functions serve; any other event is refused.
    pub api_gateway: ApiGateway,
    /// How long an instance may reuse an unwrapped key (a purpose's branch key, or a legacy
    /// record's data key) before asking KMS again (at most five minutes).
    pub data_key_cache_ttl: Duration,
    /// Where keys are validated: the providers' official APIs, or loopback stand-ins.
    pub providers: ProviderEndpoints,
    /// The longest a validation call may take (at most ten seconds).
    pub provider_timeout: Duration,
    /// Validation calls spend the user's provider money: at most this many per user, provider and hour.
    pub validations_per_hour: u32,
    /// What one client (source address) may do per minute on the routes anyone may call.
    pub anonymous_limits: AnonymousLimits,
    /// The connection providers configured: all in local mode; in aws mode those with a client id
    /// (`KEYWARD_GOOGLE_CLIENT_ID`, …). Another provider's routes answer 503.
    pub connections: BTreeMap<OAuthProvider, ConnectionSettings>,
    /// `None` in aws mode without a webhook secret: the webhook answers 503 (Stripe retries).
    pub stripe: Option<StripeSettings>,
    /// Personal access tokens: their prefix, longest lifetime and number per user.
    pub personal_tokens: PersonalTokenSettings,
    /// Where GitHub publishes the keys its secret-scanning alerts are signed with.
    pub github_keys_url: Url,
}

impl Config {
    /// Reads configuration through `lookup` so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mode = Mode::from_lookup(get)?;
        let local = matches!(mode, Mode::Local { .. });
        let in_lambda = get("AWS_LAMBDA_FUNCTION_NAME").is_some();

        let issuer = match get("KEYWARD_AUTH0_ISSUER") {
            Some(v) => v,
            None if local => format!("{SANDBOX_BASE_URL}/auth0/"),
            None => {
                return Err(ConfigError::new("KEYWARD_AUTH0_ISSUER", "required in aws mode"));
            }
        };
        let issuer_url = endpoint_url("KEYWARD_AUTH0_ISSUER", &issuer)?;
        if !issuer.ends_with('/') {
            return Err(ConfigError::new("KEYWARD_AUTH0_ISSUER", "must end with `/`, as Auth0 issuers do"));
        }
        let audience = match get("KEYWARD_AUTH0_AUDIENCE") {
            Some(v) => v,
            None if local => LOCAL_AUDIENCE.to_owned(),
            None => {
                return Err(ConfigError::new("KEYWARD_AUTH0_AUDIENCE", "required in aws mode"));
            }
        };
        let jwks_url = match get("KEYWARD_AUTH0_JWKS_URL") {
            Some(v) => endpoint_url("KEYWARD_AUTH0_JWKS_URL", &v)?,
            None => issuer_url
                .join(".well-known/jwks.json")
                .map_err(|e| ConfigError::new("KEYWARD_AUTH0_ISSUER", e.to_string()))?,
        };

        let internal_principals = match get("KEYWARD_INTERNAL_PRINCIPALS") {
            Some(v) => {
                InternalPrincipals::from_json(&v).map_err(|e| ConfigError::new("KEYWARD_INTERNAL_PRINCIPALS", e))?
            }
            None => InternalPrincipals::default(),
        };

        let providers = ProviderEndpoints::build(|setting| pinned_endpoint(&get, setting, local, in_lambda))?;
        let github_keys_url = pinned_endpoint(&get, &GITHUB_KEYS, local, in_lambda)?;

        // Against the sandbox tenant (local mode, or a loopback issuer in tests) the clients and their
        // public secret have defaults; a real tenant must be configured in full.
        let sandbox = local || is_loopback(&issuer_url);
        let auth0 = Auth0Settings {
            web_client_id: local_default(&get, "KEYWARD_AUTH0_CLIENT_ID", sandbox, "keyward-web")?,
            client_secret: client_secret(
                &get,
                ["KEYWARD_AUTH0_CLIENT_SECRET_ARN", "KEYWARD_AUTH0_CLIENT_SECRET"],
                local,
                sandbox,
                SANDBOX_CLIENT_SECRET,
            )?,
            device_client_id: local_default(&get, "KEYWARD_AUTH0_DEVICE_CLIENT_ID", sandbox, "keyward-cli")?,
            callback_url: endpoint_url(
                "KEYWARD_AUTH0_CALLBACK_URL",
                &local_default(
                    &get,
                    "KEYWARD_AUTH0_CALLBACK_URL",
                    sandbox,
                    &format!("{LOCAL_BASE_URL}/auth/callback"),
                )?,
            )?,
            return_origins: match get("KEYWARD_RETURN_ORIGINS") {
                Some(list) => {
                    list.split(',').map(|o| origin_of("KEYWARD_RETURN_ORIGINS", o.trim())).collect::<Result<_, _>>()?
                }
                None if sandbox => vec![LOCAL_BASE_URL.to_owned(), "http://localhost:8700".to_owned()],
                None => Vec::new(),
            },
            issuer: issuer_url,
        };

        let api_gateway = api_gateway(&get, in_lambda)?;
        let connections = OAuthProvider::ALL
            .iter()
            .map(|&provider| connection_settings(&get, connection_spec(provider), local, in_lambda))
            .filter_map(Result::transpose)
            .collect::<Result<_, _>>()?;
        let stripe = stripe_settings(&get, local)?;
        let allowed_clients = allowed_clients(&get, &auth0, sandbox);

        Ok(Self {
            mode,
            connections,
            stripe,
            auth0,
            tokens: TokenSettings {
                issuer,
                audience,
                jwks_url,
                required_scope: get("KEYWARD_AUTH0_REQUIRED_SCOPE"),
                allowed_clients,
                email_verified_claim: get("KEYWARD_AUTH0_EMAIL_VERIFIED_CLAIM"),
            },
            internal_principals,
            api_gateway,
            data_key_cache_ttl: Duration::from_secs(bounded(&get, "KEYWARD_DATA_KEY_CACHE_TTL_SECS", 0..=300, 300)?),
            providers,
            provider_timeout: Duration::from_secs(bounded(&get, "KEYWARD_PROVIDER_TIMEOUT_SECS", 1..=10, 10)?),
            validations_per_hour: bounded(&get, "KEYWARD_VALIDATIONS_PER_HOUR", 1..=1000, 10)?,
            github_keys_url,
            personal_tokens: PersonalTokenSettings {
                format: TokenFormat::new(get("KEYWARD_TOKEN_PREFIX").as_deref().unwrap_or(DEFAULT_PREFIX))
                    .map_err(|e| ConfigError::new("KEYWARD_TOKEN_PREFIX", e))?,
                max_days: bounded(&get, "KEYWARD_TOKEN_MAX_DAYS", 1..=3650, 365)?,
                per_user: bounded(&get, "KEYWARD_TOKENS_PER_USER", 1..=1000, 20)?,
            },
            anonymous_limits: AnonymousLimits {
                device_starts: bounded(
                    &get,
                    "KEYWARD_DEVICE_STARTS_PER_MINUTE",
                    1..=100_000,
                    AnonymousLimits::DEFAULT.device_starts,
                )?,
                logins: bounded(&get, "KEYWARD_LOGINS_PER_MINUTE", 1..=100_000, AnonymousLimits::DEFAULT.logins)?,
                refreshes: bounded(
                    &get,
                    "KEYWARD_REFRESHES_PER_MINUTE",
                    1..=100_000,
                    AnonymousLimits::DEFAULT.refreshes,
                )?,
            },
        })
    }

    /// The third-party services this configuration reaches on loopback: local stand-ins (sandbox
    /// mode), never the real service. `GET /health` reports them so nobody mistakes one for the other.
    pub fn stand_ins(&self) -> Vec<&'static str> {
        std::iter::once(("auth0", &self.tokens.jwks_url))
            .chain(
                self.connections.iter().map(|(p, c)| (connection_spec(*p).endpoints().token.name, &c.endpoints.token)),
            )
            .chain(self.providers.all())
            .chain(std::iter::once((GITHUB_KEYS.name, &self.github_keys_url)))
            .filter(|(_, url)| is_loopback(url))
            .map(|(name, _)| name)
            .collect()
    }
}

/// GitHub's secret-scanning alert keys.
pub const GITHUB_KEYS: EndpointSetting = EndpointSetting {
    name: "github",
    var: "KEYWARD_GITHUB_KEYS_URL",
    official: crate::github::OFFICIAL_KEYS_URL,
    sandbox_path: "/github/meta/public_keys/secret_scanning",
};

/// The Auth0 applications whose access tokens act for users: `KEYWARD_AUTH0_ALLOWED_CLIENTS`
/// (comma-separated) when set; else keyward's web and device clients, and against the sandbox
/// tenant also its own password-grant client (what `curl` and the tests sign in with).
fn allowed_clients(get: &impl Fn(&str) -> Option<String>, auth0: &Auth0Settings, sandbox: bool) -> Vec<String> {
    match get("KEYWARD_AUTH0_ALLOWED_CLIENTS") {
        Some(list) => list.split(',').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect(),
        None => {
            let own = [&auth0.web_client_id, &auth0.device_client_id].map(String::clone);
            own.into_iter().chain(sandbox.then(|| SANDBOX_PASSWORD_CLIENT.to_owned())).collect()
        }
    }
}

/// The API Gateway API of the stack (`template.yaml` sets it on every function); outside Lambda,
/// the local gateway's.
fn api_gateway(get: &impl Fn(&str) -> Option<String>, in_lambda: bool) -> Result<ApiGateway, ConfigError> {
    let inside_lambda = |var: &'static str, local: &str| match get(var) {
        Some(v) => Ok(v),
        None if !in_lambda => Ok(local.to_owned()),
        None => Err(ConfigError::new(var, "required inside Lambda (template.yaml sets it)")),
    };
    let account_id = inside_lambda("KEYWARD_ACCOUNT_ID", LOCAL_ACCOUNT_ID)?;
    if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::new("KEYWARD_ACCOUNT_ID", "must be a 12-digit AWS account id"));
    }
    Ok(ApiGateway {
        api_id: inside_lambda("KEYWARD_API_ID", LOCAL_API_ID)?,
        stage: get("KEYWARD_API_STAGE").unwrap_or_else(|| DEFAULT_STAGE.to_owned()),
        account_id,
    })
}

/// A provider's connections are optional in aws mode (no client id: not offered); the sandbox has
/// a client for each.
fn connection_settings(
    get: &impl Fn(&str) -> Option<String>,
    spec: &dyn ConnectionSpec,
    local: bool,
    in_lambda: bool,
) -> Result<Option<(OAuthProvider, ConnectionSettings)>, ConfigError> {
    let vars = spec.vars();
    let (sandbox_id, sandbox_secret) = spec.sandbox_client();
    let client_id = match get(vars.client_id) {
        Some(id) => id,
        None if local => sandbox_id.to_owned(),
        None => return Ok(None),
    };
    let settings = spec.endpoints();
    let pin = |setting| pinned_endpoint(get, setting, local, in_lambda);
    let endpoints = Endpoints {
        authorize: pin(&settings.authorize)?,
        token: pin(&settings.token)?,
        revoke: settings.revoke.as_ref().map(pin).transpose()?,
        userinfo: settings.userinfo.as_ref().map(pin).transpose()?,
    };
    let sandbox = local || is_loopback(&endpoints.token);
    let client_secret =
        client_secret(get, [vars.client_secret_arn, vars.client_secret], local, sandbox, sandbox_secret)?;
    let provider = spec.provider();
    let redirect_url = endpoint_url(
        vars.redirect_url,
        &local_default(get, vars.redirect_url, sandbox, &format!("{LOCAL_BASE_URL}/oauth/{provider}/callback"))?,
    )?;
    let scopes: Vec<String> =
        get(vars.scopes).as_deref().unwrap_or(spec.default_scopes()).split_whitespace().map(str::to_owned).collect();
    if scopes.is_empty() {
        return Err(ConfigError::new(vars.scopes, "must name at least one scope"));
    }
    let refresh_margin = Duration::from_secs(bounded(get, vars.refresh_margin_secs, 60..=1800, 300)?);
    Ok(Some((
        provider,
        ConnectionSettings { client_id, client_secret, redirect_url, endpoints, scopes, refresh_margin },
    )))
}

/// A client secret: from Secrets Manager (the ARN in `arn_var`); given directly (`value_var`) in
/// local mode only; or the sandbox's public one against a sandbox.
fn client_secret(
    get: &impl Fn(&str) -> Option<String>,
    [arn_var, value_var]: [&'static str; 2],
    local: bool,
    sandbox: bool,
    sandbox_value: &str,
) -> Result<SecretSetting, ConfigError> {
    match (get(arn_var), get(value_var)) {
        (Some(arn), _) => Ok(SecretSetting::SecretsManager { arn }),
        (None, Some(value)) if local => Ok(SecretSetting::Value(value.into())),
        (None, None) if sandbox => Ok(SecretSetting::Value(sandbox_value.into())),
        (None, _) => Err(ConfigError::new(
            arn_var,
            "required in aws mode (the secret lives in Secrets Manager, never in the environment)",
        )),
    }
}

/// Stripe is optional in aws mode (no webhook secret: not offered); local mode has the sandbox's.
fn stripe_settings(get: &impl Fn(&str) -> Option<String>, local: bool) -> Result<Option<StripeSettings>, ConfigError> {
    let secret_vars = ["KEYWARD_STRIPE_WEBHOOK_SECRET_ARN", "KEYWARD_STRIPE_WEBHOOK_SECRET"];
    if !local && secret_vars.iter().all(|var| get(var).is_none()) {
        return Ok(None);
    }
    // Local mode is the sandbox: its public secret signs only test deliveries.
    let webhook_secret = client_secret(get, secret_vars, local, local, SANDBOX_STRIPE_WEBHOOK_SECRET)?;
    let price_tiers: HashMap<String, String> = match get("KEYWARD_STRIPE_PRICE_TIERS") {
        Some(raw) => serde_json::from_str(&raw)
            .map_err(|_| ConfigError::new("KEYWARD_STRIPE_PRICE_TIERS", "must be a JSON object of price id to tier"))?,
        None if local => HashMap::from([
            ("price_sandbox_pro".to_owned(), "pro".to_owned()),
            ("price_sandbox_enterprise".to_owned(), "enterprise".to_owned()),
        ]),
        None => HashMap::new(),
    };
    let price_tiers = price_tiers
        .into_iter()
        .map(|(price, tier)| match Tier::parse(&tier) {
            Some(tier) => Ok((price, tier)),
            None => {
                Err(ConfigError::new("KEYWARD_STRIPE_PRICE_TIERS", format!("unknown tier `{tier}` (pro, enterprise)")))
            }
        })
        .collect::<Result<_, _>>()?;
    let monthly_allowances = HashMap::from([
        (Tier::Free, 0),
        (Tier::Pro, bounded(get, "KEYWARD_PRO_MONTHLY_CREDITS", 0..=100_000_000, 1_000)?),
        (Tier::Enterprise, bounded(get, "KEYWARD_ENTERPRISE_MONTHLY_CREDITS", 0..=100_000_000, 10_000)?),
    ]);
    // Local mode is the sandbox: test mode only. A deployment says which mode it is for.
    let mode = match (get("KEYWARD_STRIPE_MODE").as_deref(), local) {
        (Some("test"), _) | (None, true) => StripeMode::Test,
        (Some("live"), false) => StripeMode::Live,
        (Some("live"), true) => return Err(ConfigError::new("KEYWARD_STRIPE_MODE", "local mode takes test mode only")),
        (None, false) => {
            return Err(ConfigError::new("KEYWARD_STRIPE_MODE", "required with Stripe (`live` or `test`)"));
        }
        (Some(_), _) => return Err(ConfigError::new("KEYWARD_STRIPE_MODE", "must be `live` or `test`")),
    };
    // The setting's first name spoke of invoices only; it still works.
    let grant_free_payments = ["KEYWARD_STRIPE_GRANT_FREE_PAYMENTS", "KEYWARD_STRIPE_GRANT_FREE_INVOICES"]
        .into_iter()
        .find_map(|var| Some((var, get(var)?)));
    let grant_free_payments = match grant_free_payments {
        None => false,
        Some((_, value)) if value == "false" => false,
        Some((_, value)) if value == "true" => true,
        Some((var, _)) => return Err(ConfigError::new(var, "must be `true` or `false`")),
    };
    Ok(Some(StripeSettings {
        webhook_secret,
        mode,
        price_tiers,
        monthly_allowances,
        grant_free_payments,
        max_purchase_credits: bounded(get, "KEYWARD_STRIPE_MAX_PURCHASE_CREDITS", 1..=1_000_000_000, 1_000_000)?,
    }))
}

fn local_mode(get: &impl Fn(&str) -> Option<String>) -> Mode {
    Mode::Local { data_dir: get("KEYWARD_DATA_DIR").map_or_else(|| PathBuf::from(".keyward"), PathBuf::from) }
}

/// A setting with a default against the sandbox that a real deployment must set.
fn local_default(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    sandbox: bool,
    default: &str,
) -> Result<String, ConfigError> {
    match get(var) {
        Some(v) => Ok(v),
        None if sandbox => Ok(default.to_owned()),
        None => Err(ConfigError::new(var, "required in aws mode")),
    }
}

/// An allowed `returnTo` origin: `scheme://host[:port]`, https (or http on loopback), nothing more.
fn origin_of(var: &'static str, raw: &str) -> Result<String, ConfigError> {
    let url = endpoint_url(var, raw)?;
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(ConfigError::new(var, "list origins only (`https://app.example.com`), without paths"));
    }
    Ok(url.origin().ascii_serialization())
}

fn required(get: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<String, ConfigError> {
    get(var).ok_or_else(|| ConfigError::new(var, "required in aws mode"))
}

/// A whole number setting within `range`, or `default` when unset.
fn bounded<T>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    range: std::ops::RangeInclusive<T>,
    default: T,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match get(var) {
        None => Ok(default),
        Some(v) => v.trim().parse::<T>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
            ConfigError::new(var, format!("must be a whole number from {} to {}", range.start(), range.end()))
        }),
    }
}

/// A third party's endpoint (an LLM provider's base URL, a Google OAuth endpoint). Local mode
/// defaults to the sandbox stand-in. In aws mode only the official https host is accepted, so no
/// configuration mistake sends keys or tokens elsewhere; a loopback stand-in is allowed outside Lambda
/// only (the tests, `keyward-local` on moto), since inside Lambda loopback is the runtime API.
fn pinned_endpoint(
    get: &impl Fn(&str) -> Option<String>,
    setting: &EndpointSetting,
    local: bool,
    in_lambda: bool,
) -> Result<Url, ConfigError> {
    let raw = match get(setting.var) {
        Some(v) => v,
        None if local => format!("{SANDBOX_BASE_URL}{}", setting.sandbox_path),
        None => setting.official.to_owned(),
    };
    let url = endpoint_url(setting.var, raw.trim_end_matches('/'))?;
    let official_host = setting.official.trim_start_matches("https://").split('/').next().unwrap_or_default();
    let is_official = url.scheme() == "https" && url.host_str() == Some(official_host) && url.port().is_none();
    match (local, is_official, is_loopback(&url)) {
        (true, _, _) | (false, true, _) => Ok(url),
        (false, false, true) if !in_lambda => Ok(url),
        _ => Err(ConfigError::new(
            setting.var,
            format!("aws mode accepts only {official_host} (or a loopback stand-in outside Lambda)"),
        )),
    }
}

/// An endpoint keyward calls: https, or plain http only to a loopback host (local stand-ins).
pub fn endpoint_url(var: &'static str, raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|e| ConfigError::new(var, format!("not a URL ({e})")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(ConfigError::new(var, "http is allowed only for loopback hosts; use https")),
        _ => Err(ConfigError::new(var, "must be an https URL")),
    }
}

#[cfg(test)]
mod tests;
