//! Typed configuration, read once per cold start from environment variables.
//!
//! A missing or malformed setting fails the cold start with one line naming the variable. AWS's own
//! variables (`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_PROFILE`, credentials) are left to the SDK.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::auth::gateway::ApiGateway;
use crate::auth::service::InternalPrincipals;
use crate::endpoints::{EndpointSetting, is_loopback};
use crate::model::Tier;
use crate::providers::ProviderEndpoints;
use crate::throttle::AnonymousLimits;

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
    Aws { table_name: String, kms_key_id: String },
    /// Embedded file-backed store and a local master key, all kept in `data_dir`.
    Local { data_dir: PathBuf },
}

/// How incoming Auth0 access tokens are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: Url,
    /// A scope every user token must carry (Auth0's `scope` claim), when set.
    pub required_scope: Option<String>,
    /// The claim an Auth0 Action puts `email_verified` in (`https://keyward.dev/email_verified`),
    /// when not the plain one.
    pub email_verified_claim: Option<String>,
}

/// A secret keyward reads at cold start: from Secrets Manager in aws mode, or given directly.
#[derive(Debug, Clone)]
pub enum SecretSetting {
    Value(secrecy::SecretString),
    SecretsManager { arn: String },
}

/// How keyward signs users in through Auth0.
#[derive(Debug, Clone)]
pub struct Auth0Settings {
    /// The tenant URL with Auth0's trailing slash (`https://tenant.eu.auth0.com/`).
    pub issuer: Url,
    /// The Regular Web App keyward's web sign-in uses (confidential: it has the client secret).
    pub web_client_id: String,
    pub client_secret: SecretSetting,
    /// The Native app the device flow uses (public: no secret).
    pub device_client_id: String,
    /// keyward's own `/auth/callback`, exactly as registered with Auth0.
    pub callback_url: Url,
    /// Origins `returnTo` may point at (`https://app.example.com`); anything else is refused.
    pub return_origins: Vec<String>,
}

/// How keyward connects users' Google accounts (OAuth for web-server apps).
#[derive(Debug, Clone)]
pub struct GoogleSettings {
    pub client_id: String,
    pub client_secret: SecretSetting,
    /// keyward's own `/oauth/google/callback`, exactly as registered with Google.
    pub redirect_url: Url,
    pub endpoints: GoogleEndpoints,
    /// What keyward asks for (space-separated on the wire).
    pub scopes: Vec<String>,
    /// An access token expiring sooner than this is refreshed before it is handed out.
    pub refresh_margin: Duration,
}

/// Google's OAuth endpoints: the official ones in aws mode, loopback stand-ins in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleEndpoints {
    pub authorize: Url,
    pub token: Url,
    pub revoke: Url,
    pub userinfo: Url,
}

impl GoogleEndpoints {
    /// In the order of the fields.
    pub const SETTINGS: [EndpointSetting; 4] = [
        EndpointSetting {
            name: "google-oauth",
            var: "KEYWARD_GOOGLE_AUTHORIZE_URL",
            official: "https://accounts.google.com/o/oauth2/v2/auth",
            sandbox_path: "/google/o/oauth2/v2/auth",
        },
        EndpointSetting {
            name: "google-oauth",
            var: "KEYWARD_GOOGLE_TOKEN_URL",
            official: "https://oauth2.googleapis.com/token",
            sandbox_path: "/google/token",
        },
        EndpointSetting {
            name: "google-oauth",
            var: "KEYWARD_GOOGLE_REVOKE_URL",
            official: "https://oauth2.googleapis.com/revoke",
            sandbox_path: "/google/revoke",
        },
        EndpointSetting {
            name: "google-oauth",
            var: "KEYWARD_GOOGLE_USERINFO_URL",
            official: "https://openidconnect.googleapis.com/v1/userinfo",
            sandbox_path: "/google/v1/userinfo",
        },
    ];
}

/// How keyward reads Stripe: the webhook endpoint's secrets and what each price stands for.
#[derive(Debug, Clone)]
pub struct StripeSettings {
    /// One `whsec_…`, or several (comma-separated) while one is rolled.
    pub webhook_secret: SecretSetting,
    /// Which of Stripe's modes the endpoint takes events of; the other mode's are refused.
    pub mode: StripeMode,
    /// Subscription price id → tier (`pro`, `enterprise`).
    pub price_tiers: HashMap<String, Tier>,
    /// Credits each paid invoice of a tier grants.
    pub monthly_allowances: HashMap<Tier, i64>,
    /// Whether a `$0` subscription invoice (a trial) grants its period's allowance.
    pub grant_free_invoices: bool,
    /// The most credits one checkout's `metadata.credits` may grant.
    pub max_purchase_credits: i64,
}

/// Stripe's live mode (real money) or test mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripeMode {
    Live,
    Test,
}

impl std::fmt::Display for StripeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Live => "live-mode",
            Self::Test => "test-mode",
        })
    }
}

