//! Users' LLM provider keys: stored only after their provider accepted them, sealed per user and
//! provider, checked again on demand, and handed in plaintext only to the internal services granted
//! them — every step audited, never with the key.

use std::collections::BTreeSet;

use secrecy::{ExposeSecret, SecretString};

use super::accounts::{AccountError, Accounts};
use crate::auth::{Grant, ServiceCaller, UserCaller};
use crate::crypto::{CryptoError, Envelope};
use crate::model::{Clock, Provider, UserId, ZaiRegion};
use crate::providers::{Failure, KeyShapeError, KeyValidator, LlmProvider, Outcome, parse_api_key, preview, spec};
use crate::secret::ApiKey;
use crate::store::{
    Actor, Allowance, AuditAction, AuditEntry, KeyStatus, NewLlmKey, Store, StoreError, StoredLlmKey, TestResult,
    llm_key_context,
};

/// The window of the per-user, per-provider validation allowance.
const VALIDATION_WINDOW_SECS: i64 = 3_600;
/// `lastUsedAt` is written at most this often per key, to spare writes on hot keys.
const LAST_USED_INTERVAL_SECS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("{0}")]
    InvalidRegion(&'static str),
    #[error(transparent)]
    Shape(#[from] KeyShapeError),
    /// The provider refused the key (or could not be asked); nothing was stored.
    #[error("{}", .0.message())]
    Refused(Box<Failure>),
    #[error(
        "{} keys can be checked at most {limit} times an hour (each check spends your provider credit) — try again \
         in {} minutes.",
        spec(*provider).display_name(),
        retry_after_secs.div_ceil(60)
    )]
    ValidationLimit { provider: Provider, limit: u32, retry_after_secs: u64 },
    #[error("No {} key is stored.", spec(*.0).display_name())]
    NoKey(Provider),
    #[error("This IAM principal may not fetch keys of those providers.")]
    GrantMissing,
    #[error("This user has no stored key for the requested providers.")]
    NoKeys,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// The outcome of checking a stored key again.
pub struct KeyTest {
    pub ok: bool,
    /// Why not, when not ok.
    pub code: Option<&'static str>,
    pub message: String,
    pub at: i64,
}

/// One key handed to an internal service.
pub struct FetchedKey {
    pub provider: Provider,
    pub key: SecretString,
    pub region: Option<ZaiRegion>,
}

pub struct Keys<'a> {
    pub store: &'a Store,
    pub envelope: &'a Envelope,
    pub validator: &'a KeyValidator,
    /// Validation calls spend the user's provider money: at most this many per user, provider and hour.
    pub validations_per_hour: u32,
    pub clock: &'a dyn Clock,
}

fn works(provider: &dyn LlmProvider) -> String {
    format!("The {} key works.", provider.display_name())
}

