//! What the use cases' tests run on: the embedded store and the local master key in a temporary
//! folder, a manual clock, and — for the use cases that call other services — the sandbox's
//! stand-ins of Auth0, the connection providers and the LLM providers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keyward_sandbox::Sandbox;
use keyward_sandbox::auth0::DeviceTimings;
use tempfile::TempDir;
use url::Url;

use super::accounts::Accounts;
use super::connections::Connections;
use super::credits::Credits;
use super::devices::Devices;
use super::keys::Keys;
use super::redirects::Redirects;
use super::sessions::{LoginCallback, Sessions};
use super::throttle::{AnonymousLimits, ClientAddress};
use crate::auth::auth0::{Auth0Client, Auth0Settings};
use crate::auth::jwt::{TokenSettings, TokenVerifier};
use crate::auth::service::{InternalPrincipals, ServiceCaller};
use crate::crypto::{Envelope, LocalKeyProvider};
use crate::model::{Clock, ManualClock, OAuthProvider, SystemClock, UserId};
use crate::oauth::connection::{ConnectionClient, ConnectionSettings, Endpoints};
use crate::oauth::connection_spec;
use crate::outbound::Outbound;
use crate::providers::{KeyValidator, ProviderEndpoints};
use crate::secret::SessionHandle;
use crate::secret_store::{SecretReader, SecretSetting};
use crate::store::{CreditChange, EmbeddedTable, LedgerKind, Store};

/// Where the local gateway would be, for the URLs keyward puts in redirects.
const KEYWARD: &str = "http://127.0.0.1:8700";

/// An embedded store in a folder of its own (kept while the folder is).
pub fn embedded_store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(Arc::new(EmbeddedTable::open(dir.path()).unwrap()));
    (dir, store)
}

/// An internal service `name` of account 123456789012 with `grants`.
pub fn service_caller(name: &str, grants: &[&str]) -> ServiceCaller {
    let arn = format!("arn:aws:iam::123456789012:role/{name}");
    let list = serde_json::json!({ arn.clone(): grants }).to_string();
    InternalPrincipals::from_json(&list).unwrap().caller_named(arn).unwrap()
}

/// A provider's consent (or Auth0's sign-in) page answered as `email`: the state and code it sends
/// the browser back with.
pub async fn consent_at(url: &Url, email: &str) -> (String, String) {
    let mut url = url.clone();
    url.query_pairs_mut().append_pair("login_hint", email);
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 302, "the page sends the browser back");
    let back = Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let param = |name| back.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_default();
    (param("state"), param("code"))
}

/// Auth0's sign-in page answered as `email`.
pub async fn at_auth0(url: &Url, email: &str) -> (String, String) {
    consent_at(url, email).await
}

pub struct Fixture {
    dir: TempDir,
    pub store: Store,
    pub envelope: Envelope,
    pub clock: Arc<ManualClock>,
    limits: AnonymousLimits,
    auth0: Auth0Client,
    tokens: TokenVerifier,
    validator: KeyValidator,
    connections: BTreeMap<OAuthProvider, ConnectionClient>,
    pub sandbox: Option<Sandbox>,
}

impl Fixture {
    /// The store, the key and the clock; other services are unreachable.
    pub async fn new() -> Self {
        Self::on("http://127.0.0.1:9", None)
    }

    /// With the sandbox's stand-ins answering for Auth0 (device polls not rate-limited), the
    /// connection providers and the LLM providers.
    pub async fn with_sandbox() -> Self {
        let timings = DeviceTimings { interval: Duration::ZERO, lifetime: Duration::from_secs(900) };
        let sandbox = Sandbox::start_with(([127, 0, 0, 1], 0).into(), timings).await.unwrap();
        let base = sandbox.base_url().to_owned();
        Self::on(&base, Some(sandbox))
    }

