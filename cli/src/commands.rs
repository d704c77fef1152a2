//! One function per command. Results go to stdout; instructions, progress and errors to stderr.

use std::io::{IsTerminal, Read};
use std::time::Duration;

use indicatif::ProgressBar;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::CliError;
use crate::api::{Api, LOCAL_URL, expect_json, expect_success};
use crate::session::{Caller, Session, Tokens, now};

/// The API a command talks to: `--url`, else the session's, else the local run's.
fn api_for(url: Option<url::Url>, session: Option<&Session>) -> Result<Api, CliError> {
    let base = match (url, session) {
        (Some(url), _) => url,
        (None, Some(session)) => session.base_url.clone(),
        (None, None) => url::Url::parse(LOCAL_URL).map_err(|e| CliError::Failed(e.to_string()))?,
    };
    Api::new(base)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceStart {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u64,
    interval: u64,
}

/// An RFC 8628 answer to a poll that is not the tokens.
#[derive(Deserialize)]
struct DeviceAnswer {
    error: String,
    interval: Option<u64>,
}

#[derive(Deserialize)]
struct Profile {
    id: String,
    email: Option<String>,
}

/// `keyward login`: the device flow, polling at the server's interval and slowing down when told.
pub async fn login(url: Option<url::Url>, no_browser: bool) -> Result<(), CliError> {
    let api = api_for(url, None)?;
    let start: DeviceStart = expect_json(api.send(Method::POST, "/auth/device/start", None, None).await?).await?;
    let link = start.verification_uri_complete.as_deref().unwrap_or(&start.verification_uri);
    eprintln!("To sign in, open {link}");
    eprintln!("and check that it shows the code {}", start.user_code);
    if !no_browser && std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        eprintln!("(press Enter to open it in your browser)");
        let link = link.to_owned();
        // Polling goes on meanwhile; the thread ends with the process if Enter never comes.
        std::thread::spawn(move || {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_ok() {
                let _ = open::that_detached(link);
            }
        });
    }

    let spinner = ProgressBar::new_spinner();
    spinner.set_message("waiting for you to confirm in the browser…");
    spinner.enable_steady_tick(Duration::from_millis(120));
    let deadline = now() + i64::try_from(start.expires_in).unwrap_or(900);
    let mut interval = start.interval.max(1);
    let body = serde_json::to_vec(&serde_json::json!({ "deviceCode": start.device_code }))
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let tokens = loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        let response = api.send(Method::POST, "/auth/device/poll", None, Some(body.clone())).await?;
        if response.status() == StatusCode::OK {
            break expect_json::<Tokens>(response).await?;
        }
        if response.status() != StatusCode::BAD_REQUEST {
            spinner.finish_and_clear();
            return Err(match expect_success(response).await {
                Err(problem) => problem,
                Ok(other) => CliError::Failed(format!("keyward answered the poll with {}", other.status())),
            });
        }
        let answer = expect_device_answer(response).await?;
        match answer.error.as_str() {
            "authorization_pending" => {}
            // RFC 8628 §3.5: the interval grows by 5 s, unless the server names the new one.
            "slow_down" => interval = answer.interval.unwrap_or(interval + 5),
            "access_denied" => {
                spinner.finish_and_clear();
                return Err(CliError::Failed("sign-in was denied in the browser".into()));
            }
            _ => {
                spinner.finish_and_clear();
                return Err(CliError::Failed("the code expired; run `keyward login` again".into()));
            }
        }
        if now() >= deadline {
            spinner.finish_and_clear();
            return Err(CliError::Failed("the code expired; run `keyward login` again".into()));
        }
    };
    spinner.finish_and_clear();

    let mut session = Session::new(api.base().clone(), tokens);
    session.save()?;
    let profile: Profile = expect_json(session.send(&api, Method::GET, "/me", None).await?).await?;
    println!("Signed in to {} as {}", api.base(), profile.email.as_deref().unwrap_or(&profile.id));
    Ok(())
}

/// The device flow's 400 answers: RFC 8628's plain JSON, not problem+json.
async fn expect_device_answer(response: reqwest::Response) -> Result<DeviceAnswer, CliError> {
    response.json().await.map_err(|_| CliError::Failed("keyward sent an unexpected answer to a poll".into()))
}