impl Keys<'_> {
    /// Every provider keyward stores keys for, in order.
    pub fn providers() -> impl Iterator<Item = &'static dyn LlmProvider> {
        Provider::ALL.iter().map(|p| spec(*p))
    }

    pub async fn list(&self, user: &UserId) -> Result<Vec<StoredLlmKey>, KeyError> {
        Ok(self.store.llm_keys().list(user).await?)
    }

    /// Shape-checks a pasted key, validates it with its provider, then seals and stores it with its
    /// audit entry. A refused key is never stored, and a key already stored stays as it was.
    pub async fn store_key(
        &self,
        caller: &UserCaller,
        provider: Provider,
        raw: &SecretString,
        region: Option<&str>,
    ) -> Result<StoredLlmKey, KeyError> {
        self.accounts().require_verified_email(caller).await?;
        let region = region_of(provider, region)?;
        let key = parse_api_key(provider, raw.expose_secret())?;
        let user = &caller.user;
        self.spend_validation(user, provider).await?;
        if let Outcome::Invalid(failure) = self.validator.validate(provider, region.unwrap_or_default(), &key).await {
            self.audit(caller, AuditAction::LlmKeyPut, provider.slug(), failure.kind.code().as_str()).await?;
            return Err(KeyError::Refused(Box::new(failure)));
        }
        let now = self.clock.now();
        let new = NewLlmKey {
            provider,
            sealed: self.envelope.seal(key.expose().as_bytes(), &llm_key_context(user, provider)).await?,
            preview: preview(&key),
            status: KeyStatus::Valid,
            test: Some(TestResult { ok: true, message: works(spec(provider)), at: now }),
            zai_region: region,
        };
        let entry = self.entry(caller, AuditAction::LlmKeyPut, provider.slug(), "ok");
        let stored = self.store.llm_keys().put_audited(user, &new, now, &entry).await?;
        tracing::info!(user = %user, provider = %provider, "llm key stored");
        Ok(stored)
    }

    /// Checks the stored key again and records the result. A provider that cannot answer now
    /// says nothing about the key: its status stays.
    pub async fn test(&self, caller: &UserCaller, provider: Provider) -> Result<KeyTest, KeyError> {
        self.accounts().require_verified_email(caller).await?;
        let user = &caller.user;
        let keys = self.store.llm_keys();
        let stored = keys.get(user, provider).await?.ok_or(KeyError::NoKey(provider))?;
        self.spend_validation(user, provider).await?;
        let key = ApiKey::new(
            self.envelope.open_text(&stored.sealed, &llm_key_context(user, provider)).await?.expose_secret(),
        );
        let outcome = self.validator.validate(provider, stored.zai_region.unwrap_or_default(), &key).await;
        let (status, code, message) = match &outcome {
            Outcome::Valid => (KeyStatus::Valid, None, works(spec(provider))),
            Outcome::Invalid(f) if f.kind.is_transient() => (stored.status, Some(f.kind.code().as_str()), f.message()),
            Outcome::Invalid(f) => (KeyStatus::Invalid, Some(f.kind.code().as_str()), f.message()),
        };
        let result = TestResult { ok: code.is_none(), message, at: self.clock.now() };
        keys.record_test(user, provider, status, &result).await?.ok_or(KeyError::NoKey(provider))?;
        self.audit(caller, AuditAction::LlmKeyTest, provider.slug(), code.unwrap_or("ok")).await?;
        Ok(KeyTest { ok: result.ok, code, message: result.message, at: result.at })
    }

    /// Forgets the user's key of `provider`, if there is one.
    pub async fn delete(&self, caller: &UserCaller, provider: Provider) -> Result<(), KeyError> {
        if self.store.llm_keys().delete(&caller.user, provider).await? {
            self.audit(caller, AuditAction::LlmKeyDelete, provider.slug(), "ok").await?;
        }
        Ok(())
    }

    /// Forgets every key of the user at once.
    pub async fn delete_all(&self, caller: &UserCaller) -> Result<(), KeyError> {
        let deleted = self.store.llm_keys().delete_all(&caller.user).await?;
        if !deleted.is_empty() {
            let providers = deleted.iter().map(|p| p.slug()).collect::<Vec<_>>().join(",");
            self.audit(caller, AuditAction::LlmKeyDeleteAll, &providers, "ok").await?;
        }
        Ok(())
    }

    /// The user's keys for the providers both `requested` (all when `None`) and granted to
    /// `caller`, in plaintext. Only the granted providers' items are read: another provider's
    /// sealed key never leaves the table. The audit entry (what was requested and granted) is
    /// written beside the read, and the keys are handed out only once both have succeeded.
    pub async fn fetch_for(
        &self,
        caller: &ServiceCaller,
        user: &UserId,
        requested: Option<BTreeSet<Provider>>,
    ) -> Result<Vec<FetchedKey>, KeyError> {
        // No list asks for whatever the caller is granted; a list is audited with what it was refused.
        let asked_for_all = requested.is_none();
        let requested = requested.unwrap_or_else(|| Provider::ALL.iter().copied().collect());
        let (granted, mut refused): (Vec<Provider>, Vec<Provider>) =
            requested.into_iter().partition(|p| caller.may(Grant::LlmKey(*p)));
        if asked_for_all {
            refused.clear();
        }
        if granted.is_empty() {
            return Err(KeyError::GrantMissing);
        }
        let now = self.clock.now();
        let slugs = |providers: &[Provider]| providers.iter().map(|p| p.slug()).collect::<Vec<_>>().join(",");
        let entry = AuditEntry {
            at: now,
            actor: Actor::Service(caller.arn.clone()),
            action: AuditAction::LlmKeyFetch,
            target: Some(slugs(&granted)),
            outcome: if refused.is_empty() { "granted".into() } else { format!("not_granted:{}", slugs(&refused)) },
        };
        let (llm_keys, audit) = (self.store.llm_keys(), self.store.audit());
        let (keys, ()) = tokio::try_join!(llm_keys.get_many(user, &granted), audit.append(user, &entry))?;
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        let mut fetched = Vec::with_capacity(keys.len());
        for key in &keys {
            let plaintext = self.envelope.open_text(&key.sealed, &llm_key_context(user, key.provider)).await?;
            fetched.push(FetchedKey { provider: key.provider, key: plaintext, region: key.zai_region });
        }
        for key in keys.iter().filter(|k| k.last_used_at.is_none_or(|at| now - at >= LAST_USED_INTERVAL_SECS)) {
            // The read says whether the mark is due; the (conditional) write is made only then.
            self.store.llm_keys().touch_last_used(user, key.provider, now, LAST_USED_INTERVAL_SECS).await?;
        }
        tracing::info!(user = %user, caller = %caller.arn, count = keys.len(), "llm keys fetched");
        Ok(fetched)
    }

    fn accounts(&self) -> Accounts<'_> {
        Accounts { store: self.store, clock: self.clock }
    }

    /// Takes one validation from the user's hourly allowance for the provider, or refuses.
    async fn spend_validation(&self, user: &UserId, provider: Provider) -> Result<(), KeyError> {
        let limit = self.validations_per_hour;
        let bucket = format!("validate:{provider}");
        let now = self.clock.now();
        match self.store.limits().take(user, &bucket, limit, VALIDATION_WINDOW_SECS, now).await? {
            Allowance::Granted => Ok(()),
            Allowance::Refused { retry_after_secs } => {
                Err(KeyError::ValidationLimit { provider, limit, retry_after_secs })
            }
        }
    }

    fn entry(&self, caller: &UserCaller, action: AuditAction, target: &str, outcome: &str) -> AuditEntry {
        AuditEntry {
            at: self.clock.now(),
            actor: caller.actor(),
            action,
            target: Some(target.to_owned()),
            outcome: outcome.into(),
        }
    }

    /// Records what the user did to their keys, by which credential, and how it ended (never the key).
    async fn audit(
        &self,
        caller: &UserCaller,
        action: AuditAction,
        target: &str,
        outcome: &str,
    ) -> Result<(), KeyError> {
        Ok(self.store.audit().append(&caller.user, &self.entry(caller, action, target, outcome)).await?)
    }
}