    fn on(base: &str, sandbox: Option<Sandbox>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(Arc::new(EmbeddedTable::open(dir.path()).unwrap()));
        let key = LocalKeyProvider::open_or_create(dir.path()).unwrap();
        let clock = Arc::new(ManualClock::at(SystemClock.now()));
        let envelope = Envelope::new(Arc::new(key), Arc::new(store.clone()), Duration::from_secs(300), clock.clone());
        let http = Outbound::new();
        let issuer = Url::parse(&format!("{base}/auth0/")).unwrap();
        let audience = "https://keyward.local/api".to_owned();
        let settings = Auth0Settings {
            issuer: issuer.clone(),
            web_client_id: "keyward-web".into(),
            client_secret: SecretSetting::Value("sandbox-client-secret".into()),
            device_client_id: "keyward-cli".into(),
            callback_url: Url::parse(&format!("{KEYWARD}/auth/callback")).unwrap(),
            return_origins: vec![KEYWARD.to_owned()],
        };
        let secret = SecretReader::new(settings.client_secret.clone(), None);
        let auth0 = Auth0Client::new(http.clone(), settings, audience.clone(), secret);
        let tokens = TokenVerifier::new(
            TokenSettings {
                issuer: issuer.to_string(),
                audience,
                jwks_url: issuer.join(".well-known/jwks.json").unwrap(),
                required_scope: None,
                allowed_clients: ["keyward-web", "keyward-cli", crate::config::SANDBOX_PASSWORD_CLIENT]
                    .map(String::from)
                    .into(),
                email_verified_claim: None,
            },
            http.clone(),
        );
        let endpoints = ProviderEndpoints::build(|s| Url::parse(&format!("{base}{}", s.sandbox_path))).unwrap();
        let validator = KeyValidator::new(http.clone(), endpoints, Duration::from_secs(5));
        let connections = OAuthProvider::ALL
            .iter()
            .map(|&provider| {
                let spec = connection_spec(provider);
                let url = |setting: &crate::endpoints::EndpointSetting| {
                    Url::parse(&format!("{base}{}", setting.sandbox_path)).unwrap()
                };
                let settings = spec.endpoints();
                let (client_id, client_secret) = spec.sandbox_client();
                let settings = ConnectionSettings {
                    client_id: client_id.into(),
                    client_secret: SecretSetting::Value(client_secret.into()),
                    redirect_url: Url::parse(&format!("{KEYWARD}/oauth/{provider}/callback")).unwrap(),
                    endpoints: Endpoints {
                        authorize: url(&settings.authorize),
                        token: url(&settings.token),
                        revoke: settings.revoke.as_ref().map(url),
                        userinfo: settings.userinfo.as_ref().map(url),
                    },
                    scopes: spec.default_scopes().split_whitespace().map(str::to_owned).collect(),
                    refresh_margin: Duration::from_secs(300),
                };
                let secret = SecretReader::new(settings.client_secret.clone(), None);
                (provider, ConnectionClient::new(spec, http.clone(), settings, secret))
            })
            .collect();
        Self {
            dir,
            store,
            envelope,
            clock,
            limits: AnonymousLimits::DEFAULT,
            auth0,
            tokens,
            validator,
            connections,
            sandbox,
        }
    }

    /// Another instance (a cold start) on the same key, table and clock, with a cache of its own.
    pub fn instance(&self) -> Envelope {
        Envelope::new(
            Arc::new(self.key_provider()),
            Arc::new(self.store.clone()),
            Duration::from_secs(300),
            self.clock.clone(),
        )
    }

    /// The local master key the fixture's envelopes seal under.
    pub fn key_provider(&self) -> LocalKeyProvider {
        LocalKeyProvider::open_or_create(self.dir.path()).unwrap()
    }

    pub fn sandbox(&self) -> &Sandbox {
        self.sandbox.as_ref().expect("a fixture with the sandbox")
    }

    pub fn accounts(&self) -> Accounts<'_> {
        Accounts { store: &self.store, clock: self.clock.as_ref() }
    }

    pub fn redirects(&self) -> Redirects<'_> {
        Redirects { store: &self.store, envelope: &self.envelope, clock: self.clock.as_ref() }
    }

    pub fn sessions(&self) -> Sessions<'_> {
        Sessions {
            store: &self.store,
            envelope: &self.envelope,
            auth0: &self.auth0,
            tokens: &self.tokens,
            limits: &self.limits,
            clock: self.clock.as_ref(),
        }
    }

    pub fn devices(&self) -> Devices<'_> {
        Devices { sessions: self.sessions() }
    }

    pub fn keys(&self) -> Keys<'_> {
        Keys {
            store: &self.store,
            envelope: &self.envelope,
            validator: &self.validator,
            validations_per_hour: 10,
            clock: self.clock.as_ref(),
        }
    }

    pub fn connections(&self, provider: OAuthProvider) -> Connections<'_> {
        Connections { client: &self.connections[&provider], sessions: self.sessions() }
    }

    pub fn credits(&self) -> Credits<'_> {
        Credits { store: &self.store, stripe: None, clock: self.clock.as_ref() }
    }

    /// Credits for `user`, as a purchase would give them.
    pub async fn grant(&self, user: &UserId, amount: i64) {
        let change = CreditChange { kind: LedgerKind::Purchase, amount, source: "test".into(), at: self.clock.now() };
        self.store.credits().apply(user, &change, &[], &[]).await.unwrap();
    }

    /// A web sign-in of `email` completed; the browser's session handle.
    pub async fn signed_in(&self, email: &str) -> SessionHandle {
        let sessions = self.sessions();
        let client = ClientAddress::from_source_ip(Some("203.0.113.1"));
        let login = sessions.begin_web_login(&client, None).await.unwrap();
        let (state, code) = at_auth0(&login.authorize_url, email).await;
        let callback = LoginCallback {
            state: Some(&state),
            browser_nonce: Some(&login.browser_cookie.value),
            code: Some(&code),
            error: None,
        };
        sessions.finish_web_login(&callback).await.unwrap().handle
    }

    /// The person approving a device sign-in as `email` on Auth0's activation page.
    pub async fn approve_device(&self, user_code: &str, email: &str) {
        let response = reqwest::Client::new()
            .post(format!("{}activate", self.sandbox().auth0_issuer()))
            .form(&[("user_code", user_code), ("email", email), ("decision", "approve")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}