/// The sandbox's webhook secret (public by design: it signs only test deliveries).
pub const SANDBOX_STRIPE_WEBHOOK_SECRET: &str = "whsec_keyward_sandbox_0123456789abcdef";

/// The scopes asked for unless `KEYWARD_GOOGLE_SCOPES` says otherwise: who the account is, and calendar.
pub const DEFAULT_GOOGLE_SCOPES: &str = "openid email https://www.googleapis.com/auth/calendar";
/// The sandbox's Google OAuth client (public by design: loopback only).
const SANDBOX_GOOGLE_CLIENT_ID: &str = "keyward-sandbox.apps.googleusercontent.com";
const SANDBOX_GOOGLE_CLIENT_SECRET: &str = "sandbox-google-client-secret";

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub tokens: TokenSettings,
    pub auth0: Auth0Settings,
    pub internal_principals: InternalPrincipals,
    /// The API whose events the functions serve; any other event is refused.
    pub api_gateway: ApiGateway,
    /// How long an unwrapped data key may be reused for reads (at most five minutes).
    pub data_key_cache_ttl: Duration,
    /// Where keys are validated: the providers' official APIs, or loopback stand-ins.
    pub providers: ProviderEndpoints,
    /// The longest a validation call may take (at most ten seconds).
    pub provider_timeout: Duration,
    /// Validation calls spend the user's provider money: at most this many per user, provider and hour.
    pub validations_per_hour: u32,
    /// What one client (source address) may do per minute on the routes anyone may call.
    pub anonymous_limits: AnonymousLimits,
    /// `None` in aws mode without `KEYWARD_GOOGLE_CLIENT_ID`: the Google routes answer 503.
    pub google: Option<GoogleSettings>,
    /// `None` in aws mode without a webhook secret: the webhook answers 503 (Stripe retries).
    pub stripe: Option<StripeSettings>,
}