/// The platform of a key: required of (and defaulted for) providers that have several, refused
/// for the others.
fn region_of(provider: Provider, raw: Option<&str>) -> Result<Option<ZaiRegion>, KeyError> {
    match (spec(provider).has_regions(), raw) {
        (true, None) => Ok(Some(ZaiRegion::default())),
        (true, Some(raw)) => ZaiRegion::parse(raw)
            .map(Some)
            .ok_or(KeyError::InvalidRegion("`region` is `international` (z.ai) or `china` (open.bigmodel.cn).")),
        (false, None) => Ok(None),
        (false, Some(_)) => Err(KeyError::InvalidRegion("`region` applies to Zai keys only.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProblemCode;
    use crate::use_cases::testing::{Fixture, service_caller};

    fn claims(email_verified: bool) -> UserCaller {
        UserCaller::signed_in(UserId::parse("auth0|ada").unwrap(), Some("ada@example.com".into()), Some(email_verified))
    }

    fn key(raw: &str) -> SecretString {
        SecretString::from(raw.to_owned())
    }

    #[tokio::test]
    async fn a_key_is_stored_only_after_its_provider_accepts_it_and_every_attempt_is_audited() {
        let fixture = Fixture::with_sandbox().await;
        let keys = fixture.keys();
        let ada = claims(true);
        let refused = keys.store_key(&ada, Provider::OpenAi, &key("sk-proj-sandbox-no-credits"), None).await;
        assert!(matches!(refused, Err(KeyError::Refused(f)) if f.kind.code() == ProblemCode::NoCredits));
        assert!(keys.list(&ada.user).await.unwrap().is_empty(), "a refused key is never stored");
        let stored = keys.store_key(&ada, Provider::OpenAi, &key("sk-proj-sandbox-valid"), None).await.unwrap();
        assert_eq!((stored.preview.as_str(), stored.status), ("sk-p…alid", KeyStatus::Valid));
        let trail = fixture.store.audit().list(&ada.user, 10, None).await.unwrap().items;
        let outcomes: Vec<(AuditAction, &str)> = trail.iter().map(|e| (e.action, e.outcome.as_str())).collect();
        assert_eq!(outcomes, [(AuditAction::LlmKeyPut, "ok"), (AuditAction::LlmKeyPut, "no_credits")]);
        let unverified = keys.store_key(&claims(false), Provider::OpenAi, &key("sk-proj-sandbox-valid"), None).await;
        assert!(matches!(unverified, Err(KeyError::Account(AccountError::EmailUnverified))));
    }

    #[tokio::test]
    async fn regions_belong_to_zai_alone_and_checks_are_capped_per_hour() {
        let fixture = Fixture::with_sandbox().await;
        let keys = Keys { validations_per_hour: 2, ..fixture.keys() };
        let ada = claims(true);
        let wrong = keys.store_key(&ada, Provider::OpenAi, &key("sk-proj-sandbox-valid"), Some("china")).await;
        assert!(matches!(wrong, Err(KeyError::InvalidRegion(_))));
        let zai = keys.store_key(&ada, Provider::Zai, &key("keyward.sandbox-valid"), Some("china")).await.unwrap();
        assert_eq!(zai.zai_region, Some(ZaiRegion::China));
        assert!(keys.test(&ada, Provider::Zai).await.unwrap().ok);
        let limited = keys.test(&ada, Provider::Zai).await;
        assert!(matches!(limited, Err(KeyError::ValidationLimit { limit: 2, .. })), "two checks an hour");
        fixture.clock.advance(VALIDATION_WINDOW_SECS);
        assert!(keys.test(&ada, Provider::Zai).await.is_ok(), "the next hour");
    }

    #[tokio::test]
    async fn a_service_gets_only_the_keys_granted_to_it_and_each_fetch_is_audited() {
        let fixture = Fixture::with_sandbox().await;
        let keys = fixture.keys();
        let ada = claims(true);
        for (provider, raw) in
            [(Provider::OpenAi, "sk-proj-sandbox-valid"), (Provider::Anthropic, "sk-ant-api03-sandbox-valid")]
        {
            keys.store_key(&ada, provider, &key(raw), None).await.unwrap();
        }
        let notes = service_caller("notes", &["openai", "perplexity"]);
        let fetched = keys.fetch_for(&notes, &ada.user, None).await.unwrap();
        assert_eq!(fetched.iter().map(|k| k.provider).collect::<Vec<_>>(), [Provider::OpenAi]);
        assert_eq!(fetched[0].key.expose_secret(), "sk-proj-sandbox-valid");
        let only_anthropic = Some(BTreeSet::from([Provider::Anthropic]));
        assert!(matches!(keys.fetch_for(&notes, &ada.user, only_anthropic).await, Err(KeyError::GrantMissing)));
        let only_perplexity = Some(BTreeSet::from([Provider::Perplexity]));
        assert!(matches!(keys.fetch_for(&notes, &ada.user, only_perplexity).await, Err(KeyError::NoKeys)));
        let mixed = Some(BTreeSet::from([Provider::OpenAi, Provider::Anthropic]));
        let fetched = keys.fetch_for(&notes, &ada.user, mixed).await.unwrap();
        assert_eq!(fetched.iter().map(|k| k.provider).collect::<Vec<_>>(), [Provider::OpenAi]);
        // Each entry records what was asked for and granted, newest first; a refusal reads nothing.
        let trail = fixture.store.audit().list(&ada.user, 10, None).await.unwrap().items;
        let entries: Vec<_> = trail
            .iter()
            .filter(|e| e.action == AuditAction::LlmKeyFetch)
            .map(|e| (e.target.as_deref().unwrap_or_default(), e.outcome.as_str()))
            .collect();
        assert_eq!(
            entries,
            [("openai", "not_granted:anthropic"), ("perplexity", "granted"), ("openai,perplexity", "granted")]
        );
        assert!(
            trail.iter().all(|e| e.action != AuditAction::LlmKeyFetch || e.actor == Actor::Service(notes.arn.clone()))
        );
    }
}