/// `keyward logout`: ends the session at keyward (which revokes it at Auth0) and forgets it here.
pub async fn logout(url: Option<url::Url>) -> Result<(), CliError> {
    let Some(session) = Session::load()? else {
        println!("Not signed in.");
        return Ok(());
    };
    let api = api_for(url, Some(&session))?;
    let ended = match api.send(Method::POST, "/auth/logout", None, Some(session.handle_body()?.to_vec())).await {
        Ok(response) => expect_success(response).await.map(drop),
        Err(e) => Err(e),
    };
    // Forgotten here either way: the person asked to be signed out of this machine.
    Session::forget()?;
    match ended {
        Ok(()) => {
            println!("Signed out.");
            Ok(())
        }
        Err(e) => Err(CliError::Failed(format!("signed out here, but keyward could not end the session: {e}"))),
    }
}

/// The API and who acts on it, for a command that needs a signed-in user or `KEYWARD_TOKEN`.
fn signed_in(url: Option<url::Url>) -> Result<(Api, Caller), CliError> {
    let caller = Caller::require()?;
    let api = api_for(url, caller.session())?;
    Ok((api, caller))
}

/// `keyward whoami`.
pub async fn whoami(url: Option<url::Url>) -> Result<(), CliError> {
    let (api, mut caller) = signed_in(url)?;
    let profile: Profile = expect_json(caller.send(&api, Method::GET, "/me", None).await?).await?;
    println!("{} ({}) at {}", profile.email.as_deref().unwrap_or("no email"), profile.id, api.base());
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyListing {
    provider: String,
    preview: String,
    status: String,
    last_test: Option<LastTest>,
}

#[derive(Deserialize)]
struct LastTest {
    ok: bool,
    message: String,
    at: String,
}

#[derive(Deserialize)]
struct KeyList {
    keys: Vec<KeyListing>,
}

/// `keyward keys list`.
pub async fn keys_list(url: Option<url::Url>) -> Result<(), CliError> {
    let (api, mut caller) = signed_in(url)?;
    let list: KeyList = expect_json(caller.send(&api, Method::GET, "/me/llm-keys", None).await?).await?;
    if list.keys.is_empty() {
        println!("No keys stored. Add one with `keyward keys set <provider>`.");
        return Ok(());
    }
    println!("{:<12} {:<24} {:<10} LAST CHECK", "PROVIDER", "KEY", "STATUS");
    for key in list.keys {
        let check = key
            .last_test
            .map(|t| format!("{} {} ({})", if t.ok { "ok:" } else { "failed:" }, t.message, t.at))
            .unwrap_or_default();
        println!("{:<12} {:<24} {:<10} {check}", key.provider, key.preview, key.status);
    }
    Ok(())
}

/// One provider as `GET /llm-providers` lists it: the API is the one list of providers.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    slug: String,
    display_name: String,
    key_hint: String,
    console_url: String,
}

#[derive(Deserialize)]
struct Providers {
    providers: Vec<Provider>,
}

/// The provider the API lists under `slug`, or a usage error naming those it does list.
async fn provider_named(api: &Api, slug: &str) -> Result<Provider, CliError> {
    let listed: Providers = expect_json(api.send(Method::GET, "/llm-providers", None, None).await?).await?;
    let known = listed.providers.iter().map(|p| p.slug.as_str()).collect::<Vec<_>>().join(", ");
    listed
        .providers
        .into_iter()
        .find(|p| p.slug == slug)
        .ok_or_else(|| CliError::UnknownProvider { given: slug.to_owned(), known })
}

/// Reads the key: from a hidden prompt on a terminal, else all of stdin. Never from argv.
fn read_key(provider: &Provider) -> Result<Zeroizing<String>, CliError> {
    let raw = if std::io::stdin().is_terminal() {
        eprintln!(
            "{} keys look like {}; create one at {}",
            provider.display_name, provider.key_hint, provider.console_url
        );
        Zeroizing::new(
            rpassword::prompt_password(format!("{} API key (hidden): ", provider.display_name))
                .map_err(|e| CliError::Failed(format!("cannot read the key: {e}")))?,
        )
    } else {
        let mut text = Zeroizing::new(String::new());
        std::io::stdin().read_to_string(&mut text).map_err(|e| CliError::Failed(format!("cannot read stdin: {e}")))?;
        text
    };
    let key = Zeroizing::new(raw.trim().to_owned());
    if key.is_empty() {
        return Err(CliError::Failed("no key given (type it at the prompt, or pipe it on stdin)".into()));
    }
    Ok(key)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PutKey<'a> {
    api_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<&'a str>,
}