impl Config {
    /// Reads configuration through `lookup` so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mode = match get("KEYWARD_MODE").as_deref() {
            Some("aws") => Mode::Aws {
                table_name: required(&get, "KEYWARD_TABLE_NAME")?,
                kms_key_id: required(&get, "KEYWARD_KMS_KEY_ID")?,
            },
            Some("local") => local_mode(&get),
            None if get("AWS_LAMBDA_FUNCTION_NAME").is_some() => {
                return Err(ConfigError::new("KEYWARD_MODE", "must be set (aws or local) inside Lambda"));
            }
            None => local_mode(&get),
            Some(_) => return Err(ConfigError::new("KEYWARD_MODE", "must be `aws` or `local`")),
        };
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
        let google = google_settings(&get, local, in_lambda)?;
        let stripe = stripe_settings(&get, local)?;

        Ok(Self {
            mode,
            google,
            stripe,
            auth0,
            tokens: TokenSettings {
                issuer,
                audience,
                jwks_url,
                required_scope: get("KEYWARD_AUTH0_REQUIRED_SCOPE"),
                email_verified_claim: get("KEYWARD_AUTH0_EMAIL_VERIFIED_CLAIM"),
            },
            internal_principals,
            api_gateway,
            data_key_cache_ttl: Duration::from_secs(bounded(&get, "KEYWARD_DATA_KEY_CACHE_TTL_SECS", 0..=300, 300)?),
            providers,
            provider_timeout: Duration::from_secs(bounded(&get, "KEYWARD_PROVIDER_TIMEOUT_SECS", 1..=10, 10)?),
            validations_per_hour: bounded(&get, "KEYWARD_VALIDATIONS_PER_HOUR", 1..=1000, 10)?,
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
            .chain(self.google.as_ref().map(|g| ("google-oauth", &g.endpoints.token)))
            .chain(self.providers.all())
            .filter(|(_, url)| is_loopback(url))
            .map(|(name, _)| name)
            .collect()
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

/// Google connections are optional in aws mode (no client id: not offered); the sandbox has a client.
fn google_settings(
    get: &impl Fn(&str) -> Option<String>,
    local: bool,
    in_lambda: bool,
) -> Result<Option<GoogleSettings>, ConfigError> {
    let client_id = match get("KEYWARD_GOOGLE_CLIENT_ID") {
        Some(id) => id,
        None if local => SANDBOX_GOOGLE_CLIENT_ID.to_owned(),
        None => return Ok(None),
    };
    let [authorize, token, revoke, userinfo] =
        GoogleEndpoints::SETTINGS.each_ref().map(|setting| pinned_endpoint(get, setting, local, in_lambda));
    let endpoints = GoogleEndpoints { authorize: authorize?, token: token?, revoke: revoke?, userinfo: userinfo? };
    let sandbox = local || is_loopback(&endpoints.token);
    let client_secret = client_secret(
        get,
        ["KEYWARD_GOOGLE_CLIENT_SECRET_ARN", "KEYWARD_GOOGLE_CLIENT_SECRET"],
        local,
        sandbox,
        SANDBOX_GOOGLE_CLIENT_SECRET,
    )?;
    let redirect_url = endpoint_url(
        "KEYWARD_GOOGLE_REDIRECT_URL",
        &local_default(
            get,
            "KEYWARD_GOOGLE_REDIRECT_URL",
            sandbox,
            &format!("{LOCAL_BASE_URL}/oauth/google/callback"),
        )?,
    )?;
    let scopes: Vec<String> = get("KEYWARD_GOOGLE_SCOPES")
        .as_deref()
        .unwrap_or(DEFAULT_GOOGLE_SCOPES)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return Err(ConfigError::new("KEYWARD_GOOGLE_SCOPES", "must name at least one scope"));
    }
    Ok(Some(GoogleSettings {
        client_id,
        client_secret,
        redirect_url,
        endpoints,
        scopes,
        refresh_margin: Duration::from_secs(bounded(get, "KEYWARD_GOOGLE_REFRESH_MARGIN_SECS", 60..=1800, 300)?),
    }))
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
    let grant_free_invoices = match get("KEYWARD_STRIPE_GRANT_FREE_INVOICES").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ConfigError::new("KEYWARD_STRIPE_GRANT_FREE_INVOICES", "must be `true` or `false`")),
    };
    Ok(Some(StripeSettings {
        webhook_secret,
        mode,
        price_tiers,
        monthly_allowances,
        grant_free_invoices,
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
mod tests {
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
        assert_eq!(c.mode, Mode::Aws { table_name: "keyward".into(), kms_key_id: "alias/keyward".into() });
        assert_eq!(c.tokens.jwks_url.as_str(), "https://tenant.eu.auth0.com/.well-known/jwks.json");
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
            ["auth0", "google-oauth", "gemini", "openai", "anthropic", "perplexity", "zai", "zai-china", "openrouter"]
        );
        let aws = config(&AWS).unwrap();
        assert_eq!(endpoint(&aws, "gemini"), "https://generativelanguage.googleapis.com/v1beta");
        assert_eq!(endpoint(&aws, "perplexity"), "https://api.perplexity.ai/");
        assert!(aws.stand_ins().is_empty());
        assert_eq!((aws.provider_timeout, aws.validations_per_hour), (Duration::from_secs(10), 10));
    }

    #[test]
    fn google_connections_are_optional_in_aws_mode_and_pinned_to_google() {
        assert!(config(&AWS).unwrap().google.is_none(), "no client id: not offered");
        let mut vars = AWS.to_vec();
        vars.push(("KEYWARD_GOOGLE_CLIENT_ID", "123-abc.apps.googleusercontent.com"));
        assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_GOOGLE_CLIENT_SECRET_ARN");
        vars.push(("KEYWARD_GOOGLE_CLIENT_SECRET", "in-the-environment"));
        assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_GOOGLE_CLIENT_SECRET_ARN", "never from the environment");
        vars.pop();
        vars.push((
            "KEYWARD_GOOGLE_CLIENT_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:g-AbCdEf",
        ));
        assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_GOOGLE_REDIRECT_URL");
        vars.push(("KEYWARD_GOOGLE_REDIRECT_URL", "https://api.keyward.dev/oauth/google/callback"));
        let google = config(&vars).unwrap().google.unwrap();
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
    fn stripe_is_optional_in_aws_mode_and_its_secret_never_in_the_environment() {
        assert!(config(&AWS).unwrap().stripe.is_none(), "no secret: not offered");
        let mut vars = AWS.to_vec();
        vars.push(("KEYWARD_STRIPE_WEBHOOK_SECRET", "whsec_in_the_environment"));
        assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_STRIPE_WEBHOOK_SECRET_ARN");
        vars.pop();
        vars.push((
            "KEYWARD_STRIPE_WEBHOOK_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s-AbCdEf",
        ));
        vars.push(("KEYWARD_STRIPE_PRICE_TIERS", r#"{"price_1":"gold"}"#));
        assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_STRIPE_PRICE_TIERS", "unknown tier");
        vars.pop();
        assert_eq!(config(&vars).unwrap_err().var, "KEYWARD_STRIPE_MODE", "a deployment names its mode");
        vars.push(("KEYWARD_STRIPE_MODE", "live"));
        let stripe = config(&vars).unwrap().stripe.unwrap();
        assert!(matches!(stripe.webhook_secret, SecretSetting::SecretsManager { .. }));
        assert!(stripe.price_tiers.is_empty());
        assert_eq!(
            (stripe.mode, stripe.grant_free_invoices, stripe.max_purchase_credits),
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
        for (var, bad) in [("KEYWARD_STRIPE_MAX_PURCHASE_CREDITS", "0"), ("KEYWARD_STRIPE_GRANT_FREE_INVOICES", "yes")]
        {
            assert_eq!(config(&[(var, bad)]).unwrap_err().var, var);
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
        for bad in [
            "https://app.example.com/path",
            "http://app.example.com",
            "https://u@app.example.com",
            "javascript:alert(1)",
        ] {
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
}