/// `keyward keys set <provider>`: keyward stores the key only after the provider accepted it.
pub async fn keys_set(url: Option<url::Url>, provider: &str, region: Option<String>) -> Result<(), CliError> {
    // The provider is checked first: a name the API does not list is a usage error, signed in or not.
    let caller = Caller::require();
    let api = api_for(url, caller.as_ref().ok().and_then(Caller::session))?;
    let provider = provider_named(&api, provider).await?;
    let mut caller = caller?;
    let key = read_key(&provider)?;
    let body = Zeroizing::new(
        serde_json::to_vec(&PutKey { api_key: &key, region: region.as_deref() })
            .map_err(|e| CliError::Failed(e.to_string()))?,
    );
    drop(key);
    let path = format!("/me/llm-keys/{}", provider.slug);
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!("checking the key with {}…", provider.display_name));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let answer = caller.send(&api, Method::PUT, &path, Some(body.to_vec())).await;
    spinner.finish_and_clear();
    let stored: KeyListing = expect_json(answer?).await?;
    println!("Stored your {0} key {1} (checked with {0}).", provider.display_name, stored.preview);
    Ok(())
}

#[derive(Deserialize)]
struct TestAnswer {
    ok: bool,
    message: String,
}

/// `keyward keys test <provider>`: exit 1 when the provider refuses the key now.
pub async fn keys_test(url: Option<url::Url>, provider: &str) -> Result<(), CliError> {
    let (api, mut caller, provider) = signed_in_with(url, provider).await?;
    let path = format!("/me/llm-keys/{}/test", provider.slug);
    let answer: TestAnswer = expect_json(caller.send(&api, Method::POST, &path, None).await?).await?;
    if answer.ok {
        println!("{}", answer.message);
        Ok(())
    } else {
        Err(CliError::Failed(answer.message))
    }
}

/// `keyward keys rm <provider>`.
pub async fn keys_rm(url: Option<url::Url>, provider: &str) -> Result<(), CliError> {
    let (api, mut caller, provider) = signed_in_with(url, provider).await?;
    let path = format!("/me/llm-keys/{}", provider.slug);
    expect_success(caller.send(&api, Method::DELETE, &path, None).await?).await?;
    println!("Removed your {} key.", provider.display_name);
    Ok(())
}

/// The API, who acts on it and the provider named `slug`.
async fn signed_in_with(url: Option<url::Url>, slug: &str) -> Result<(Api, Caller, Provider), CliError> {
    let (api, caller) = signed_in(url)?;
    let provider = provider_named(&api, slug).await?;
    Ok((api, caller, provider))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenListing {
    id: String,
    name: String,
    preview: String,
    scopes: Vec<String>,
    expires_at: String,
    last_used_at: Option<String>,
}

#[derive(Deserialize)]
struct TokenList {
    tokens: Vec<TokenListing>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedToken {
    id: String,
    token: secrecy::SecretString,
    expires_at: String,
}

/// `keyward tokens create NAME --scope … --days N`: the token goes to stdout, once.
pub async fn tokens_create(url: Option<url::Url>, name: &str, scopes: &[String], days: u32) -> Result<(), CliError> {
    let (api, mut caller) = signed_in(url)?;
    let body = serde_json::json!({"name": name, "scopes": scopes, "expiresInDays": days});
    let body = serde_json::to_vec(&body).map_err(|e| CliError::Failed(e.to_string()))?;
    let created: CreatedToken = expect_json(caller.send(&api, Method::POST, "/me/tokens", Some(body)).await?).await?;
    eprintln!(
        "Token {} expires {}. It is shown this once; keep it in your secret store.",
        created.id, created.expires_at
    );
    println!("{}", secrecy::ExposeSecret::expose_secret(&created.token));
    Ok(())
}

/// `keyward tokens list`.
pub async fn tokens_list(url: Option<url::Url>) -> Result<(), CliError> {
    let (api, mut caller) = signed_in(url)?;
    let list: TokenList = expect_json(caller.send(&api, Method::GET, "/me/tokens", None).await?).await?;
    if list.tokens.is_empty() {
        println!("No tokens. Make one with `keyward tokens create NAME --scope keys:read --days 30`.");
        return Ok(());
    }
    println!("{:<22} {:<16} {:<16} {:<22} {:<22} SCOPES", "ID", "NAME", "TOKEN", "EXPIRES", "LAST USED");
    for t in list.tokens {
        let used = t.last_used_at.unwrap_or_else(|| "never".into());
        println!(
            "{:<22} {:<16} {:<16} {:<22} {:<22} {}",
            t.id,
            t.name,
            t.preview,
            t.expires_at,
            used,
            t.scopes.join(" ")
        );
    }
    Ok(())
}

/// `keyward tokens revoke ID`: refused from its next request on.
pub async fn tokens_revoke(url: Option<url::Url>, id: &str) -> Result<(), CliError> {
    let (api, mut caller) = signed_in(url)?;
    let path = format!("/me/tokens/{id}");
    expect_success(caller.send(&api, Method::DELETE, &path, None).await?).await?;
    println!("Revoked {id}.");
    Ok(())
}
